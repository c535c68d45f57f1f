//! `kafkaesque load` and `kafkaesque bench`: hand over to the bench crate, print what it says.

use std::process::ExitCode;

use kafkaesque_bench::{load, suite, BenchArgs, LoadArgs};

pub(crate) async fn load(args: LoadArgs) -> ExitCode {
    report(load::run(args).await.map(|summary| println!("{summary}")))
}

pub(crate) async fn bench(args: BenchArgs) -> ExitCode {
    report(suite::run(args).await.map(|out| {
        if let Some(dir) = out {
            println!("{}", dir.join("report.md").display());
        }
    }))
}

fn report(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
