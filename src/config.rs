//! Configuration: environment variables (and an optional `.env` file), parsed
//! once at start-up into [`Config`]. A bad value stops start-up with one line
//! naming the variable and what is wrong with it.

use crate::security::CorsOrigins;
use axum::http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use store::{EncryptionKey, KeyRing};

pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:3000";
pub const DEFAULT_DATA_DIR: &str = "./data";
/// PostgreSQL connections per server. Writes wait on their commit's flush to disk,
/// and PostgreSQL flushes the commits waiting together at once, so write throughput
/// grows with the commits in flight: 16 connections held POST /api/factories to a
/// quarter of what pgbench's 64 clients insert.
pub const DEFAULT_DATABASE_POOL_SIZE: u32 = 64;
/// File in `DATA_DIR` holding the development key generated when none is configured.
pub const GENERATED_KEY_FILE: &str = "encryption.key";

/// A configuration problem: which variable, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

fn bad(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `None`: run the embedded PostgreSQL in `data_dir`.
    pub database_url: Option<SecretString>,
    /// `DATABASE_POOL_SIZE`: connections this server opens at most.
    pub database_pool_size: u32,
    pub data_dir: PathBuf,
    pub listen_addr: SocketAddr,
    pub encryption_key: Option<SecretString>,
    pub encryption_keys_previous: Vec<SecretString>,
    pub production: bool,
    pub cors_origins: CorsOrigins,
    /// Mark the session cookie `Secure` (set when the site is served over HTTPS).
    pub cookie_secure: bool,
    /// The first administrator's password instead of a random one (tests, demos).
    pub initial_admin_password: Option<SecretString>,
    /// `INSTANCE_ADDRESS`: how this instance is listed among the fleet's instances (its
    /// URL behind the proxy, say); by default `http://` and the address it listens on.
    pub instance_address: Option<String>,
    /// `METRICS_PUBLIC`: serve `/metrics` without a token (a trusted scraping network).
    pub metrics_public: bool,
    /// `SMTP_URL` and `SMTP_FROM`: the mail server e-mail notifications go through.
    pub smtp: Option<crate::alarms::SmtpConfig>,
}

impl Config {
    /// Reads the process environment (after loading `.env` if present).
    pub fn from_env(production_flag: bool) -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is an error worth reporting.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(err) if err.not_found() => {}
            Err(err) => return Err(bad(".env", err.to_string())),
        }
        Self::from_lookup(|name| std::env::var(name).ok(), production_flag)
    }

    /// Parses from any variable lookup (the tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, production_flag: bool) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let production = match get("APP_ENV").as_deref().map(str::trim) {
            None | Some("development") | Some("test") => production_flag,
            Some("production") => true,
            Some(other) => {
                return Err(bad(
                    "APP_ENV",
                    format!("must be development, test or production, got {other:?}"),
                ))
            }
        };

        let database_url = match get("DATABASE_URL") {
            None => None,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Some(SecretString::from(url))
            }
            Some(_) => return Err(bad("DATABASE_URL", "must be a postgres:// or postgresql:// URL")),
        };

        let database_pool_size = match get("DATABASE_POOL_SIZE") {
            None => DEFAULT_DATABASE_POOL_SIZE,
            Some(text) => match text.trim().parse::<u32>() {
                Ok(size) if (2..=1000).contains(&size) => size,
                _ => {
                    return Err(bad(
                        "DATABASE_POOL_SIZE",
                        format!("must be a whole number from 2 to 1000, got {text:?}"),
                    ))
                }
            },
        };

        let data_dir = PathBuf::from(get("DATA_DIR").unwrap_or_else(|| DEFAULT_DATA_DIR.into()));
        if data_dir.is_file() {
            return Err(bad(
                "DATA_DIR",
                format!("{} is a file, not a directory", data_dir.display()),
            ));
        }

        let listen_raw = get("LISTEN_ADDR").unwrap_or_else(|| DEFAULT_LISTEN_ADDR.into());
        let listen_addr = listen_raw.trim().parse().map_err(|_| {
            bad(
                "LISTEN_ADDR",
                format!("must be an IP address and port such as {DEFAULT_LISTEN_ADDR}, got {listen_raw:?}"),
            )
        })?;

        let encryption_key = get("ENCRYPTION_KEY").map(SecretString::from);
        if let Some(key) = &encryption_key {
            EncryptionKey::from_base64(key.expose_secret()).map_err(|e| bad("ENCRYPTION_KEY", e.to_string()))?;
        } else if production {
            return Err(bad(
                "ENCRYPTION_KEY",
                "is required in production (base64 of 32 random bytes, e.g. `openssl rand -base64 32`)",
            ));
        }

        let encryption_keys_previous: Vec<SecretString> = get("ENCRYPTION_KEYS_PREVIOUS")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| SecretString::from(k.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        for (index, key) in encryption_keys_previous.iter().enumerate() {
            EncryptionKey::from_base64(key.expose_secret())
                .map_err(|e| bad("ENCRYPTION_KEYS_PREVIOUS", format!("key {} {e}", index + 1)))?;
        }

        if let Some(filter) = get("RUST_LOG") {
            tracing_subscriber::EnvFilter::try_new(&filter)
                .map_err(|e| bad("RUST_LOG", format!("is not a valid log filter: {e}")))?;
        }

        let cors_origins = match get("CORS_ORIGINS") {
            None => CorsOrigins::None,
            Some(list) if list.trim() == "*" => CorsOrigins::Any,
            Some(list) => CorsOrigins::List(
                list.split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(parse_origin)
                    .collect::<Result<_, _>>()?,
            ),
        };

        // Secure by default in production; COOKIE_SECURE=false for a plain-HTTP test of it.
        let cookie_secure = match get("COOKIE_SECURE").as_deref().map(str::trim) {
            None => production,
            Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => return Err(bad("COOKIE_SECURE", format!("must be true or false, got {other:?}"))),
        };
        let metrics_public = match get("METRICS_PUBLIC").as_deref().map(str::trim) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => return Err(bad("METRICS_PUBLIC", format!("must be true or false, got {other:?}"))),
        };
        let initial_admin_password = get("INITIAL_ADMIN_PASSWORD").map(SecretString::from);
        if let Some(password) = &initial_admin_password {
            domain::auth::validate_user_password(password.expose_secret())
                .map_err(|e| bad("INITIAL_ADMIN_PASSWORD", e.message))?;
        }

        let instance_address = get("INSTANCE_ADDRESS").map(|a| a.trim().to_owned());
        if let Some(address) = &instance_address {
            if address.len() > 200 || address.chars().any(char::is_control) {
                return Err(bad(
                    "INSTANCE_ADDRESS",
                    "must be at most 200 characters without control characters",
                ));
            }
        }

        let smtp = match (get("SMTP_URL"), get("SMTP_FROM")) {
            (None, None) => None,
            (Some(_), None) => return Err(bad("SMTP_FROM", "must be set with SMTP_URL (the sender's address)")),
            (None, Some(_)) => {
                return Err(bad(
                    "SMTP_URL",
                    "must be set with SMTP_FROM (e.g. smtp://mail.example.com:25)",
                ))
            }
            (Some(url), Some(from)) => {
                let url = url.trim().to_owned();
                if !["smtp://", "smtps://"]
                    .iter()
                    .any(|scheme| url.to_ascii_lowercase().starts_with(scheme))
                {
                    // The value may hold a password: never echoed.
                    return Err(bad("SMTP_URL", "must start with smtp:// or smtps://"));
                }
                let from = from.trim().to_owned();
                if from.parse::<lettre::message::Mailbox>().is_err() {
                    return Err(bad("SMTP_FROM", format!("must be an e-mail address, got {from:?}")));
                }
                Some(crate::alarms::SmtpConfig { url, from })
            }
        };

        Ok(Self {
            smtp,
            metrics_public,
            instance_address,
            cookie_secure,
            initial_admin_password,
            cors_origins,
            database_url,
            database_pool_size,
            data_dir,
            listen_addr,
            encryption_key,
            encryption_keys_previous,
            production,
        })
    }

    /// The key ring for gateway passwords. Without `ENCRYPTION_KEY` (development
    /// only) a key is generated once into `DATA_DIR` and reused after that.
    pub fn key_ring(&self) -> Result<KeyRing, ConfigError> {
        let current = match &self.encryption_key {
            Some(text) => EncryptionKey::from_base64(text.expose_secret()),
            None => Ok(development_key(&self.data_dir)?),
        }
        .map_err(|e| bad("ENCRYPTION_KEY", e.to_string()))?;
        let previous = self
            .encryption_keys_previous
            .iter()
            .map(|k| EncryptionKey::from_base64(k.expose_secret()))
            .collect::<Result<_, _>>()
            .map_err(|e| bad("ENCRYPTION_KEYS_PREVIOUS", e.to_string()))?;
        Ok(KeyRing::new(current, previous))
    }
}

/// `scheme://host[:port]`, nothing else (no path, no trailing slash).
fn parse_origin(origin: &str) -> Result<HeaderValue, ConfigError> {
    let problem = || {
        bad(
            "CORS_ORIGINS",
            format!("{origin:?} is not an origin like https://plant.example.com or http://localhost:5173"),
        )
    };
    let (scheme, rest) = origin.split_once("://").ok_or_else(problem)?;
    let host_ok = !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && rest.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if !matches!(scheme, "http" | "https") || !host_ok {
        return Err(problem());
    }
    HeaderValue::from_str(origin).map_err(|_| problem())
}

fn development_key(data_dir: &Path) -> Result<EncryptionKey, ConfigError> {
    let path = data_dir.join(GENERATED_KEY_FILE);
    let file_error = |e: std::io::Error| bad("ENCRYPTION_KEY", format!("unset, and {}: {e}", path.display()));
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(file_error)?;
        return EncryptionKey::from_base64(&text).map_err(|e| {
            bad(
                "ENCRYPTION_KEY",
                format!("unset, and the key in {} {e}", path.display()),
            )
        });
    }
    std::fs::create_dir_all(data_dir).map_err(file_error)?;
    let (key, text) = EncryptionKey::generate();
    write_private(&path, &text).map_err(file_error)?;
    tracing::warn!(
        path = %path.display(),
        "ENCRYPTION_KEY is not set: generated a DEVELOPMENT key. Losing this file makes stored gateway \
         passwords unreadable. Set ENCRYPTION_KEY (and run with --production) for real deployments."
    );
    Ok(key)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn parse(vars: &[(&str, &str)], production: bool) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned(), production)
    }

    fn error_var(vars: &[(&str, &str)]) -> &'static str {
        parse(vars, false).unwrap_err().var
    }

    #[test]
    fn defaults() {
        let config = parse(&[], false).unwrap();
        assert!(config.database_url.is_none());
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:3000");
        assert!(!config.production);
    }

    #[test]
    fn each_bad_variable_is_named() {
        assert_eq!(error_var(&[("DATABASE_URL", "mysql://x")]), "DATABASE_URL");
        assert_eq!(error_var(&[("DATABASE_POOL_SIZE", "many")]), "DATABASE_POOL_SIZE");
        assert_eq!(error_var(&[("DATABASE_POOL_SIZE", "1")]), "DATABASE_POOL_SIZE");
        assert_eq!(error_var(&[("LISTEN_ADDR", "localhost")]), "LISTEN_ADDR");
        assert_eq!(error_var(&[("LISTEN_ADDR", "127.0.0.1:99999")]), "LISTEN_ADDR");
        assert_eq!(
            error_var(&[("ENCRYPTION_KEY", "not-valid-base64!!!")]),
            "ENCRYPTION_KEY"
        );
        assert_eq!(error_var(&[("ENCRYPTION_KEY", "AAAA")]), "ENCRYPTION_KEY");
        assert_eq!(
            error_var(&[("ENCRYPTION_KEYS_PREVIOUS", &format!("{KEY},short"))]),
            "ENCRYPTION_KEYS_PREVIOUS"
        );
        assert_eq!(error_var(&[("RUST_LOG", "info,[[[")]), "RUST_LOG");
        assert_eq!(error_var(&[("APP_ENV", "staging")]), "APP_ENV");
        assert_eq!(
            error_var(&[("CORS_ORIGINS", "https://ok.example, not an origin")]),
            "CORS_ORIGINS"
        );
        assert_eq!(error_var(&[("CORS_ORIGINS", "https://x.example/path")]), "CORS_ORIGINS");
        assert_eq!(error_var(&[("COOKIE_SECURE", "yes please")]), "COOKIE_SECURE");
        assert_eq!(
            error_var(&[("INITIAL_ADMIN_PASSWORD", "short")]),
            "INITIAL_ADMIN_PASSWORD"
        );
    }

    #[test]
    fn cookie_secure_defaults_to_false_for_plain_http() {
        assert!(!parse(&[], false).unwrap().cookie_secure);
        assert!(parse(&[("COOKIE_SECURE", "true")], false).unwrap().cookie_secure);
        let key = ("ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert!(
            parse(&[key], true).unwrap().cookie_secure,
            "secure by default in production"
        );
        assert!(
            !parse(&[key, ("COOKIE_SECURE", "false")], true).unwrap().cookie_secure,
            "unless overridden for a plain-HTTP test"
        );
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let err = parse(&[("ENCRYPTION_KEY", "AAAA")], false).unwrap_err();
        assert_eq!(err.to_string(), "ENCRYPTION_KEY: must decode to 32 bytes, got 3");
        let err = parse(&[("ENCRYPTION_KEYS_PREVIOUS", &format!("{KEY}, !!"))], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ENCRYPTION_KEYS_PREVIOUS: key 2 must be valid base64 (standard alphabet, padded)"
        );
    }

    #[test]
    fn cors_origins() {
        assert_eq!(parse(&[], false).unwrap().cors_origins, CorsOrigins::None);
        assert_eq!(
            parse(&[("CORS_ORIGINS", "*")], false).unwrap().cors_origins,
            CorsOrigins::Any
        );
        let list = parse(&[("CORS_ORIGINS", "https://a.example, http://localhost:5173")], false).unwrap();
        assert_eq!(
            list.cors_origins,
            CorsOrigins::List(vec![
                HeaderValue::from_static("https://a.example"),
                HeaderValue::from_static("http://localhost:5173")
            ])
        );
    }

    #[test]
    fn production_requires_a_key() {
        assert_eq!(parse(&[], true).unwrap_err().var, "ENCRYPTION_KEY");
        assert_eq!(
            parse(&[("APP_ENV", "production")], false).unwrap_err().var,
            "ENCRYPTION_KEY"
        );
        assert!(
            parse(&[("APP_ENV", "production"), ("ENCRYPTION_KEY", KEY)], false)
                .unwrap()
                .production
        );
    }

    #[test]
    fn development_key_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_str().unwrap();
        let config = parse(&[("DATA_DIR", data_dir)], false).unwrap();
        let first = config.key_ring().unwrap().current_id().to_owned();
        let second = config.key_ring().unwrap().current_id().to_owned();
        assert_eq!(first, second);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(GENERATED_KEY_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn debug_hides_secrets() {
        let config = parse(
            &[("ENCRYPTION_KEY", KEY), ("DATABASE_URL", "postgres://u:pw@h/db")],
            false,
        )
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains(KEY) && !shown.contains("pw@"), "{shown}");
    }
}
