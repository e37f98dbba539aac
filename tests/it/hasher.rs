//! The hasher against real Bitcoin block headers, through the public API and the CLI.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridminer::actuator::hasher::{
    BlockHeader, FixedHeader, HasherConfig, HasherPool, Kernel, Share, Target, ThrottlePlan,
};
use gridminer::units::{HashRate, Watts};

struct Block {
    height: u32,
    header: BlockHeader,
    hash: String,
    nonce: u32,
    bits: u32,
}

fn blocks() -> Vec<Block> {
    let csv = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/bitcoin-block-headers.csv"),
    )
    .expect("data/bitcoin-block-headers.csv");
    csv.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            Block {
                height: c[0].parse().unwrap(),
                header: BlockHeader::from_hex(c[1]).unwrap(),
                hash: c[2].to_owned(),
                nonce: c[3].parse().unwrap(),
                bits: u32::from_str_radix(c[4], 16).unwrap(),
            }
        })
        .collect()
}

/// Polls `cond` until it holds or `within` passes (a deadline, not a sleep).
fn wait_for(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::yield_now();
    }
    cond()
}

/// The pool, with every kernel, finds the real nonce of each block in the csv and
/// reports it as a share with the real block hash.
#[test]
fn pool_finds_the_real_blocks() {
    for b in blocks() {
        assert_eq!(b.header.bits(), b.bits);
        for kernel in Kernel::available() {
            let (pool, mut shares) = HasherPool::start(HasherConfig {
                threads: 2,
                watts_per_core: Watts(10.0),
                hashrate_per_core: HashRate::ZERO,
                kernel,
            });
            let source = Arc::new(StartAt {
                inner: FixedHeader {
                    header: b.header,
                    target: Target::from_compact(b.bits).unwrap(),
                },
                start: b.nonce - 3_000_000,
            });
            pool.set_job(source);
            pool.set_power_target(Watts(20.0));
            let share = shares
                .blocking_recv()
                .expect("the pool stopped without a share");
            pool.shutdown();
            assert_eq!(
                share.header.nonce(),
                b.nonce,
                "block {} with {kernel}",
                b.height
            );
            assert_eq!(share.hash.display_hex(), b.hash);
        }
    }
}

/// Roll 0 is the real header, scanned from a few million nonces below the real one;
/// other rolls have their version changed, so the one share found must be the block.
struct StartAt {
    inner: FixedHeader,
    start: u32,
}

impl gridminer::actuator::hasher::HeaderSource for StartAt {
    fn header(&self, roll: u64) -> BlockHeader {
        let mut h = self.inner.header;
        if roll != 0 {
            h.set_version(h.version() ^ (roll as u32).rotate_left(13));
        }
        h
    }
    fn target(&self) -> Target {
        self.inner.target
    }
    fn start_nonce(&self, roll: u64) -> u32 {
        if roll == 0 {
            self.start
        } else {
            0
        }
    }
}

/// Two workers of 10 W and 1 MH/s each (the model), idle with no job.
fn two_threads() -> (HasherPool, tokio::sync::mpsc::UnboundedReceiver<Share>) {
    HasherPool::start(HasherConfig {
        threads: 2,
        watts_per_core: Watts(10.0),
        hashrate_per_core: HashRate::from_mhs(1.0),
        kernel: Kernel::best(),
    })
}

/// The first block of the csv as a job at its own target.
fn first_block() -> Arc<FixedHeader> {
    let b = &blocks()[0];
    Arc::new(FixedHeader {
        header: b.header,
        target: Target::from_compact(b.bits).unwrap(),
    })
}

/// 0 W stops every worker (the pause is awaited, not slept for), hashing stays stopped,
/// and resuming continues: the hash counter moves on from where it was.
#[test]
fn zero_watts_pauses_and_resume_continues() {
    let (pool, _shares) = two_threads();
    pool.set_job(first_block());
    pool.set_power_target(Watts(15.0));
    let st = pool.status();
    assert_eq!(st.active_threads, 2);
    assert!((st.duty.get() - 0.5).abs() < 1e-6);
    // The duty travels as a 32-bit fraction in the control word.
    assert!((st.power.0 - 15.0).abs() < 1e-6, "{}", st.power);
    assert!((st.expected_hashrate.0 - 1.5e6).abs() < 1.0);
    assert!(wait_for(Duration::from_secs(10), || pool.hashes() > 1_000_000));

    pool.set_power_target(Watts::ZERO);
    assert!(pool.wait_paused(Duration::from_secs(10)).is_some());
    let stopped_at = pool.hashes();
    assert_eq!(pool.status().active_threads, 0);
    assert_eq!(pool.status().power, Watts::ZERO);
    // No worker is hashing, so the counter cannot have moved.
    assert_eq!(pool.hashing_threads(), 0);
    assert_eq!(pool.hashes(), stopped_at);

    pool.set_plan(ThrottlePlan {
        full_threads: 1,
        partial: gridminer::actuator::hasher::Duty::IDLE,
    });
    assert!(wait_for(Duration::from_secs(10), || pool.hashes() > stopped_at));
    pool.shutdown();
}

/// Without a job the workers rest whatever the target, so the pool reports drawing 0 W
/// (the daemon shows this for a pool load that has no Stratum job yet); with one it
/// reports its plan's modelled power, and 0 W again once the job is cleared.
#[test]
fn power_is_zero_without_a_job() {
    let (pool, _shares) = two_threads();
    pool.set_power_target(Watts(20.0));
    assert!(!pool.has_job());
    assert_eq!(pool.power(), Watts::ZERO);
    let st = pool.status();
    assert_eq!((st.target, st.power), (Watts(20.0), Watts::ZERO));
    assert_eq!(st.expected_hashrate, HashRate::ZERO);
    assert_eq!(pool.hashes(), 0);

    pool.set_job(first_block());
    assert!(pool.has_job());
    assert!((pool.power().0 - 20.0).abs() < 1e-6, "{}", pool.power());
    assert!(wait_for(Duration::from_secs(10), || pool.hashes() > 0));

    pool.clear_job();
    assert_eq!(pool.power(), Watts::ZERO);
    assert!(pool.wait_paused(Duration::from_secs(10)).is_some());
    pool.shutdown();
}

/// Runs `gridminer hash ARGS --json`, which must succeed, and parses what it prints.
fn hash_json(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gridminer"))
        .arg("hash")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    crate::support::json_stdout(&out)
}

/// `gridminer hash scan` over the range of the genesis header.
#[test]
fn cli_scan_finds_the_genesis_nonce() {
    let b = &blocks()[0];
    for kernel in Kernel::available() {
        let header = b.header.to_hex();
        let v = hash_json(&[
            "scan",
            "--header",
            &header,
            "--from",
            "2083236000",
            "--to",
            "2083237000",
            "--kernel",
            kernel.name(),
        ]);
        assert_eq!(
            v["found"],
            serde_json::json!([{"nonce": 2083236893u32, "hash": "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"}])
        );
        assert_eq!(v["kernel"], kernel.name());
    }
}

/// r10 (issue 10, soundness): `hash scan --kernel` with a name this CPU cannot run is a
/// clear error that lists what it does run, never a kernel built from the name. On this
/// machine's CPU every kernel may be detected, so the unknown name stands in for the
/// missing one; the lookup's own test covers the "CPU lacks it" branch against detection.
#[test]
fn r10_scan_with_a_kernel_this_cpu_lacks_is_a_clear_error() {
    let header = blocks()[0].header.to_hex();
    let out = crate::support::gridminer(
        &[
            "hash", "scan", "--header", &header, "--from", "0", "--to", "10", "--kernel", "avx1024",
        ],
        &crate::support::root(),
    );
    let shown = crate::support::text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("--kernel: no kernel is called \"avx1024\""),
        "{shown}"
    );
    for k in Kernel::available() {
        assert!(shown.contains(k.name()), "{shown}");
    }
    assert!(!shown.contains("panicked"), "{shown}");
    for (name, needs) in [("avx512", "AVX-512F"), ("sha-ni", "SHA, SSSE3")] {
        if Kernel::available().iter().any(|k| k.name() == name) {
            continue;
        }
        let out = crate::support::gridminer(
            &[
                "hash", "scan", "--header", &header, "--from", "0", "--to", "10", "--kernel", name,
            ],
            &crate::support::root(),
        );
        let shown = crate::support::text(&out);
        assert!(!out.status.success(), "{shown}");
        assert!(shown.contains(needs), "{shown}");
    }
}

/// `gridminer hash bench --json`, run short: every figure the issue names is printed and
/// well-formed, and the duty measurement reports each judged second with the spread of
/// the flat-out windows under it. Asserts on no speed: that is the benchmark's to report.
#[test]
fn cli_bench_prints_every_figure() {
    let v = hash_json(&[
        "bench",
        "--threads",
        "1",
        "--seconds",
        "0.2",
        "--pauses",
        "5",
    ]);
    // Which kernel wins is raced in the bench's own process; where two are close (AVX-512
    // against SHA-NI on some CPUs) this process's race may pick the other, so only check
    // that the bench ran one this CPU has.
    let names: Vec<&str> = Kernel::available().iter().map(|k| k.name()).collect();
    assert!(
        names.contains(&v["kernel"].as_str().unwrap_or("")),
        "{} not in {names:?}",
        v["kernel"]
    );
    assert_eq!(v["baseline_kernel"], "sha2-compress256");
    for field in [
        "mhs_per_core",
        "mhs_total",
        "baseline_mhs_per_core",
        "ratio",
        "pause_p50_ms",
        "pause_p99_ms",
        "duty_achieved",
    ] {
        let x = v[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field}: {}", v[field]));
        assert!(x.is_finite() && x > 0.0, "{field} = {x}");
    }
    let seconds = v["duty_each_second"].as_array().unwrap();
    assert_eq!(seconds.len() as u64, v["duty_seconds"].as_u64().unwrap());
    assert!(seconds.len() >= 2);
    let worst = seconds
        .iter()
        .map(|s| s["error_pct"].as_f64().unwrap().abs())
        .fold(0.0, f64::max);
    assert!((worst - v["duty_error_worst_second_pct"].as_f64().unwrap()).abs() < 1e-9);
    for s in seconds {
        assert!(s["flat_out_spread_pct"].as_f64().unwrap() >= 0.0);
    }
}
