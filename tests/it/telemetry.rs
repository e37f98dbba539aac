//! Telemetry against real peers: Debian's victoria-metrics as a server of the InfluxDB
//! v2 write API, and a plain TCP client scraping the metrics endpoint.
//!
//! victoria-metrics is found at `/usr/bin/victoria-metrics` (or on PATH); when missing the
//! tests say so and skip, unless `GRIDMINER_REQUIRE_PEERS=1`, when missing is a failure.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gridminer::actuator::hasher::stratum::StratumCounts;
use gridminer::actuator::hasher::{Duty, HasherStatus, HashingReport};
use gridminer::actuator::status::{LoadStatus, Operation};
use gridminer::actuator::{ActuatorError, Commanded};
use gridminer::clock::Timestamp;
use gridminer::decision::{Decision, LoadTarget, PolicyMemory, Reason};
use gridminer::signal::OperatorAction;
use gridminer::signal::Quantity;
use gridminer::state::{Reading, SiteState};
use gridminer::telemetry::evidence::{Closure, Evidence, LoadView, UnitTiming};
use gridminer::telemetry::points::{self, Point};
use gridminer::telemetry::{writer, DropCause, InfluxConfig, Metrics, MetricsServer};
use gridminer::units::{HashRate, Hertz, PricePerMwh, Watts};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(60);

fn victoria_metrics() -> Option<PathBuf> {
    let found = std::iter::once(PathBuf::from("/usr/bin/victoria-metrics"))
        .chain(
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join("victoria-metrics"))
                        .collect()
                })
                .unwrap_or_else(Vec::new),
        )
        .find(|p| p.is_file());
    if found.is_none() {
        let msg = "victoria-metrics not found (apt-get install victoria-metrics; see .ci/setup-telemetry.sh)";
        if std::env::var("GRIDMINER_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{msg}, and GRIDMINER_REQUIRE_PEERS=1");
        }
        eprintln!("SKIPPED: {msg}");
    }
    found
}

/// A port nobody listens on now: bound, then released for the server to take.
fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` until it holds or the deadline passes.
async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval, not a wait
    }
}

/// A victoria-metrics server on a loopback port with its own data folder.
struct Vm {
    child: Child,
    port: u16,
}

impl Vm {
    async fn start(bin: &Path, data: &Path, port: u16) -> Vm {
        let child = Command::new(bin)
            .arg(format!("-storageDataPath={}", data.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            // Fixed, past timestamps must not fall outside the retention.
            .arg("-retentionPeriod=100y")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics starts");
        let vm = Vm { child, port };
        wait_for("victoria-metrics /health", async || {
            matches!(http(port, "GET", "/health", "").await, Some((200, _)))
        })
        .await;
        vm
    }

    /// Every sample of the series matching `selector`, as (labels, value, timestamp ms).
    async fn export(&self, selector: &str) -> Vec<(Value, f64, i64)> {
        // Make what was just written searchable now rather than within a second.
        http(self.port, "GET", "/internal/force_flush", "").await;
        let q = format!("/api/v1/export?match[]={}", urlencode(selector));
        let (status, body) = http(self.port, "GET", &q, "")
            .await
            .expect("export answers");
        assert_eq!(status, 200, "{body}");
        let mut out = Vec::new();
        for line in body.lines().filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            let values = v["values"].as_array().unwrap();
            let times = v["timestamps"].as_array().unwrap();
            for (val, t) in values.iter().zip(times) {
                out.push((
                    v["metric"].clone(),
                    val.as_f64().unwrap(),
                    t.as_i64().unwrap(),
                ));
            }
        }
        out.sort_by_key(|s| s.2);
        out
    }
}

impl Vm {
    /// Stops the server the way a service manager would (SIGTERM), so what it accepted is
    /// on disk for the next start; SIGKILL could lose its last second.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One HTTP/1.1 request over a fresh connection; `None` when nothing answers.
async fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.ok()?;
    let resp = String::from_utf8_lossy(&resp).to_string();
    let status = resp.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn config(port: u16, dir: &Path) -> InfluxConfig {
    let mut c = InfluxConfig::new(
        &format!("http://127.0.0.1:{port}"),
        "site",
        "gridminer",
        dir,
    );
    c.batch_size = 4;
    c.flush_interval = Duration::from_millis(20);
    c.retry_max = Duration::from_millis(100);
    c.timeout = Duration::from_secs(5);
    c
}

const T0: i64 = 1_700_000_000_000;

/// N points of one series with values 0..N, one second apart.
fn numbered(n: usize) -> Vec<Point> {
    (0..n)
        .map(|i| {
            Point::new(points::measurement::SIGNAL, Timestamp(T0 + i as i64 * 1000))
                .tag(points::tag::QUANTITY, "test")
                .float(points::field::VALUE, i as f64)
        })
        .collect()
}

#[tokio::test]
async fn every_kind_of_point_arrives_with_its_values() {
    let Some(bin) = victoria_metrics() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let buf = tempfile::tempdir().unwrap();
    let vm = Vm::start(&bin, data.path(), free_port()).await;

    let at = Timestamp(T0);
    let mut state = SiteState::new(&[]);
    state.pv = Some(Reading {
        value: Watts(1234.5),
        at,
    });
    state.grid = Some(Reading {
        value: Watts(-800.0),
        at,
    });
    state.frequency = Some(Reading {
        value: Hertz(49.97),
        at,
    });
    state.price = Some(Reading {
        value: PricePerMwh(-3.5),
        at,
    });
    let decision = Decision {
        at,
        loads: vec![
            LoadTarget {
                units_on: 2,
                power: Watts(6500.0),
            },
            LoadTarget {
                units_on: 0,
                power: Watts(0.0),
            },
        ],
        reason: Reason::Surplus,
        limit: Some(Watts(7000.0)),
        held_on: 1,
        blocked_starts: 0,
        memory: PolicyMemory::default(),
    };
    let names = vec!["s19".to_string(), "cpu pool".to_string()];
    let mut all = points::signal_points(&state, at + Duration::from_millis(250));
    all.push(points::decision_point(&decision));
    // The rack wrote 6500 W 2 s ago and reads back 6480 W (matched 1 s later); the cpu
    // pool has written nothing and failed once.
    let mut rack = LoadStatus::new(Watts(7000.0), true);
    let before = |ms: u64| at - Duration::from_millis(ms);
    rack.commanded(Commanded {
        target: decision.loads[0],
        at: before(2000),
    });
    rack.observed(Reading {
        value: Watts(6480.0),
        at: before(1000),
    });
    let mut pool = LoadStatus::new(Watts(10.0), true);
    pool.failed(
        Operation::Set,
        ActuatorError::Transport("down".into()),
        before(500),
    );
    all.extend(points::load_points(&names, &decision, &[rack, pool]));
    let hashing = HashingReport {
        hasher: HasherStatus {
            kernel: "avx512",
            target: Watts(10.0),
            power: Watts(10.0),
            hashrate: HashRate(2.5e7),
            expected_hashrate: HashRate(2.5e7),
            active_threads: 1,
            duty: Duty::FULL,
            hashes: 123_456,
            shares: 4,
            hashing_threads: 1,
        },
        pool: Some(StratumCounts {
            connected: true,
            connections: 2,
            jobs: 9,
            submitted: 4,
            accepted: 3,
            rejected: 1,
            stale_dropped: 0,
            invalid_dropped: 0,
            malformed: 5,
            refusals: 1,
        }),
    };
    all.extend(points::hashing_points(&names, &[None, Some(hashing)], at));
    all.push(points::operator_command_point(
        &OperatorAction::CurtailTo(Watts(5000.0)),
        Some(Timestamp(T0 + 60_000)),
        true,
        at,
    ));
    // r11: an evidence record. The rack is shed at T0 on 49.97 Hz, its 0 W acknowledged
    // at +2 ms and confirmed by a read-back at +180 ms; sampled at +250 ms.
    let shed = Decision {
        reason: Reason::UnderFrequency,
        limit: Some(Watts(0.0)),
        loads: vec![LoadTarget::OFF],
        ..decision.clone()
    };
    let mut book = Evidence::new("s1");
    let mut rack = LoadStatus::new(Watts(7000.0), true);
    rack.commanded(Commanded {
        target: decision.loads[0],
        at: before(2000),
    });
    rack.observed(Reading {
        value: Watts(6480.0),
        at: before(1000),
    });
    fn view(s: &LoadStatus) -> Vec<LoadView<'_>> {
        let timings = UnitTiming::of_load("s19", s, Timestamp(T0))
            .into_iter()
            .collect();
        vec![LoadView {
            name: "s19",
            status: s,
            timings,
        }]
    }
    book.decided(&shed, &state, &view(&rack.clone()));
    rack.sending(LoadTarget::OFF, at + Duration::from_millis(1));
    rack.commanded(Commanded {
        target: LoadTarget::OFF,
        at: at + Duration::from_millis(2),
    });
    rack.observed(Reading {
        value: Watts(0.0),
        at: at + Duration::from_millis(180),
    });
    book.sample(at + Duration::from_millis(250), &view(&rack));
    let record = book
        .close(
            at + Duration::from_millis(300),
            Closure::Shutdown,
            &view(&rack),
        )
        .unwrap();
    all.push(points::response_event_point(&record));
    all.push(points::response_sample_point(
        &record.trigger,
        &record.samples[0],
    ));
    let n = all.len() as u64;

    let metrics = Metrics::new();
    let (tx, w) = writer(config(vm.port, buf.path()), metrics.clone()).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(w.run(shutdown.clone()));
    tx.send_all(all);
    wait_for("all points written", async || metrics.points_written() == n).await;

    let expect = [
        (r#"signal_value{quantity="pv_power"}"#, 1234.5),
        (r#"signal_value{quantity="grid_power"}"#, -800.0),
        (r#"signal_value{quantity="grid_frequency"}"#, 49.97),
        (r#"signal_value{quantity="price"}"#, -3.5),
        (r#"signal_age_ms{quantity="price"}"#, 250.0),
        (r#"decision_total_w{reason="surplus"}"#, 6500.0),
        (r#"decision_limit_w{reason="surplus"}"#, 7000.0),
        (r#"decision_held_on{reason="surplus"}"#, 1.0),
        (r#"load_target_w{load="s19"}"#, 6500.0),
        (r#"load_actual_w{load="s19"}"#, 6480.0),
        (r#"load_units_on{load="s19"}"#, 2.0),
        (r#"load_commanded_w{load="s19"}"#, 6500.0),
        (r#"load_readback_w{load="s19"}"#, 6480.0),
        (r#"load_readback_age_ms{load="s19"}"#, 1000.0),
        (r#"load_confirmed{load="s19"}"#, 1.0),
        (r#"load_confirm_latency_ms{load="s19"}"#, 1000.0),
        (r#"load_errors{load="s19"}"#, 0.0),
        (r#"load_confirmed{load="cpu pool"}"#, 0.0),
        (r#"load_errors{load="cpu pool"}"#, 1.0),
        (r#"load_last_error_ms{load="cpu pool"}"#, (T0 - 500) as f64),
        (r#"load_target_w{load="cpu pool"}"#, 0.0),
        (r#"hashing_hashrate_hs{load="cpu pool"}"#, 2.5e7),
        (r#"hashing_hashes{load="cpu pool"}"#, 123_456.0),
        (r#"hashing_shares_found{load="cpu pool"}"#, 4.0),
        (r#"hashing_pool_connected{load="cpu pool"}"#, 1.0),
        (r#"hashing_pool_accepted{load="cpu pool"}"#, 3.0),
        (r#"hashing_pool_rejected{load="cpu pool"}"#, 1.0),
        (r#"hashing_pool_malformed{load="cpu pool"}"#, 5.0),
        (r#"hashing_pool_refusals{load="cpu pool"}"#, 1.0),
        (
            r#"operator_command_power_w{action="curtail_to",outcome="accepted"}"#,
            5000.0,
        ),
        (
            r#"operator_command_until_ms{action="curtail_to",outcome="accepted"}"#,
            (T0 + 60_000) as f64,
        ),
        (
            r#"operator_command_accepted{action="curtail_to",outcome="accepted"}"#,
            1.0,
        ),
        (
            r#"response_event_frequency_hz{trigger="under_frequency",closed="shutdown"}"#,
            49.97,
        ),
        (r#"response_event_mining_before_w{commands="met"}"#, 6480.0),
        (r#"response_event_cap_w{drop="met"}"#, 0.0),
        (r#"response_event_last_acked_ms{commands="met"}"#, 2.0),
        (r#"response_event_last_confirmed_ms{drop="met"}"#, 180.0),
        (r#"response_event_units{trigger="under_frequency"}"#, 1.0),
        (
            r#"response_event_unit_errors{trigger="under_frequency"}"#,
            0.0,
        ),
        (r#"response_event_drop_met{trigger="under_frequency"}"#, 1.0),
        (
            r#"response_event_trigger_ms{trigger="under_frequency"}"#,
            T0 as f64,
        ),
    ];
    for (selector, value) in expect {
        let got = vm.export(selector).await;
        assert_eq!(got.len(), 1, "{selector}: {got:?}");
        assert_eq!((got[0].1, got[0].2), (value, T0), "{selector}");
    }
    // The sample is stamped when it was taken.
    for (selector, value) in [
        (r#"response_sample_mining_w{offset="250ms"}"#, 0.0),
        (r#"response_sample_oldest_age_ms{offset="250ms"}"#, 70.0),
        (
            r#"response_sample_offset_ms{trigger="under_frequency"}"#,
            250.0,
        ),
        (r#"response_sample_all_after_trigger{offset="250ms"}"#, 1.0),
    ] {
        let got = vm.export(selector).await;
        assert_eq!(got.len(), 1, "{selector}: {got:?}");
        assert_eq!((got[0].1, got[0].2), (value, T0 + 250), "{selector}");
    }
    assert!(vm
        .export(r#"load_actual_w{load="cpu pool"}"#)
        .await
        .is_empty());
    // Only cpu loads hash.
    assert!(vm.export(r#"hashing_hashes{load="s19"}"#).await.is_empty());
    assert_eq!(metrics.points_buffered(), 0);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// The server is down while points are made, then comes back: every point arrives, in
/// order, and the buffer empties, first within one run, then across a restart.
#[tokio::test]
async fn database_down_and_back() {
    let Some(bin) = victoria_metrics() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let buf = tempfile::tempdir().unwrap();
    let port = free_port();
    const N: usize = 40;
    let series = numbered(2 * N);

    // One run: down, points buffered, server starts, writer delivers on its own.
    let metrics = Metrics::new();
    let (tx, w) = writer(config(port, buf.path()), metrics.clone()).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(w.run(shutdown.clone()));
    tx.send_all(series[..N].iter().cloned());
    wait_for("N points buffered", async || {
        metrics.buffer_points() == N as u64
    })
    .await;
    assert_eq!(metrics.points_written(), 0);
    assert!(lp_files(buf.path()) > 0);
    let vm = Vm::start(&bin, data.path(), port).await;
    wait_for("buffer delivered", async || {
        metrics.points_written() == N as u64
    })
    .await;
    assert_eq!(metrics.buffer_points(), 0);
    assert_eq!(lp_files(buf.path()), 0, "segments deleted once written");
    vm.stop();

    // Across a restart: buffered by one writer, delivered by the next.
    tx.send_all(series[N..].iter().cloned());
    wait_for("second half buffered", async || {
        metrics.buffer_points() == N as u64
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    drop(tx);
    assert!(lp_files(buf.path()) > 0, "left on disk for the next run");

    let vm = Vm::start(&bin, data.path(), port).await;
    let metrics = Metrics::new();
    let (_tx, w) = writer(config(port, buf.path()), metrics.clone()).unwrap();
    assert_eq!(
        metrics.buffer_points(),
        N as u64,
        "the next run finds the buffer"
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(w.run(shutdown.clone()));
    wait_for("previous run's buffer delivered", async || {
        metrics.points_written() == N as u64
    })
    .await;
    assert_eq!(lp_files(buf.path()), 0);

    let got = vm.export(r#"signal_value{quantity="test"}"#).await;
    let values: Vec<f64> = got.iter().map(|s| s.1).collect();
    let want: Vec<f64> = (0..2 * N).map(|i| i as f64).collect();
    assert_eq!(values, want, "every point, none twice");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// A tiny buffer while the server is down: the oldest points go and are counted, the
/// newest survive and are delivered.
#[tokio::test]
async fn buffer_bound_drops_the_oldest() {
    let Some(bin) = victoria_metrics() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let buf = tempfile::tempdir().unwrap();
    let port = free_port();
    const N: usize = 60;
    let mut c = config(port, buf.path());
    c.buffer_max_bytes = 600; // ~12 of the ~50-byte lines
    c.batch_size = 1;
    let metrics = Metrics::new();
    let (tx, w) = writer(c, metrics.clone()).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(w.run(shutdown.clone()));
    tx.send_all(numbered(N));
    wait_for("all points buffered or dropped", async || {
        metrics.points_buffered() == N as u64
    })
    .await;
    let dropped = metrics.points_dropped(DropCause::BufferFull);
    let kept = metrics.buffer_points();
    assert!(dropped > 0, "the bound was exceeded");
    assert_eq!(dropped + kept, N as u64);

    let vm = Vm::start(&bin, data.path(), port).await;
    wait_for("kept points delivered", async || {
        metrics.points_written() == kept
    })
    .await;
    let got = vm.export(r#"signal_value{quantity="test"}"#).await;
    let values: Vec<f64> = got.iter().map(|s| s.1).collect();
    let want: Vec<f64> = (N as u64 - kept..N as u64).map(|i| i as f64).collect();
    assert_eq!(
        values, want,
        "the newest {kept} survive, the oldest {dropped} went"
    );
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

fn lp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "lp")
        })
        .count()
}

/// Parses one sample's value from an exposition, `None` when absent.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_endpoint_serves_counters_and_gauges() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = Metrics::new();
    let server = MetricsServer::from_listener(listener, metrics.clone());
    let port = server.local_addr().unwrap().port();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));

    let (status, before) = http(port, "GET", "/metrics", "").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        before.contains("# TYPE gridminer_decisions_total counter"),
        "{before}"
    );
    let surplus = r#"gridminer_decisions_total{reason="surplus"}"#;
    assert_eq!(sample(&before, surplus), Some(0.0));
    assert_eq!(
        sample(&before, r#"gridminer_power_watts{quantity="pv_power"}"#),
        None
    );

    let at = Timestamp(T0);
    let mut state = SiteState::new(&[]);
    state.pv = Some(Reading {
        value: Watts(1500.0),
        at,
    });
    state.frequency = Some(Reading {
        value: Hertz(50.01),
        at,
    });
    let d = Decision {
        at,
        loads: vec![LoadTarget {
            units_on: 1,
            power: Watts(3250.0),
        }],
        reason: Reason::Surplus,
        limit: None,
        held_on: 0,
        blocked_starts: 0,
        memory: PolicyMemory::default(),
    };
    metrics.state(&state);
    metrics.decision(&d);
    metrics.decision(&d);
    // Told 3250 W 4 s ago, reads back 3200 W since 1 s after, failed a read 500 ms ago.
    let mut s19 = LoadStatus::new(Watts(6500.0), true);
    s19.commanded(Commanded {
        target: d.loads[0],
        at: at - Duration::from_secs(4),
    });
    s19.observed(Reading {
        value: Watts(3200.0),
        at: at - Duration::from_secs(3),
    });
    let bad = ActuatorError::BadReading("abc".into());
    s19.failed(Operation::Read, bad, at - Duration::from_millis(500));
    metrics.loads(&["s19".to_string()], &d, &[s19]);
    metrics.observation("meter");
    metrics.reject("unparseable");
    metrics.reject("unparseable");

    let (_, after) = http(port, "GET", "/metrics", "").await.unwrap();
    for (series, value) in [
        (surplus, 2.0),
        (r#"gridminer_power_watts{quantity="pv_power"}"#, 1500.0),
        ("gridminer_grid_frequency_hertz", 50.01),
        ("gridminer_mining_target_watts", 3250.0),
        ("gridminer_mining_actual_watts", 3200.0),
        (r#"gridminer_load_target_watts{load="s19"}"#, 3250.0),
        (r#"gridminer_load_actual_watts{load="s19"}"#, 3200.0),
        (r#"gridminer_load_commanded_watts{load="s19"}"#, 3250.0),
        (r#"gridminer_load_readback_watts{load="s19"}"#, 3200.0),
        (r#"gridminer_load_readback_age_seconds{load="s19"}"#, 3.0),
        (r#"gridminer_load_confirmed{load="s19"}"#, 1.0),
        (
            r#"gridminer_load_confirmation_latency_seconds{load="s19"}"#,
            1.0,
        ),
        (r#"gridminer_load_errors_total{load="s19"}"#, 1.0),
        (
            r#"gridminer_load_last_error_timestamp_seconds{load="s19"}"#,
            (T0 - 500) as f64 / 1000.0,
        ),
        (r#"gridminer_observations_total{source="meter"}"#, 1.0),
        (
            r#"gridminer_rejected_messages_total{reason="unparseable"}"#,
            2.0,
        ),
        (
            r#"gridminer_telemetry_points_dropped_total{cause="buffer_full"}"#,
            0.0,
        ),
    ] {
        assert_eq!(sample(&after, series), Some(value), "{series} in\n{after}");
    }
    assert_eq!(
        sample(&after, r#"gridminer_decisions_total{reason="idle"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &after,
            r#"gridminer_power_watts{quantity="grid_frequency"}"#
        ),
        None
    );
    let _ = Quantity::ALL; // every quantity's gauge is named through Quantity::as_str

    assert_eq!(http(port, "GET", "/nothing", "").await.unwrap().0, 404);
    assert_eq!(http(port, "POST", "/metrics", "x").await.unwrap().0, 405);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
