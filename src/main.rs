//! The `tokenmint` command: `serve`, `bootstrap`, `keys`, `enterprise`, `migrate`, `config`,
//! `health`. The load generator is the `tokenmint-bench` binary (`bench/`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokenmint::cli::{self, BootstrapRequest};
use tokenmint::config::{LogFormat, Settings};
use tokenmint::domain::Environment;
use tokenmint::{startup, telemetry};

/// mimalloc instead of the system allocator: an RPC makes dozens of small allocations (HTTP/2
/// frames, protobuf strings, futures), and glibc's malloc/free took ~12% of a CreateToken's CPU
/// time (ARCHITECTURE.md, "Smaller mechanisms").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// tokenmint: mints, stores, verifies and revokes API access tokens over gRPC.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, global = true, env = "TOKENMINT_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the embedded database and the generated master key.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// `test` or `production`.
    #[arg(long, global = true)]
    environment: Option<Environment>,
    /// Log format.
    #[arg(long, global = true)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server.
    Serve {
        /// Address to listen on (default 127.0.0.1:50051).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Mint a token directly in the store and print it on stdout (nothing else goes to stdout).
    Bootstrap {
        /// The user the token acts for.
        #[arg(long)]
        user: String,
        /// Comma-separated scopes, e.g. `user_manage,token_introspect`.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Grant admin rights.
        #[arg(long)]
        admin: bool,
        /// Lifetime, e.g. `1h`, `30d` (default: the configured default lifetime).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
        /// Allowed address or CIDR block (repeatable). Required in production.
        #[arg(long = "ip")]
        ips: Vec<String>,
        /// Label.
        #[arg(long, default_value = "bootstrap")]
        label: String,
        /// Enterprise to bind the token to (the user must be a member).
        #[arg(long)]
        enterprise: Option<String>,
    },
    /// Apply database migrations.
    Migrate,
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Probe a server's gRPC health (for container HEALTHCHECKs): exit 0 when it is SERVING.
    Health {
        /// Server address (`https://…` for a TLS server).
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
        #[command(flatten)]
        tls: cli::ProbeTls,
        /// Service to ask about (empty: the server as a whole).
        #[arg(long, default_value = "")]
        service: String,
        /// Give up after this long.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage enterprise membership.
    Enterprise {
        #[command(subcommand)]
        command: EnterpriseCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a new signing key; tokens signed by earlier keys keep verifying until they expire.
    Rotate,
    /// List the signing keys.
    List,
    /// Withdraw a key: it leaves the JWKS and tokens it signed stop verifying. Refused for the
    /// current signing key, and while unexpired, unrevoked tokens depend on it unless `--force`.
    Retire {
        /// The key id (see `keys list`).
        kid: String,
        /// Retire even though live tokens depend on the key (they stop verifying).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective one (secrets redacted).
    Check,
}

#[derive(Debug, Subcommand)]
enum EnterpriseCommand {
    /// Add a user to an enterprise.
    AddMember {
        /// Enterprise id.
        #[arg(long)]
        enterprise: String,
        /// User id.
        #[arg(long)]
        user: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match settings_from(&cli) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("tokenmint: {error:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tokenmint: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Only the server exports spans (a health probe every few seconds should not set up an
    // exporter). The OTLP exporter needs the runtime's reactor when it is built.
    let export = matches!(cli.command, Command::Serve { .. });
    let telemetry = match runtime.block_on(async { telemetry::init(&settings, export) }) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("tokenmint: {error:#}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(run(cli.command, settings));
    // Flush the spans of the last requests before the process ends.
    runtime
        .block_on(async { tokio::task::spawn_blocking(move || telemetry.shutdown()).await })
        .ok();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tokenmint: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Layers the configuration: defaults → file → environment → flags.
fn settings_from(cli: &Cli) -> anyhow::Result<Settings> {
    let mut settings = Settings::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(dir) = &cli.data_dir {
        settings.data_dir = dir.clone();
    }
    if let Some(environment) = cli.environment {
        settings.environment = environment;
    }
    if let Some(format) = cli.log_format {
        settings.log.format = format;
    }
    if let Command::Serve {
        listen: Some(listen),
    } = &cli.command
    {
        settings.server.listen = *listen;
    }
    Ok(settings)
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => {
            let server = startup::start(settings).await?;
            let stop = server.shutdown_handle();
            tokio::spawn(async move {
                wait_for_signal().await;
                let _ = stop.send(true);
            });
            server.wait().await
        }
        Command::Bootstrap {
            user,
            scopes,
            admin,
            ttl,
            ips,
            label,
            enterprise,
        } => {
            let request = BootstrapRequest {
                user,
                scopes,
                admin,
                ttl,
                ips,
                label,
                enterprise,
            };
            let token = cli::bootstrap(&settings, request).await?;
            println!("{}", token.expose());
            Ok(())
        }
        Command::Migrate => {
            cli::migrate(&settings).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Rotate,
        } => {
            let kid = cli::rotate_keys(&settings).await?;
            println!("{kid}");
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::List,
        } => {
            for line in cli::list_keys(&settings).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Retire { kid, force },
        } => {
            let retired = cli::retire_key(&settings, &kid, force).await?;
            if retired.dependent_tokens > 0 {
                eprintln!(
                    "key {kid} retired; {} live token(s) signed by it no longer verify",
                    retired.dependent_tokens
                );
            } else {
                eprintln!("key {kid} retired");
            }
            Ok(())
        }
        Command::Health {
            addr,
            tls,
            service,
            timeout,
        } => cli::health_probe(&addr, &tls, &service, timeout).await,
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            print!("{}", cli::check_config(&settings)?);
            Ok(())
        }
        Command::Enterprise {
            command: EnterpriseCommand::AddMember { enterprise, user },
        } => {
            cli::add_enterprise_member(&settings, &enterprise, &user).await?;
            eprintln!("user {user} added to enterprise {enterprise}");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
