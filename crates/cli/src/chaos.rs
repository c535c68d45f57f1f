//! `kafkaesque chaos`: the arguments of the chaos run; the run itself is `kafkaesque-chaos`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// Runs the service under faults and verifies from PostgreSQL that nothing was lost.
#[derive(Debug, Args)]
pub(crate) struct ChaosArgs {
    /// The test suite's short run on one broker (about 2 minutes: 3 kills, a join and a leave,
    /// a 10 s broker freeze, a broker restart, a 10 s database outage) instead of the full one
    /// on three (about 8 minutes, with leader kills and a rolling restart besides).
    #[arg(long)]
    quick: bool,
    /// Seed of the fault schedule: the same seed gives the same faults at the same times.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// scripts/broker, which runs the run's own Kafka nodes (with their own state folder and
    /// ports) [default: the source tree's]
    #[arg(long, env = "KAFKAESQUE_BROKER_SCRIPT")]
    broker_script: Option<PathBuf>,
    /// PostgreSQL's server programs (initdb, pg_ctl) [default: newest /usr/lib/postgresql/*/bin]
    #[arg(long, env = "KAFKAESQUE_PG_BIN")]
    pg_bin: Option<PathBuf>,
    /// Folder for logs and data [default: a new folder under the system's temporary folder]
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the folder even when the run passes (it is always kept when it fails).
    #[arg(long)]
    keep: bool,
}

pub(crate) async fn run(args: ChaosArgs) -> ExitCode {
    let binary = match std::env::current_exe() {
        Ok(b) => b,
        Err(error) => {
            eprintln!("chaos: cannot find this executable: {error}");
            return ExitCode::FAILURE;
        }
    };
    let options = kafkaesque_chaos::Options {
        quick: args.quick,
        seed: args.seed,
        binary,
        broker_script: args
            .broker_script
            .unwrap_or_else(|| PathBuf::from(kafkaesque_chaos::BROKER_SCRIPT)),
        pg_bin: args.pg_bin,
        work_dir: args.work_dir,
        keep: args.keep,
    };
    // On Ctrl-C or SIGTERM the run is dropped, and with it every process, database and Kafka
    // node it started (their handles stop them when dropped).
    let outcome = tokio::select! {
        outcome = kafkaesque_chaos::run(options) => outcome,
        () = super::shutdown_signal() => {
            eprintln!("chaos: interrupted; the processes and databases it started are stopped");
            return ExitCode::FAILURE;
        }
    };
    match outcome {
        Ok(verdict) => {
            print!("{verdict}");
            if verdict.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("chaos: the run could not be completed: {error}");
            ExitCode::FAILURE
        }
    }
}
