//! The `tokenmint-bench` command: load-tests a running tokenmint and measures the crypto floors
//! (see BENCHMARKS.md). Prints the report on stdout; progress goes to stderr.

use std::process::ExitCode;

use clap::Parser;
use tokenmint_bench::BenchOptions;

/// The same allocator as the `tokenmint` server binary: the load generator ran inside that binary
/// (as `tokenmint bench`) when the published figures were measured, so its own cost per request
/// stays what it was then (ARCHITECTURE.md, "Where the load generator lives").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// tokenmint-bench: load-tests a running tokenmint and measures the single-core crypto floors.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    options: BenchOptions,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tokenmint-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tokenmint_bench::run(&cli.options)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tokenmint-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
