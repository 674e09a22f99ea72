//! `stateset-voice`: the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use stateset_voice::config::Config;
use stateset_voice::openapi::{Document, document_json};
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
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print an OpenAPI document.
    Openapi {
        /// Which document.
        #[arg(value_enum)]
        which: Which,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Openapi { which } = cli.command {
        let doc = match which {
            Which::Public => Document::Public,
            Which::Admin => Document::Admin,
            Which::Full => Document::Full,
        };
        println!("{}", document_json(doc));
        return ExitCode::SUCCESS;
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
            Command::Serve => {
                let app = Application::build(config).await?;
                app.run_until_stopped(shutdown::signal()).await
            }
            Command::Migrate => {
                let store = open_store(&config).await?;
                tracing::info!(database = %config.database_display(), "migrations applied");
                store.close().await;
                Ok(())
            }
            Command::Openapi { .. } => Ok(()),
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
