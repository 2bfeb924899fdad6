//! `tokenmint-bench`: a gRPC load generator for a running tokenmint, and the single-core crypto
//! floors that bound it, measured in the same run so results can be stated as ratios.
//!
//! A tool, not part of the server: this crate depends on the `tokenmint` library (for the
//! generated gRPC client and the [`Coalesced`] connection writer), and nothing in the server
//! depends on it. The `tokenmint-bench` binary (`src/main.rs`) parses [`BenchOptions`] and calls
//! [`run`]; the tests call [`run`] directly.
//!
//! Each scenario drives the server over `connections` HTTP/2 connections with `concurrency`
//! requests in flight for a duration (or a request count). Latencies of OK responses go into an
//! HdrHistogram; any other outcome counts as an error by gRPC code, never as throughput.

pub mod floors;
pub mod propagation;
pub mod report;
pub mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokenmint::grpc::connection::Coalesced;
use tonic::transport::{Channel, Endpoint};

pub use report::{Report, ScenarioResult};
pub use workload::{Scenario, VerifyMix};

/// What to run: the arguments of `tokenmint-bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Scenarios to run, comma-separated (default: all; with --floors and none given: none).
    #[arg(long = "scenario", value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
    /// HTTP/2 connections to open.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// At most this many requests per second in all (each worker paced evenly); unset: as fast
    /// as the server answers. A paced load is a background load of a known size, not a measure
    /// of the server's maximum.
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long each scenario is measured (ignored when `requests` is set).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// A fixed number of requests per scenario instead of a duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Measure every scenario this many times, interleaved (each round lasts `duration`, or
    /// `requests`); a scenario's result combines its rounds.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Warm-up before measuring each scenario.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Caller token: scopes user_manage, token_introspect, wallet_view, wallet_spend,
    /// wallet_create, trade_view, trade_trade.
    #[arg(
        long,
        env = "TOKENMINT_BENCH_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub token: String,
    /// Distinct tokens in the verify pool.
    #[arg(long, default_value_t = 1000)]
    pub pool: usize,
    /// Valid tokens only, or a share of revoked / expired / tampered ones.
    #[arg(long, default_value = "valid")]
    pub verify_mix: VerifyMix,
    /// Measure the single-core crypto floors too.
    #[arg(long)]
    pub floors: bool,
    /// Measure the floors on this core (the one the server is pinned to), not on the load
    /// generator's.
    #[arg(long, requires = "floors")]
    pub floors_core: Option<usize>,
    /// Cores the server runs on (for the per-core ratio).
    #[arg(long, default_value_t = 1)]
    pub server_cores: usize,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl BenchOptions {
    /// How often each worker may start a request under `--rate`.
    fn worker_period(&self) -> Option<Duration> {
        let rate = self.rate.filter(|rate| *rate > 0.0)?;
        Some(Duration::from_secs_f64(
            self.concurrency.max(1) as f64 / rate,
        ))
    }

    /// The scenarios to run: those asked for, else all of them (none with `--floors` alone).
    fn scenarios(&self) -> Vec<Scenario> {
        match (self.scenarios.is_empty(), self.floors) {
            (false, _) => self.scenarios.clone(),
            (true, true) => Vec::new(),
            (true, false) => vec![
                Scenario::Health,
                Scenario::Verify,
                Scenario::Create,
                Scenario::Mixed,
            ],
        }
    }
}

/// How long each crypto operation of the floors is measured, per round.
const FLOOR_BUDGET: Duration = Duration::from_millis(1000);

/// Runs every requested scenario (and the floors) and returns the report.
pub async fn run(options: &BenchOptions) -> anyhow::Result<Report> {
    let scenarios = options.scenarios();
    // `--floors` alone measures this machine only: no server needed.
    let channels = if scenarios.is_empty() {
        Vec::new()
    } else {
        connect(&options.addr, options.connections.max(1)).await?
    };
    let mut report = Report::new(options);
    // The floors are measured before every round, like another interleaved scenario, and averaged.
    let mut floor_runs = Vec::new();
    let measure_floors = |round: usize| -> anyhow::Result<Option<floors::Floors>> {
        if !options.floors {
            return Ok(None);
        }
        let core = match options.floors_core {
            Some(core) => format!(" on core {core}"),
            None => String::new(),
        };
        eprintln!(
            "measuring single-core crypto floors{core} (round {})…",
            round + 1
        );
        floors::measure_on(options.floors_core, FLOOR_BUDGET).map(Some)
    };
    if scenarios.is_empty() {
        floor_runs.extend(measure_floors(0)?);
    }
    let mut prepared = Vec::with_capacity(scenarios.len());
    for scenario in &scenarios {
        let workload =
            Arc::new(workload::Workload::prepare(*scenario, options, &channels[0]).await?);
        prepared.push((workload, Measured::default()));
    }
    // Rounds interleave the scenarios (health, verify, …, health, verify, …) so that a slow
    // stretch of a shared machine lands on all of them instead of skewing one ratio.
    let rounds = options.rounds.max(1);
    let mut round_rates = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let round_floors = if prepared.is_empty() {
            None
        } else {
            measure_floors(round)?
        };
        floor_runs.extend(round_floors.clone());
        let mut this_round = report::RoundRates {
            rates: Vec::new(),
            floors: round_floors,
        };
        for (workload, total) in &mut prepared {
            if round == 0 && !options.warmup.is_zero() && options.requests.is_none() {
                drive(
                    workload,
                    &channels,
                    options.concurrency,
                    options.worker_period(),
                    Some(options.warmup),
                    None,
                    None,
                )
                .await;
            }
            let measured = drive(
                workload,
                &channels,
                options.concurrency,
                options.worker_period(),
                options.requests.is_none().then_some(options.duration),
                options.requests,
                Some(workload.scenario.name()),
            )
            .await;
            eprintln!();
            this_round
                .rates
                .push((workload.scenario, measured.requests_per_sec()));
            total.add(measured);
        }
        round_rates.push(this_round);
    }
    for (workload, total) in prepared {
        report.scenarios.push(total.summary(&workload));
    }
    report.floors = floors::Floors::mean(&floor_runs);
    report.compute_ratios(&round_rates);
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report)
}

/// Opens `count` separate HTTP/2 connections. Their writes go through the server's own
/// [`Coalesced`] writer (one `send` per scheduler turn, however many requests it carries): the
/// load generator has one core too, and a `writev` per request made it, not the server, the
/// bottleneck of the verify scenario (ARCHITECTURE.md, "Smaller mechanisms").
async fn connect(addr: &str, count: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(addr.to_owned())
        .with_context(|| format!("invalid address {addr}"))?
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let connector = tower::service_fn(|uri: http::Uri| async move {
            let host = uri.host().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(80);
            let tcp = tokio::net::TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(Coalesced::new(tcp)))
        });
        channels.push(
            endpoint
                .connect_with_connector(connector)
                .await
                .with_context(|| format!("cannot connect to {addr}"))?,
        );
    }
    Ok(channels)
}

/// Runs `workload` with `concurrency` workers, each starting a request at most every `period`
/// (when set), until `duration` passes or `requests` are done.
async fn drive(
    workload: &Arc<workload::Workload>,
    channels: &[Channel],
    concurrency: usize,
    period: Option<Duration>,
    duration: Option<Duration>,
    requests: Option<u64>,
    progress_label: Option<&'static str>,
) -> Measured {
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let ticker = progress_label.map(|label| {
        let done = done.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            interval.tick().await;
            loop {
                interval.tick().await;
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprint!("\r{label}: {n} requests, {:.0} req/s   ", n as f64 / secs);
            }
        })
    });
    let mut workers = Vec::with_capacity(concurrency);
    for i in 0..concurrency.max(1) {
        let (workload, channel) = (workload.clone(), channels[i % channels.len()].clone());
        let (issued, done) = (issued.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut client = workload::Client::new(channel);
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut errors = std::collections::BTreeMap::<String, u64>::new();
            let mut sequence = i as u64;
            // Workers start their periods spread over one period, not all at once in bursts.
            let mut pace = period.map(|period| {
                let offset = period.mul_f64(i as f64 / concurrency.max(1) as f64);
                let mut pace =
                    tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                pace
            });
            loop {
                if let Some(pace) = &mut pace {
                    pace.tick().await;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if let Some(limit) = requests
                    && issued.fetch_add(1, Ordering::Relaxed) >= limit
                {
                    break;
                }
                sequence = sequence.wrapping_add(concurrency as u64);
                let begun = Instant::now();
                let outcome = workload.call(&mut client, sequence).await;
                let micros = begun.elapsed().as_micros() as u64;
                match outcome {
                    Ok(()) => {
                        let _ = histogram.record(micros.max(1));
                    }
                    Err(code) => *errors.entry(format!("{code:?}")).or_default() += 1,
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (histogram, errors)
        }));
    }
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut errors = std::collections::BTreeMap::<String, u64>::new();
    for worker in workers {
        if let Ok((h, e)) = worker.await {
            let _ = histogram.add(&h);
            for (code, n) in e {
                *errors.entry(code).or_default() += n;
            }
        }
    }
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    Measured {
        histogram: Some(histogram),
        errors,
        elapsed: started.elapsed(),
    }
}

/// What one or more rounds of a scenario measured.
#[derive(Default)]
struct Measured {
    histogram: Option<Histogram<u64>>,
    errors: std::collections::BTreeMap<String, u64>,
    elapsed: Duration,
}

impl Measured {
    /// OK responses per second.
    fn requests_per_sec(&self) -> f64 {
        let ok = self.histogram.as_ref().map_or(0, Histogram::len);
        ok as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Adds another round: requests and time add up, latencies merge.
    fn add(&mut self, round: Measured) {
        match (&mut self.histogram, round.histogram) {
            (Some(total), Some(h)) => {
                let _ = total.add(&h);
            }
            (total @ None, h) => *total = h,
            (Some(_), None) => {}
        }
        for (code, n) in round.errors {
            *self.errors.entry(code).or_default() += n;
        }
        self.elapsed += round.elapsed;
    }

    fn summary(self, workload: &workload::Workload) -> ScenarioResult {
        let histogram = self.histogram.unwrap_or_else(|| {
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
        });
        ScenarioResult::from_histogram(
            workload.scenario,
            workload.mix_label(),
            self.elapsed,
            &histogram,
            self.errors,
        )
    }
}
