//! `stateset-voice`: the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use stateset_voice::config::Config;
use stateset_voice::openapi::{Document, document_json};
use stateset_voice::sim::cli::{self as sim_cli, AccountArg, CallOptions};
use stateset_voice::startup::{Application, open_store};
use stateset_voice::{shutdown, telemetry};

/// Exit code for invalid configuration (`EX_USAGE`).
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "stateset-voice",
    version,
    about = "Production runtime and API for AI phone agents"
)]
struct Cli {
    /// A TOML file with settings (environment variables override it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (SQLite file database and 127.0.0.1:5050 by default).
    Serve {
        /// Also run simulated Twilio and OpenAI in-process, with a demo tenant, agent,
        /// route and keys: a complete local setup with no accounts.
        #[arg(long)]
        sandbox: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Print an OpenAPI document.
    Openapi {
        /// Which document.
        #[arg(value_enum)]
        which: Which,
    },
    /// Run a simulator of an outside service (needs no configuration).
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Drive N concurrent simulated calls against a running server and report relay
    /// latency, loss, first-audio latency, CPU and memory (see docs/performance.md).
    Loadtest(stateset_voice::loadtest::LoadtestArgs),
}

#[derive(Subcommand)]
enum SimCommand {
    /// A Twilio stand-in (REST API, signed webhooks, media streams) until Ctrl-C.
    Carrier {
        /// Address of its REST API.
        #[arg(long, default_value = "127.0.0.1:5060")]
        bind: SocketAddr,
        /// An account as ACCOUNT_SID:AUTH_TOKEN (repeatable).
        #[arg(long = "account", required = true)]
        accounts: Vec<AccountArg>,
    },
    /// Place one scripted inbound call at a running server and print what happened.
    Call {
        /// Base URL of the server.
        #[arg(long, default_value = "http://127.0.0.1:5050")]
        server: String,
        /// Called number (one of the server's routes).
        #[arg(long)]
        to: String,
        /// Caller.
        #[arg(long, default_value = "+15555550100")]
        from: String,
        /// Account SID the server knows for the number.
        #[arg(long)]
        account_sid: String,
        /// That account's auth token (signs the webhooks).
        #[arg(long)]
        auth_token: String,
        /// Seconds the caller speaks.
        #[arg(long, default_value_t = 2.0)]
        speak_seconds: f64,
        /// Seconds after the stream starts when the caller hangs up.
        #[arg(long, default_value_t = 10.0)]
        hangup_after: f64,
    },
    /// An OpenAI Realtime API (GA) stand-in on a websocket until Ctrl-C.
    Realtime {
        /// Address to listen on (the URL is ws://BIND/v1/realtime).
        #[arg(long, default_value = "127.0.0.1:5070")]
        bind: SocketAddr,
        /// An accepted API key (repeatable).
        #[arg(long = "api-key", required = true)]
        api_keys: Vec<String>,
        /// A JSON script of user turns and replies (see `sim::realtime::RealtimeScript`).
        #[arg(long)]
        script: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    Public,
    Admin,
    Full,
}

fn load_config(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    Config::from_env(path).map_err(|err| {
        eprintln!("stateset-voice: {err}");
        ExitCode::from(EX_USAGE)
    })
}

/// `sim …`: no configuration, its own runtime, text logs.
fn run_sim(command: SimCommand) -> ExitCode {
    let quiet = matches!(command, SimCommand::Call { .. });
    telemetry::init_logging(
        stateset_voice::config::LogFormat::Text,
        if quiet { "warn" } else { "info" },
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("stateset-voice: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            SimCommand::Carrier { bind, accounts } => {
                sim_cli::run_carrier(bind, accounts, shutdown::signal()).await?;
                Ok(true)
            }
            SimCommand::Call {
                server,
                to,
                from,
                account_sid,
                auth_token,
                speak_seconds,
                hangup_after,
            } => {
                let seconds = |s: f64| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default();
                let call = sim_cli::run_call(CallOptions {
                    server,
                    to,
                    from,
                    account_sid,
                    auth_token,
                    speak: seconds(speak_seconds),
                    hangup_after: seconds(hangup_after),
                })
                .await?;
                print!("{}", sim_cli::summary(&call));
                Ok::<_, anyhow::Error>(sim_cli::succeeded(&call))
            }
            SimCommand::Realtime {
                bind,
                api_keys,
                script,
            } => {
                stateset_voice::sim::realtime::run_standalone(
                    bind,
                    api_keys,
                    script.as_deref(),
                    shutdown::signal(),
                )
                .await?;
                Ok(true)
            }
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("stateset-voice: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `serve --sandbox`: simulators first (their URLs go into the settings), then the server,
/// then the demo data and the banner.
fn run_sandbox(file: Option<&std::path::Path>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("stateset-voice: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let mut raw =
            match stateset_voice::config::RawSettings::gather(file, |k| std::env::var(k).ok()) {
                Ok(raw) => raw,
                Err(err) => return Ok(Err(err)),
            };
        let sandbox = stateset_voice::sandbox::start(&mut raw).await?;
        let config = match Config::parse(&raw) {
            Ok(c) => c,
            Err(err) => return Ok(Err(err)),
        };
        telemetry::init_logging(config.log_format, &config.log_level);
        let app = Application::build(config.clone()).await?;
        let base = format!("http://{}", app.local_addr());
        let seeded = stateset_voice::sandbox::seed(&app.state(), &sandbox).await?;
        println!(
            "{}",
            stateset_voice::sandbox::banner(&config, &seeded, &base)
        );
        let outcome = app.run_until_stopped(shutdown::signal()).await;
        drop(sandbox);
        outcome.map(Ok)
    });
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(config_error)) => {
            eprintln!("stateset-voice: {config_error}");
            ExitCode::from(EX_USAGE)
        }
        Err(error) => {
            eprintln!("stateset-voice: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Sim { command } = cli.command {
        return run_sim(command);
    }
    if let Command::Loadtest(args) = cli.command {
        return stateset_voice::loadtest::main(args);
    }
    if let Command::Openapi { which } = cli.command {
        let doc = match which {
            Which::Public => Document::Public,
            Which::Admin => Document::Admin,
            Which::Full => Document::Full,
        };
        println!("{}", document_json(doc));
        return ExitCode::SUCCESS;
    }
    if let Command::Serve { sandbox: true } = cli.command {
        return run_sandbox(cli.config.as_deref());
    }
    let config = match load_config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    telemetry::init_logging(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("stateset-voice: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { .. } => {
                let app = Application::build(config).await?;
                app.run_until_stopped(shutdown::signal()).await
            }
            Command::Migrate => {
                let store = open_store(&config).await?;
                tracing::info!(database = %config.database_display(), "migrations applied");
                store.close().await;
                Ok(())
            }
            Command::Openapi { .. } | Command::Sim { .. } | Command::Loadtest(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "stateset-voice stopped with an error"
            );
            eprintln!("stateset-voice: {error:#}");
            ExitCode::FAILURE
        }
    }
}
