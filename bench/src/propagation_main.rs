//! The `tokenmint-propagation` command: measures how long a revoke made on one tokenmint replica
//! takes to be reported by VerifyToken on the others (see `tokenmint_bench::propagation` and
//! `scripts/propagation.sh`). Prints one summary line on stdout; progress goes to stderr.

use std::process::ExitCode;

use clap::Parser;
use tokenmint_bench::propagation::{self, PropagationOptions};

/// tokenmint-propagation: revoke on one replica, time until the others report REVOKED.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    options: PropagationOptions,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match propagation::measure(&cli.options).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tokenmint-propagation: {error:#}");
            ExitCode::FAILURE
        }
    }
}
