use clap::{Parser, Subcommand};
use factory_monitor::web::{self, AppState};
use factory_monitor::{Config, Database};
use pg_embedded::EmbeddedPostgres;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "factory-monitor",
    version,
    about = "Watches a plant's vibration-monitoring gateways"
)]
struct Cli {
    /// Production mode: refuse to start without ENCRYPTION_KEY (same as APP_ENV=production).
    #[arg(long, global = true)]
    production: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web server (the default).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Encryption key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// People who sign in to the web app.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API tokens for scripts (`Authorization: Bearer <token>`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Field checks of a gateway.
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
    },
    /// Control a private PostgreSQL cluster (what the server starts when DATABASE_URL is unset).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Load benchmarks against simulated gateways.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// N gateways with one offline rule each, on a fresh database (no gateway is dialled):
    /// the cost of an evaluation, the time from a drop of M gateways past the delay to
    /// their webhook notifications, and the outbox's deliveries per second.
    Alarms {
        #[arg(long, default_value_t = 10_000)]
        gateways: usize,
        #[arg(long, default_value_t = 1_000)]
        dropped: usize,
        #[arg(long, default_value_t = 5)]
        delay_secs: u64,
        #[arg(long, default_value_t = 20)]
        steady_secs: u64,
        #[arg(long, default_value_t = 5_000)]
        test_notifications: usize,
    },
    /// Connect N gateways served by `ctc-sim` in other processes, on a fresh database;
    /// report time to all online, RSS, steady CPU and recovery after a drop of every connection.
    Fleet {
        #[arg(long)]
        gateways: usize,
        /// Port of the first simulated gateway; the last must stay below 32768.
        #[arg(long, default_value_t = 20_000)]
        base_port: u16,
        /// Seconds of steady state over which CPU is measured.
        #[arg(long, default_value_t = 60)]
        steady_secs: u64,
        /// Server processes sharing the fleet through one PostgreSQL (1: the orchestrator
        /// runs in this process); with more, failover after kill -9 is measured too.
        #[arg(long, default_value_t = 1)]
        instances: usize,
    },
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Demo mode: seed a demo plant and serve its gateways from an in-process simulator.
    #[arg(long)]
    demo: bool,
}

#[derive(Subcommand)]
enum GatewayCommand {
    /// Log in to a gateway, list its sensors, optionally take one reading.
    /// The password comes from GATEWAY_PASSWORD or, if unset, one line of stdin.
    Probe {
        /// ws://HOST:PORT or wss://HOST:PORT
        url: String,
        #[arg(long)]
        email: String,
        /// Take one reading of this sensor and print its statistics.
        #[arg(long)]
        reading: Option<u64>,
        /// wss:// only: accept exactly the certificate with this SHA-256 (ab:cd:…), as for
        /// a self-signed gateway; a refusal prints the fingerprint the gateway presented.
        #[arg(long)]
        tls_pin: Option<ctc::CertificatePin>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from stdin (one line).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["admin", "viewer"])]
        role: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-encrypt every stored gateway password with the current ENCRYPTION_KEY.
    Rotate,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; the token itself is the last line of the output (shown once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "admin", value_parser = ["admin", "viewer"])]
        role: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: uuid::Uuid },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Start (creating if needed) the cluster in DIR, leave it running, print its URL.
    Start {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Stop the cluster in DIR.
    Stop {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn init_tracing() {
    init_tracing_with("info,sqlx=warn");
}

/// Logs to stderr, filtered by RUST_LOG or else `default`.
fn init_tracing_with(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The probe is a field tool: it needs no database and no server configuration.
    if let Some(Command::Gateway {
        command:
            GatewayCommand::Probe {
                url,
                email,
                reading,
                tls_pin,
            },
    }) = cli.command
    {
        return probe(url, email, reading, tls_pin).await;
    }
    // The benchmark brings its own database and configuration.
    if let Some(Command::Bench {
        command:
            BenchCommand::Fleet {
                gateways,
                base_port,
                steady_secs,
                instances,
            },
    }) = cli.command
    {
        // Errors only: a fleet-wide drop would log one warning per gateway.
        init_tracing_with("error");
        let options = factory_monitor::bench::FleetOptions {
            gateways,
            base_port,
            steady_secs,
            instances,
        };
        return match factory_monitor::bench::fleet(options).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("factory-monitor bench: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Bench {
        command:
            BenchCommand::Alarms {
                gateways,
                dropped,
                delay_secs,
                steady_secs,
                test_notifications,
            },
    }) = cli.command
    {
        init_tracing_with("error");
        let options = factory_monitor::bench::AlarmBenchOptions {
            gateways,
            dropped,
            delay_secs,
            steady_secs,
            test_notifications,
        };
        return match factory_monitor::bench::alarms(options).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("factory-monitor bench: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::from_env(cli.production) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("factory-monitor: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    init_tracing();
    match run(cli.command.unwrap_or(Command::Serve(ServeArgs::default())), config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("factory-monitor: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(config, args).await,
        Command::Gateway { .. } | Command::Bench { .. } => unreachable!("handled before configuration is read"),
        Command::Migrate => {
            let db = Database::open(&config).await?;
            tracing::info!("migrations applied");
            db.close().await;
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Rotate,
        } => {
            let db = Database::open(&config).await?;
            let changed = db.store.rotate_keys().await;
            db.close().await;
            let changed = changed?;
            println!(
                "re-encrypted {changed} gateway password(s) with key {}",
                config.key_ring()?.current_id()
            );
            Ok(())
        }
        Command::User {
            command: UserCommand::Create { email, role },
        } => {
            let role: domain::Role = role.parse().map_err(anyhow::Error::msg)?;
            let password = read_password_line()?;
            let db = Database::open(&config).await?;
            let created = db.store.create_user(&email, &password, role).await;
            db.close().await;
            let user = created.map_err(domain::AppError::from)?;
            println!("created {} user {} ({})", user.role, user.email, user.id);
            Ok(())
        }
        Command::Token { command } => {
            let db = Database::open(&config).await?;
            let result = token_command(&db.store, command).await;
            db.close().await;
            result
        }
        Command::Db { command } => match command {
            DbCommand::Start { data_dir } => {
                let pg = EmbeddedPostgres::start(&data_dir).await?;
                println!("{}", pg.url("postgres"));
                pg.detach();
                Ok(())
            }
            DbCommand::Stop { data_dir } => {
                let stopped = EmbeddedPostgres::stop_dir(&data_dir).await?;
                eprintln!("{}", if stopped { "stopped" } else { "not running" });
                Ok(())
            }
        },
    }
}

async fn serve(config: Config, args: ServeArgs) -> anyhow::Result<()> {
    let db = Database::open(&config).await?;
    let listener = match tokio::net::TcpListener::bind(config.listen_addr).await {
        Ok(listener) => listener,
        Err(err) => {
            db.close().await;
            anyhow::bail!("LISTEN_ADDR {}: {err}", config.listen_addr);
        }
    };
    let addr = listener.local_addr()?;
    let initial_password = config
        .initial_admin_password
        .as_ref()
        .map(|p| secrecy::ExposeSecret::expose_secret(p).to_owned());
    let one_time = initial_password.is_none();
    if let Some(password) = factory_monitor::sessions::ensure_initial_admin(&db.store, initial_password).await? {
        // Printed once, to the terminal only (never logged): how a newcomer signs in.
        println!();
        println!("  First start: created the administrator account");
        println!("    email:    {}", factory_monitor::sessions::INITIAL_ADMIN_EMAIL);
        println!("    password: {password}");
        println!("  Sign in at http://{addr}/login and create your own accounts under Users.");
        if one_time {
            println!("  This password works once: you choose your own at first sign-in.");
        }
        println!();
    }
    if args.demo {
        factory_monitor::demo::start(&db.store).await?;
    }
    let fleet_config = orchestrator::OrchestratorConfig {
        instance_address: config
            .instance_address
            .clone()
            .unwrap_or_else(|| format!("http://{addr}")),
        ..Default::default()
    };
    let orchestrator = orchestrator::Orchestrator::start(db.store.clone(), fleet_config).await?;
    let state = AppState::new(db.store.clone(), addr, orchestrator.clone());
    let state = state
        .with_cookie_secure(config.cookie_secure)
        .with_metrics_public(config.metrics_public)
        .with_alarm_config(factory_monitor::alarms::AlarmConfig {
            smtp: config.smtp.clone(),
            ..Default::default()
        });
    tracing::info!("serving http://{addr}");
    let served = web::serve(listener, state, &config.cors_origins, web::shutdown_signal()).await;
    orchestrator.shutdown().await;
    db.close().await;
    served.map_err(Into::into)
}

async fn token_command(store: &store::Store, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, role } => {
            let role: domain::Role = role.parse().map_err(anyhow::Error::msg)?;
            let (token, secret) = store
                .create_api_token(&name, role)
                .await
                .map_err(domain::AppError::from)?;
            println!(
                "created {} token {:?} ({}); it is shown only once:",
                token.role, token.name, token.id
            );
            println!("{}", secret.as_str());
        }
        TokenCommand::List => {
            for t in store.list_api_tokens().await? {
                let state = if t.revoked_at.is_some() { "revoked" } else { "active" };
                let used = t.last_used_at.map_or("never".to_owned(), |at| at.to_rfc3339());
                println!("{}  {:<7} {:<7} last used {used}  {}", t.id, t.role, state, t.name);
            }
        }
        TokenCommand::Revoke { id } => {
            if store.revoke_api_token(id).await? {
                println!("revoked {id}");
            } else {
                anyhow::bail!("no active token with id {id}");
            }
        }
    }
    Ok(())
}

/// `gateway probe`: exit 0 when everything asked for worked, 1 with a one-line reason.
async fn probe(url: String, email: String, reading: Option<u64>, tls_pin: Option<ctc::CertificatePin>) -> ExitCode {
    let password = match std::env::var("GATEWAY_PASSWORD") {
        Ok(password) if !password.is_empty() => password,
        _ => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() || line.trim_end_matches(['\r', '\n']).is_empty() {
                eprintln!("gateway probe: no password (set GATEWAY_PASSWORD or pass it on stdin)");
                return ExitCode::FAILURE;
            }
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let mut options = ctc::probe::ProbeOptions::new(url, email, ctc::Password::new(password));
    options.reading = reading.map(ctc::Serial);
    options.tls_pin = tls_pin;
    let mut out = std::io::stdout();
    match ctc::probe::probe(&options, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gateway probe: {err}");
            ExitCode::FAILURE
        }
    }
}

/// One line of stdin without its line ending, as a password.
fn read_password_line() -> anyhow::Result<domain::UserPassword> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!(
            "no password: pass it on stdin, e.g. `read -s PW; echo \"$PW\" | factory-monitor user create ...`"
        );
    }
    Ok(domain::UserPassword::new(password))
}
