//! A private PostgreSQL cluster for development, demos and tests, started from the
//! binaries the system already has (no download).
//!
//! `initdb` runs once into `<data_dir>/postgres`; the server listens on a free
//! loopback port only (no unix socket, so long paths do not matter), with
//! SCRAM password authentication and a random password kept in
//! `<data_dir>/postgres.password`. PostgreSQL refuses to run as root, so when we
//! are root every database process runs as the `postgres` system user and the
//! cluster directory belongs to it.
//!
//! `postgresql_embedded` was considered: it runs initdb as the current user, which
//! fails as root, and root is how both developers and CI run here.

use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

const SYSTEM_USER: &str = "postgres";
const SUPERUSER: &str = "postgres";

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL server binaries not found (looked in {0}); install the `postgresql` package or set PG_BIN")]
    BinariesMissing(String),
    #[error("the `postgres` system user does not exist; install the `postgresql` package")]
    NoPostgresUser,
    #[error("{step} failed: {detail}")]
    Command { step: &'static str, detail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running private cluster. Stop it with [`EmbeddedPostgres::stop`]; dropping it
/// stops it too when this process started it.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin: PathBuf,
    cluster: PathBuf,
    port: u16,
    password: String,
    as_root: bool,
    /// Whether this process started the server (and so must stop it).
    owned: bool,
}

/// Where the server binaries are: `PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin`, else whatever `PATH` has.
pub fn find_binaries() -> Result<PathBuf, PgError> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("postgres").is_file() {
            Ok(dir)
        } else {
            Err(PgError::BinariesMissing(dir.display().to_string()))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("postgres").is_file() && dir.join("initdb").is_file())
        .ok_or_else(|| PgError::BinariesMissing("PG_BIN, /usr/lib/postgresql/*/bin and PATH".into()))
}

fn is_root() -> bool {
    // SAFETY-free check: effective uid 0 owns /proc/self.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn free_port() -> Result<u16, PgError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EmbeddedPostgres {
    /// Starts (creating on first use) the cluster that belongs to `data_dir`, or
    /// attaches to it when it is already running.
    pub async fn start(data_dir: &Path) -> Result<Self, PgError> {
        Self::start_on(data_dir, None).await
    }

    /// [`EmbeddedPostgres::start`] on `port` (a free one when `None`): a cluster
    /// stopped and started again on its old port is back at the same URL.
    pub async fn start_on(data_dir: &Path, port: Option<u16>) -> Result<Self, PgError> {
        let bin = find_binaries()?;
        let as_root = is_root();
        std::fs::create_dir_all(data_dir)?;
        let data_dir = data_dir.canonicalize()?;
        let cluster = if as_root {
            ensure_postgres_user().await?;
            cluster_dir_reachable_by_postgres(&data_dir).await?
        } else {
            data_dir.join("postgres")
        };
        let password = read_or_create_password(&data_dir.join("postgres.password"))?;
        let mut pg = Self {
            bin,
            cluster,
            port: 0,
            password,
            as_root,
            owned: false,
        };
        if !pg.cluster.join("PG_VERSION").is_file() {
            pg.initdb().await?;
        }
        if let Some(port) = pg.running_port().await {
            tracing::info!(port, cluster = %pg.cluster.display(), "attached to running embedded PostgreSQL");
            pg.port = port;
            return Ok(pg);
        }
        pg.port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let log = pg.cluster.join("server.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=300",
            pg.port
        );
        pg.run(
            "pg_ctl start",
            "pg_ctl",
            &[
                "-D".as_ref(),
                pg.cluster.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        )
        .await
        .map_err(|err| match err {
            PgError::Command { step, detail } => PgError::Command {
                step,
                detail: format!("{detail}; see {}", log.display()),
            },
            other => other,
        })?;
        pg.owned = true;
        tracing::info!(port = pg.port, cluster = %pg.cluster.display(), "embedded PostgreSQL started");
        Ok(pg)
    }

    /// Connection URL for `database` (as the superuser, over loopback TCP).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn cluster_dir(&self) -> &Path {
        &self.cluster
    }

    /// Leaves the server running after this value is dropped (for `db start`).
    pub fn detach(mut self) {
        self.owned = false;
    }

    /// Stops the server if this handle started it (fast shutdown: sessions are
    /// ended, data is flushed); a handle that attached to a server someone else
    /// started leaves it running. Returns whether the server was stopped.
    pub async fn stop(self) -> Result<bool, PgError> {
        if !self.owned {
            return Ok(false);
        }
        self.force_stop().await.map(|()| true)
    }

    async fn force_stop(mut self) -> Result<(), PgError> {
        self.owned = false;
        self.run(
            "pg_ctl stop",
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.cluster.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )
        .await
    }

    /// Stops the cluster of `data_dir` if it runs, whoever started it.
    pub async fn stop_dir(data_dir: &Path) -> Result<bool, PgError> {
        let pg = Self::start_less(data_dir).await?;
        match pg {
            Some(pg) if pg.running_port().await.is_some() => pg.force_stop().await.map(|()| true),
            _ => Ok(false),
        }
    }

    async fn start_less(data_dir: &Path) -> Result<Option<Self>, PgError> {
        let Ok(data_dir) = data_dir.canonicalize() else {
            return Ok(None);
        };
        let as_root = is_root();
        let local = data_dir.join("postgres");
        let cluster = if local.join("PG_VERSION").is_file() {
            local
        } else {
            fallback_cluster_dir(&data_dir)
        };
        if !cluster.join("PG_VERSION").is_file() {
            return Ok(None);
        }
        Ok(Some(Self {
            bin: find_binaries()?,
            cluster,
            port: 0,
            password: String::new(),
            as_root,
            owned: false,
        }))
    }

    async fn initdb(&self) -> Result<(), PgError> {
        std::fs::create_dir_all(&self.cluster)?;
        let pwfile = self.cluster.with_extension("initpw");
        std::fs::write(&pwfile, &self.password)?;
        if self.as_root {
            chown_to_postgres(&self.cluster).await?;
            chown_to_postgres(&pwfile).await?;
        }
        let result = self
            .run(
                "initdb",
                "initdb",
                &[
                    "-D".as_ref(),
                    self.cluster.as_os_str(),
                    "-U".as_ref(),
                    SUPERUSER.as_ref(),
                    "--auth=scram-sha-256".as_ref(),
                    "-E".as_ref(),
                    "UTF8".as_ref(),
                    "--locale=C".as_ref(),
                    format!("--pwfile={}", pwfile.display()).as_ref(),
                ],
            )
            .await;
        let _ = std::fs::remove_file(&pwfile);
        result
    }

    /// The port of a server already running on this cluster, from postmaster.pid.
    async fn running_port(&self) -> Option<u16> {
        let status = self
            .run(
                "pg_ctl status",
                "pg_ctl",
                &["-D".as_ref(), self.cluster.as_os_str(), "status".as_ref()],
            )
            .await;
        if status.is_err() {
            return None;
        }
        let pid_file = std::fs::read_to_string(self.cluster.join("postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    async fn run(&self, step: &'static str, program: &str, args: &[&std::ffi::OsStr]) -> Result<(), PgError> {
        let path = self.bin.join(program);
        let mut command = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", SYSTEM_USER, "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        command
            .args(args)
            .current_dir(self.cluster.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = command.output().await.map_err(|e| PgError::Command {
            step,
            detail: format!("could not run {}: {e}", path.display()),
        })?;
        if output.status.success() {
            Ok(())
        } else {
            let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            if detail.is_empty() {
                detail = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            }
            Err(PgError::Command { step, detail })
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let pg_ctl = self.bin.join("pg_ctl");
        let mut command = if self.as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", SYSTEM_USER, "--"]).arg(&pg_ctl);
            c
        } else {
            std::process::Command::new(&pg_ctl)
        };
        let _ = command
            .arg("-D")
            .arg(&self.cluster)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn read_or_create_password(path: &Path) -> Result<String, PgError> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok(existing.to_owned());
        }
    }
    let password = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
    write_private(path, &password)?;
    Ok(password)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

async fn ensure_postgres_user() -> Result<(), PgError> {
    let ok = Command::new("id")
        .arg("-u")
        .arg(SYSTEM_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(PgError::NoPostgresUser)
    }
}

async fn chown_to_postgres(path: &Path) -> Result<(), PgError> {
    let output = Command::new("chown")
        .arg("-R")
        .arg(format!("{SYSTEM_USER}:{SYSTEM_USER}"))
        .arg(path)
        .output()
        .await?;
    if output.status.success() {
        Ok(())
    } else {
        Err(PgError::Command {
            step: "chown",
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// When we are root, the cluster must sit where the `postgres` user can reach it.
/// `<data_dir>/postgres` is used when it can; otherwise (for instance a checkout
/// under /root, which is private) a directory under /var/tmp named after the data
/// directory, so each checkout still has its own cluster.
async fn cluster_dir_reachable_by_postgres(data_dir: &Path) -> Result<PathBuf, PgError> {
    let local = data_dir.join("postgres");
    if local.join("PG_VERSION").is_file() {
        return Ok(local);
    }
    let reachable = Command::new("runuser")
        .args(["-u", SYSTEM_USER, "--", "test", "-x"])
        .arg(data_dir)
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    if reachable {
        return Ok(local);
    }
    let fallback = fallback_cluster_dir(data_dir);
    tracing::warn!(
        data_dir = %data_dir.display(),
        cluster = %fallback.display(),
        "the postgres user cannot reach the data directory; keeping the database cluster elsewhere"
    );
    let parent = fallback.parent().expect("fallback has a parent");
    std::fs::create_dir_all(parent)?;
    Ok(fallback)
}

fn fallback_cluster_dir(data_dir: &Path) -> PathBuf {
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from("/var/tmp/factory-monitor").join(name).join("postgres")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn psql(pg: &EmbeddedPostgres, sql: &str) -> String {
        let output = Command::new(pg.bin.join("psql"))
            .arg(pg.url("postgres"))
            .args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    #[tokio::test]
    async fn starts_empty_stops_and_restarts_with_data_kept() {
        let dir = tempfile::tempdir().unwrap();
        let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
        psql(
            &pg,
            "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')",
        )
        .await;
        let cluster = pg.cluster_dir().to_owned();
        assert!(pg.stop().await.unwrap());

        let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
        assert_eq!(pg.cluster_dir(), cluster, "the same cluster is reused");
        assert_eq!(psql(&pg, "SELECT v FROM kept").await, "still here");
        // Attaching to a running cluster does not start a second server.
        let attached = EmbeddedPostgres::start(dir.path()).await.unwrap();
        assert_eq!(attached.port(), pg.port());
        drop(attached);
        assert_eq!(
            psql(&pg, "SELECT 1").await,
            "1",
            "dropping an attached handle leaves the server up"
        );
        pg.stop().await.unwrap();
        assert!(
            !EmbeddedPostgres::stop_dir(dir.path()).await.unwrap(),
            "already stopped"
        );
        remove_fallback(&cluster);
    }

    /// Test data dirs are private temp dirs, so as root the cluster lands in the fallback.
    fn remove_fallback(cluster: &Path) {
        if cluster.starts_with("/var/tmp/factory-monitor") {
            let _ = std::fs::remove_dir_all(cluster.parent().unwrap());
        }
    }

    #[tokio::test]
    async fn wrong_password_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
        let bad = pg.url("postgres").replace(&pg.password, "wrong");
        let output = Command::new(pg.bin.join("psql"))
            .arg(bad)
            .args(["-c", "SELECT 1"])
            .output()
            .await
            .unwrap();
        assert!(!output.status.success());
        let cluster = pg.cluster_dir().to_owned();
        pg.stop().await.unwrap();
        remove_fallback(&cluster);
    }
}
