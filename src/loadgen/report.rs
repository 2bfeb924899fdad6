//! Bench results: per-scenario throughput and latency, the floors, and the ratios between them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::loadgen::floors::Floors;
use crate::loadgen::{BenchOptions, Scenario};

/// One scenario's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Scenario.
    pub scenario: Scenario,
    /// Verify pool mix, for `verify`.
    pub mix: Option<&'static str>,
    /// OK responses.
    pub ok: u64,
    /// Failures by gRPC code (`Unknown`: an OK response with the wrong answer).
    pub errors: BTreeMap<String, u64>,
    /// Measured time, seconds.
    pub seconds: f64,
    /// OK responses per second.
    pub requests_per_sec: f64,
    /// Latency percentiles of OK responses, microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest.
    pub max_us: u64,
}

impl ScenarioResult {
    /// Summarises a run.
    pub fn from_histogram(
        scenario: Scenario,
        mix: Option<&'static str>,
        elapsed: Duration,
        histogram: &Histogram<u64>,
        errors: BTreeMap<String, u64>,
    ) -> Self {
        let seconds = elapsed.as_secs_f64();
        let ok = histogram.len();
        Self {
            scenario,
            mix,
            ok,
            errors,
            seconds,
            requests_per_sec: ok as f64 / seconds,
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

/// Throughput as a fraction of a floor.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// verify req/s ÷ health req/s.
    pub verify_over_health: Option<f64>,
    /// verify req/s ÷ (server cores × raw Ed25519 verify ops/s).
    pub verify_over_raw_verify: Option<f64>,
    /// verify req/s ÷ the composed verify floor 1/(1/h + 1/v).
    pub verify_over_verify_floor: Option<f64>,
    /// create req/s ÷ the composed create floor 1/(1/h + 1/s).
    pub create_over_create_floor: Option<f64>,
    /// The composed verify floor, req/s.
    pub verify_floor: Option<f64>,
    /// The composed create floor, req/s.
    pub create_floor: Option<f64>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Server address.
    pub addr: String,
    /// Connections.
    pub connections: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// Interleaved rounds each scenario was measured in.
    pub rounds: usize,
    /// Server cores assumed for per-core ratios.
    pub server_cores: usize,
    /// Crypto floors, when measured.
    pub floors: Option<Floors>,
    /// Scenario results, in run order.
    pub scenarios: Vec<ScenarioResult>,
    /// Ratios that could be computed from this run.
    pub ratios: Option<Ratios>,
}

impl Report {
    /// An empty report for `options`.
    pub fn new(options: &BenchOptions) -> Self {
        Self {
            addr: options.addr.clone(),
            connections: options.connections,
            concurrency: options.concurrency,
            rounds: options.rounds.max(1),
            server_cores: options.server_cores,
            floors: None,
            scenarios: Vec::new(),
            ratios: None,
        }
    }

    fn rate(&self, scenario: Scenario) -> Option<f64> {
        self.scenarios
            .iter()
            .find(|s| s.scenario == scenario)
            .map(|s| s.requests_per_sec)
    }

    /// Fills in the ratios available from the scenarios and floors run.
    pub fn compute_ratios(&mut self) {
        let h = self.rate(Scenario::Health);
        let verify = self.rate(Scenario::Verify);
        let create = self.rate(Scenario::Create);
        let v = self.floors.as_ref().map(|f| f.ed25519_verify.ops_per_sec);
        let s = self.floors.as_ref().map(|f| f.ed25519_sign.ops_per_sec);
        let compose = |a: Option<f64>, b: Option<f64>| Some(1.0 / (1.0 / a? + 1.0 / b?));
        let verify_floor = compose(h, v);
        let create_floor = compose(h, s);
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
        self.ratios = Some(Ratios {
            verify_over_health: ratio(verify, h),
            verify_over_raw_verify: ratio(verify, v.map(|v| v * self.server_cores as f64)),
            verify_over_verify_floor: ratio(verify, verify_floor),
            create_over_create_floor: ratio(create, create_floor),
            verify_floor,
            create_floor,
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "tokenmint bench — {} ({} connections, {} in flight, {} round{})",
            self.addr,
            self.connections,
            self.concurrency,
            self.rounds,
            if self.rounds == 1 { "" } else { "s" }
        )?;
        if let Some(floors) = &self.floors {
            writeln!(f, "\nsingle-core floors (ring)      ns/op      ops/s")?;
            for (name, rate) in [
                ("Ed25519 sign", floors.ed25519_sign),
                ("Ed25519 verify", floors.ed25519_verify),
                ("ES256 sign", floors.es256_sign),
                ("ES256 verify", floors.es256_verify),
            ] {
                writeln!(
                    f,
                    "  {name:<26} {:>9.0} {:>10.0}",
                    rate.ns_per_op, rate.ops_per_sec
                )?;
            }
        }
        if self.scenarios.is_empty() {
            return Ok(());
        }
        writeln!(
            f,
            "\n{:<14} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}  errors",
            "scenario", "ok", "req/s", "p50 µs", "p90 µs", "p99 µs", "p99.9µs", "max µs"
        )?;
        for s in &self.scenarios {
            let name = match s.mix {
                Some(mix) => format!("{}({mix})", s.scenario.name()),
                None => s.scenario.name().to_owned(),
            };
            let errors = if s.errors.is_empty() {
                "-".to_owned()
            } else {
                s.errors
                    .iter()
                    .map(|(c, n)| format!("{c}:{n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            writeln!(
                f,
                "{name:<14} {:>10} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>8}  {errors}",
                s.ok, s.requests_per_sec, s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us
            )?;
        }
        if let Some(r) = &self.ratios {
            let show =
                |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into());
            writeln!(f, "\nratios (same run)")?;
            writeln!(
                f,
                "  verify ÷ health                        {}",
                show(r.verify_over_health)
            )?;
            writeln!(
                f,
                "  verify ÷ (cores × raw Ed25519 verify)  {}",
                show(r.verify_over_raw_verify)
            )?;
            writeln!(
                f,
                "  verify ÷ verify floor 1/(1/h+1/v)      {}",
                show(r.verify_over_verify_floor)
            )?;
            writeln!(
                f,
                "  create ÷ create floor 1/(1/h+1/s)      {}",
                show(r.create_over_create_floor)
            )?;
        }
        Ok(())
    }
}
