//! Single-core crypto floors measured with raw ring: what signing and verification cost on this
//! machine, so the server's throughput can be stated as a fraction of what its crypto allows.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, UnparsedPublicKey,
};
use serde::Serialize;

/// Nanoseconds per operation and operations per second, single thread.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rate {
    /// ns per operation.
    pub ns_per_op: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
}

/// The floors of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Floors {
    /// Ed25519 signing (ring key pair parsed once).
    pub ed25519_sign: Rate,
    /// Ed25519 verification.
    pub ed25519_verify: Rate,
    /// ES256 signing.
    pub es256_sign: Rate,
    /// ES256 verification.
    pub es256_verify: Rate,
}

impl Floors {
    /// The mean of several measurements (taken between the rounds of a run, so that the floors
    /// see the same drift of a shared machine as the scenarios do); `None` for none.
    pub fn mean(runs: &[Floors]) -> Option<Floors> {
        let n = runs.len() as f64;
        let mean = |pick: fn(&Floors) -> Rate| {
            let ns = runs.iter().map(|f| pick(f).ns_per_op).sum::<f64>() / n;
            Rate {
                ns_per_op: ns,
                ops_per_sec: 1e9 / ns,
            }
        };
        (!runs.is_empty()).then(|| Floors {
            ed25519_sign: mean(|f| f.ed25519_sign),
            ed25519_verify: mean(|f| f.ed25519_verify),
            es256_sign: mean(|f| f.es256_sign),
            es256_verify: mean(|f| f.es256_verify),
        })
    }
}

/// A message the size of a typical token's signing input.
const MESSAGE: &[u8] = &[b'x'; 420];

/// Measures each operation for about `each` on a thread of its own, pinned to `core` when one is
/// given: the core the server runs on, so that the floors and the server's rates come from the
/// same core (the cores of a shared VM run at different speeds; BENCHMARKS.md,
/// "How to reproduce").
pub fn measure_on(core: Option<usize>, each: Duration) -> anyhow::Result<Floors> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if let Some(core) = core {
                    pin_current_thread(core)?;
                }
                Ok(measure(each))
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the floor measurement panicked")))
    })
}

/// Restricts the calling thread to `core`.
#[cfg(target_os = "linux")]
fn pin_current_thread(core: usize) -> anyhow::Result<()> {
    // `CPU_SET` indexes a fixed-size bit set: a larger core number would write past it.
    let limit = 8 * std::mem::size_of::<libc::cpu_set_t>();
    anyhow::ensure!(
        core < limit,
        "--floors-core {core}: core numbers go up to {}",
        limit - 1
    );
    // SAFETY: `cpu_set_t` is a plain bit set for which all zeroes is the empty set; `core` is
    // within it (checked above); `sched_setaffinity(0, …)` reads `set` and applies to the
    // calling thread only.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        anyhow::bail!(
            "--floors-core {core}: cannot run on that core ({})",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Restricts the calling thread to `core` (Linux only).
#[cfg(not(target_os = "linux"))]
fn pin_current_thread(core: usize) -> anyhow::Result<()> {
    anyhow::bail!("--floors-core {core}: pinning a thread to a core needs Linux")
}

/// Measures each operation for about `each`, on the calling thread.
pub fn measure(each: Duration) -> Floors {
    let rng = SystemRandom::new();
    let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519 key");
    let ed = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).expect("ed25519 key");
    let ed_sig = ed.sign(MESSAGE);
    let ed_pub = UnparsedPublicKey::new(&ED25519, ed.public_key().as_ref().to_vec());
    let ec_pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("p256 key");
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_pkcs8.as_ref(), &rng)
        .expect("p256 key");
    let ec_sig = ec.sign(&rng, MESSAGE).expect("sign");
    let ec_pub =
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, ec.public_key().as_ref().to_vec());
    Floors {
        ed25519_sign: rate(each, || {
            black_box(ed.sign(black_box(MESSAGE)));
        }),
        ed25519_verify: rate(each, || {
            black_box(ed_pub.verify(black_box(MESSAGE), ed_sig.as_ref())).expect("valid");
        }),
        es256_sign: rate(each, || {
            black_box(ec.sign(&rng, black_box(MESSAGE))).expect("sign");
        }),
        es256_verify: rate(each, || {
            black_box(ec_pub.verify(black_box(MESSAGE), ec_sig.as_ref())).expect("valid");
        }),
    }
}

/// Runs `op` repeatedly for about `budget` and returns its rate.
fn rate(budget: Duration, mut op: impl FnMut()) -> Rate {
    for _ in 0..100 {
        op();
    }
    let started = Instant::now();
    let mut n: u64 = 0;
    while started.elapsed() < budget {
        for _ in 0..100 {
            op();
        }
        n += 100;
    }
    let ns = started.elapsed().as_nanos() as f64 / n as f64;
    Rate {
        ns_per_op: ns,
        ops_per_sec: 1e9 / ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floors(ns: f64) -> Floors {
        let rate = Rate {
            ns_per_op: ns,
            ops_per_sec: 1e9 / ns,
        };
        Floors {
            ed25519_sign: rate,
            ed25519_verify: rate,
            es256_sign: rate,
            es256_verify: rate,
        }
    }

    /// Pinned to a core that exists, the floors are measured; a core that does not exist is an
    /// error that names the flag, not a silently unpinned measurement.
    #[cfg(target_os = "linux")]
    #[test]
    fn floors_run_on_the_core_asked_for() {
        let floors = measure_on(Some(0), Duration::from_millis(1)).unwrap();
        assert!(floors.ed25519_verify.ops_per_sec > 0.0);
        let missing = measure_on(Some(100_000), Duration::from_millis(1)).unwrap_err();
        assert!(
            missing.to_string().contains("--floors-core 100000"),
            "{missing}"
        );
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let offline = measure_on(Some(1023), Duration::from_millis(1));
        if cores < 1024 {
            let error = offline.unwrap_err().to_string();
            assert!(error.contains("cannot run on that core"), "{error}");
        }
    }

    #[test]
    fn the_mean_of_rounds_averages_time_per_operation() {
        let mean = Floors::mean(&[floors(10_000.0), floors(30_000.0)]).unwrap();
        assert_eq!(mean.ed25519_verify.ns_per_op, 20_000.0);
        assert_eq!(mean.ed25519_verify.ops_per_sec, 50_000.0);
        assert!(Floors::mean(&[]).is_none());
    }
}
