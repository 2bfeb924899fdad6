//! Bench results: per-scenario throughput and latency, the floors, and the ratios between them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::floors::Floors;
use crate::{BenchOptions, Scenario};

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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
    /// The core the floors were measured on, when pinned.
    pub floors_core: Option<usize>,
    /// Scenario results, in run order.
    pub scenarios: Vec<ScenarioResult>,
    /// Ratios that could be computed from this run (every round's requests pooled).
    pub ratios: Option<Ratios>,
    /// The same ratios within each round (scenarios and floors of one round were measured
    /// minutes apart at most), when there were several.
    pub round_ratios: Vec<Ratios>,
    /// The median of `round_ratios`: the figure least moved by one slow stretch of a shared
    /// machine.
    pub median_ratios: Option<Ratios>,
}

impl Ratios {
    /// The ratios between rates `h` (health), `verify` and `create` (req/s) and the crypto
    /// `floors`, for a server on `cores` cores; a ratio is `None` when a side is missing.
    pub fn of(
        h: Option<f64>,
        verify: Option<f64>,
        create: Option<f64>,
        floors: Option<&Floors>,
        cores: usize,
    ) -> Self {
        let v = floors.map(|f| f.ed25519_verify.ops_per_sec);
        let s = floors.map(|f| f.ed25519_sign.ops_per_sec);
        let compose = |a: Option<f64>, b: Option<f64>| Some(1.0 / (1.0 / a? + 1.0 / b?));
        let verify_floor = compose(h, v);
        let create_floor = compose(h, s);
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
        Self {
            verify_over_health: ratio(verify, h),
            verify_over_raw_verify: ratio(verify, v.map(|v| v * cores as f64)),
            verify_over_verify_floor: ratio(verify, verify_floor),
            create_over_create_floor: ratio(create, create_floor),
            verify_floor,
            create_floor,
        }
    }

    /// Each ratio's median over `rounds` (of the rounds where it exists).
    pub fn median(rounds: &[Ratios]) -> Option<Self> {
        let median = |pick: fn(&Ratios) -> Option<f64>| {
            let mut values: Vec<f64> = rounds.iter().filter_map(pick).collect();
            values.sort_by(f64::total_cmp);
            let n = values.len();
            match n {
                0 => None,
                _ if n % 2 == 1 => Some(values[n / 2]),
                _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
            }
        };
        (!rounds.is_empty()).then(|| Self {
            verify_over_health: median(|r| r.verify_over_health),
            verify_over_raw_verify: median(|r| r.verify_over_raw_verify),
            verify_over_verify_floor: median(|r| r.verify_over_verify_floor),
            create_over_create_floor: median(|r| r.create_over_create_floor),
            verify_floor: median(|r| r.verify_floor),
            create_floor: median(|r| r.create_floor),
        })
    }
}

/// Picks one ratio out of [`Ratios`].
type RatioPick = fn(&Ratios) -> Option<f64>;

/// What one round measured: each scenario's rate and the floors measured before it.
#[derive(Debug, Clone, Default)]
pub struct RoundRates {
    /// OK responses per second, by scenario.
    pub rates: Vec<(Scenario, f64)>,
    /// The crypto floors of this round, when measured.
    pub floors: Option<Floors>,
}

impl RoundRates {
    fn rate(&self, scenario: Scenario) -> Option<f64> {
        self.rates
            .iter()
            .find(|(s, _)| *s == scenario)
            .map(|(_, r)| *r)
    }
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
            floors_core: options.floors_core,
            scenarios: Vec::new(),
            ratios: None,
            round_ratios: Vec::new(),
            median_ratios: None,
        }
    }

    fn rate(&self, scenario: Scenario) -> Option<f64> {
        self.scenarios
            .iter()
            .find(|s| s.scenario == scenario)
            .map(|s| s.requests_per_sec)
    }

    /// Fills in the ratios available from the scenarios and floors run, pooled and (with
    /// several `rounds`) per round and their median.
    pub fn compute_ratios(&mut self, rounds: &[RoundRates]) {
        self.ratios = Some(Ratios::of(
            self.rate(Scenario::Health),
            self.rate(Scenario::Verify),
            self.rate(Scenario::Create),
            self.floors.as_ref(),
            self.server_cores,
        ));
        if rounds.len() > 1 {
            self.round_ratios = rounds
                .iter()
                .map(|round| {
                    Ratios::of(
                        round.rate(Scenario::Health),
                        round.rate(Scenario::Verify),
                        round.rate(Scenario::Create),
                        round.floors.as_ref(),
                        self.server_cores,
                    )
                })
                .collect();
            self.median_ratios = Ratios::median(&self.round_ratios);
        }
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
            let core = match self.floors_core {
                Some(core) => format!(" on core {core}"),
                None => String::new(),
            };
            writeln!(f, "\nsingle-core floors (ring{core})")?;
            writeln!(f, "                                 ns/op      ops/s")?;
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
            let median = self.median_ratios.as_ref();
            let lines: [(&str, RatioPick); 4] = [
                ("verify ÷ health", |r| r.verify_over_health),
                ("verify ÷ (cores × raw Ed25519 verify)", |r| {
                    r.verify_over_raw_verify
                }),
                ("verify ÷ verify floor 1/(1/h+1/v)", |r| {
                    r.verify_over_verify_floor
                }),
                ("create ÷ create floor 1/(1/h+1/s)", |r| {
                    r.create_over_create_floor
                }),
            ];
            match median {
                Some(_) => writeln!(
                    f,
                    "\nratios (same run)                        pooled  median of {} rounds",
                    self.round_ratios.len()
                )?,
                None => writeln!(f, "\nratios (same run)")?,
            }
            for (name, pick) in lines {
                match median {
                    Some(m) => {
                        writeln!(f, "  {name:<38} {:>6}  {:>6}", show(pick(r)), show(pick(m)))?
                    }
                    None => writeln!(f, "  {name:<38} {}", show(pick(r)))?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floors::Rate;

    fn floors(sign_ops: f64, verify_ops: f64) -> Floors {
        let rate = |ops: f64| Rate {
            ns_per_op: 1e9 / ops,
            ops_per_sec: ops,
        };
        Floors {
            ed25519_sign: rate(sign_ops),
            ed25519_verify: rate(verify_ops),
            es256_sign: rate(1.0),
            es256_verify: rate(1.0),
        }
    }

    #[test]
    fn ratios_compose_the_floors() {
        // h = 20,000 and v = 5,000: the verify floor is 1/(1/20000 + 1/5000) = 4,000 req/s.
        let r = Ratios::of(
            Some(20_000.0),
            Some(3_000.0),
            Some(2_000.0),
            Some(&floors(20_000.0, 5_000.0)),
            1,
        );
        assert_eq!(r.verify_floor, Some(4_000.0));
        assert_eq!(r.verify_over_verify_floor, Some(0.75));
        assert_eq!(r.verify_over_health, Some(0.15));
        assert_eq!(r.create_floor, Some(10_000.0));
        assert_eq!(r.create_over_create_floor, Some(0.2));
        let no_floors = Ratios::of(Some(20_000.0), Some(3_000.0), None, None, 1);
        assert_eq!(no_floors.verify_over_verify_floor, None);
        assert_eq!(no_floors.create_over_create_floor, None);
    }

    #[test]
    fn the_median_of_rounds_ignores_one_slow_round() {
        let round = |v: f64| Ratios {
            verify_over_health: Some(v),
            ..Ratios::default()
        };
        let median = Ratios::median(&[round(0.7), round(0.3), round(0.72)]).unwrap();
        assert_eq!(median.verify_over_health, Some(0.7));
        let even = Ratios::median(&[round(0.6), round(0.8)]).unwrap();
        assert!((even.verify_over_health.unwrap() - 0.7).abs() < 1e-12);
        assert_eq!(even.create_over_create_floor, None);
        assert_eq!(Ratios::median(&[]), None);
    }

    #[test]
    fn per_round_ratios_use_each_rounds_own_rates_and_floors() {
        let options_rounds = [
            RoundRates {
                rates: vec![(Scenario::Health, 20_000.0), (Scenario::Verify, 14_000.0)],
                floors: Some(floors(20_000.0, 5_000.0)),
            },
            RoundRates {
                rates: vec![(Scenario::Health, 10_000.0), (Scenario::Verify, 8_000.0)],
                floors: Some(floors(20_000.0, 5_000.0)),
            },
        ];
        let mut report = Report {
            addr: String::new(),
            connections: 1,
            concurrency: 1,
            rounds: 2,
            server_cores: 1,
            floors: None,
            floors_core: None,
            scenarios: Vec::new(),
            ratios: None,
            round_ratios: Vec::new(),
            median_ratios: None,
        };
        report.compute_ratios(&options_rounds);
        let per_round: Vec<Option<f64>> = report
            .round_ratios
            .iter()
            .map(|r| r.verify_over_health)
            .collect();
        assert_eq!(per_round, [Some(0.7), Some(0.8)]);
        let median = report.median_ratios.unwrap().verify_over_health.unwrap();
        assert!((median - 0.75).abs() < 1e-12);
    }
}
