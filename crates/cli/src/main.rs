//! `kafkaesque`: one binary, a subcommand per job. It parses arguments, sets up JSON logs and
//! hands over to the library crates; nothing else lives here.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kafkaesque_subscribers::config::{DEFAULT_DATABASE_URL, DEFAULT_KAFKA_BROKERS, DEFAULT_LISTEN};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "kafkaesque", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the subscriber-update service until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Kafka bootstrap servers, host:port[,host:port...].
    #[arg(long, env = "KAFKA_BROKERS", default_value = DEFAULT_KAFKA_BROKERS)]
    kafka_brokers: String,
    /// PostgreSQL database of the service; created if the server lacks it.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    database_url: tokio_postgres::Config,
    /// Address the HTTP server listens on (port 0: any free port, logged on start).
    #[arg(long, env = "KAFKAESQUE_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let outcome = match cli.command {
        Command::Serve(args) => {
            let config = kafkaesque_subscribers::Config {
                kafka_brokers: args.kafka_brokers,
                database: args.database_url,
                listen: args.listen,
            };
            kafkaesque_subscribers::serve(config, shutdown_signal()).await
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "exiting");
            ExitCode::FAILURE
        }
    }
}

/// Completes on the first Ctrl-C or SIGTERM (what `kill` and service managers send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
