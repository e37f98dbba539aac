//! `gridminer bench live`: the edge daemon's figures on loopback, each beside a baseline
//! measured in the same run.
//!
//! One process holds the embedded broker, the daemon (`runtime::start`, exactly as
//! `gridminer run` starts it) and plain MQTT clients that feed and watch it:
//! - **ingest**: signal messages published as fast as one client can, counted as the
//!   daemon accepts them; baseline: a bare subscriber on the same broker. Then a paced
//!   phase at the budget's rate, sampling the backlog (published minus accepted) to show
//!   whether lag grows.
//! - **signal to load**: a grid-frequency reading (an urgent signal: the daemon steps at
//!   once) flips the MQTT load's setpoint; timed from publishing the reading to a client
//!   receiving the new setpoint, so two broker hops are included. Baseline: the broker
//!   round trip alone (publish to a bare subscriber). Samples are `SPACING` apart, as
//!   frequency readings and commands come: the embedded broker (rumqttd) leaves Nagle's
//!   algorithm on, so a reply within ~40 ms of the previous message to the same client
//!   waits for that client's delayed ACK, which back-to-back samples would measure
//!   instead of the daemon.
//! - **curtail to pool stopped**: an HS256-signed curtail to 0 W, from publishing it to
//!   the embedded hashing pool's last worker idle; released again between samples.
//! - **idle**: a separate `gridminer run` process with the embedded broker, an MQTT
//!   load (the hashing pool excluded, as the budget says) and the dashboard (`[web]`),
//!   its resident memory and CPU time over a quiet window, read from `/proc`.
//! - **dashboard**: the bytes a browser transfers to open the page (the page, its files,
//!   the history and the first event, headers included), then the idle daemon's CPU over
//!   the same window with `DASHBOARDS` pages' event streams open, against the idle window
//!   with none (the baseline, same process).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde::Serialize;
use tokio::sync::mpsc;

use super::percentile_ms;
use crate::runtime::{self, Running};
use crate::signal::operator::sign_hs256;
use crate::units::seconds;

/// What `bench live` is asked to do.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Messages in the as-fast-as-possible ingest phase (and its baseline).
    pub messages: usize,
    /// Rate of the paced ingest phase, messages per second.
    pub paced_rate: f64,
    pub paced_seconds: f64,
    /// Samples of each latency.
    pub samples: usize,
    /// Length of the idle window.
    pub idle_seconds: f64,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            messages: 200_000,
            paced_rate: 50_000.0,
            paced_seconds: 4.0,
            samples: 100,
            idle_seconds: 10.0,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LiveBench {
    pub ingest_messages: u64,
    /// Signals accepted by the daemon per second, publisher flat out.
    pub ingest_msgs_per_s: f64,
    /// Baseline: a bare subscriber on the same broker, same publisher.
    pub baseline_msgs_per_s: f64,
    pub ingest_ratio_vs_baseline: f64,
    /// Messages published but never accepted in the flat-out phase (QoS 0 may drop).
    pub ingest_lost: u64,
    pub paced_rate: f64,
    /// Largest backlog (published - accepted) in the paced phase's first and last
    /// second, as a lag in ms at the paced rate: equal or lower at the end means the
    /// daemon keeps up.
    pub paced_lag_first_second_ms: f64,
    pub paced_lag_last_second_ms: f64,
    pub paced_accepted: u64,
    pub paced_published: u64,
    pub signal_to_load_p50_ms: f64,
    pub signal_to_load_p99_ms: f64,
    pub baseline_round_trip_p50_ms: f64,
    pub baseline_round_trip_p99_ms: f64,
    pub curtail_to_stop_p50_ms: f64,
    pub curtail_to_stop_p99_ms: f64,
    pub idle_rss_mb: f64,
    pub idle_cpu_percent: f64,
    pub idle_seconds: f64,
    /// Bytes a first page load transfers: `/`, its four files, `/api/history` and the
    /// first event, each with its response head.
    pub dashboard_first_load_bytes: u64,
    /// The state document's size in that first event.
    pub dashboard_state_bytes: u64,
    pub dashboard_clients: usize,
    /// The idle daemon's CPU with that many event streams open, over `idle_seconds`.
    pub dashboard_cpu_percent: f64,
    /// Minus the idle figure without them (`idle_cpu_percent`, the baseline).
    pub dashboard_extra_cpu_percent: f64,
    pub cpu: String,
    pub budget: LiveBudget,
}

#[derive(Debug, Serialize)]
pub struct LiveBudget {
    pub ingest_msgs_per_s: f64,
    pub signal_to_load_p99_ms: f64,
    pub curtail_to_stop_p99_ms: f64,
    pub idle_rss_mb: f64,
    pub idle_cpu_percent: f64,
    pub dashboard_first_load_bytes: u64,
    pub dashboard_extra_cpu_percent: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveBenchError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error("MQTT client: {0}")]
    Mqtt(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("reading /proc: {0}")]
    Proc(String),
    /// An option that is not a duration (negative, NaN, too long): refused before the
    /// daemon starts, where `Duration::from_secs_f64` would have panicked later.
    #[error("{0}")]
    Option(#[from] crate::units::UnitError),
}

const SITE: &str = "bench";
const SECRET: &str = "bench-shared-secret-0123456789abcdef-0123";
const WAIT: Duration = Duration::from_secs(20);
/// Dashboards open during the dashboard window.
pub const DASHBOARDS: usize = 50;
/// Between latency samples (see the module's notes on Nagle and delayed ACKs).
const SPACING: Duration = Duration::from_millis(100);

/// The embedded pool with one worker, 10 W at full speed, as a `[[loads]]` entry (more
/// keys of the load may follow it). The integration tests use it too.
pub const ONE_WORKER_POOL: &str = r#"
[[loads]]
kind = "cpu"
name = "cpu"
threads = 1
watts_per_core = "10 W"
hashrate_per_core = "30 MH/s"
"#;

/// The site `bench live` runs: every signal fresh for an hour, a frequency rule with no
/// hold (so each reading flips the decision), an MQTT load, optionally the hashing pool.
fn site_config(port: u16, hasher: bool, web: Option<u16>) -> String {
    let cpu = if hasher { ONE_WORKER_POOL } else { "" };
    let web = web.map_or(String::new(), |p| {
        format!("[web]\nlisten = \"127.0.0.1:{p}\"\n")
    });
    format!(
        r#"
site_id = "{SITE}"
tick = "1s"
hashprice = 50.0
policy = {{ mode = "economic", max_signal_age = "1h", frequency = {{ nominal_hz = 50.0, shed_below_hz = 49.8, absorb_above_hz = 50.2, hold = "0s" }} }}
operator_replay_cache = "replay.json"

[site]
pv = true
export_limit = "1 kW"
import_limit = "0 W"

[tariff]
import_adder_eur_mwh = 100.0
export = "day-ahead"

[mqtt]
broker = "embedded"
listen = "127.0.0.1:{port}"
{web}
[[signals]]
topic = "{SITE}/pv"
quantity = "pv_power"
[[signals]]
topic = "{SITE}/load"
quantity = "site_load"
[[signals]]
topic = "{SITE}/price"
quantity = "price"
[[signals]]
topic = "{SITE}/frequency"
quantity = "grid_frequency"

[[loads]]
kind = "mqtt"
topic = "{SITE}/miners/setpoint"
name = "miners"
count = 4
rated_power = "500 W"
hashrate = "20 TH/s"
{cpu}
[[operators]]
id = "bench-operator"
alg = "HS256"
secret = "{SECRET}"
"#
    )
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A scratch directory for the bench's configs, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("gridminer-bench-live-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
    fn write(&self, name: &str, body: &str) -> std::io::Result<PathBuf> {
        let p = self.0.join(name);
        std::fs::write(&p, body)?;
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A plain client: `client` publishes, the returned channel carries what it receives,
/// `count` counts it. Returns once the broker has acknowledged the connection.
async fn client(
    port: u16,
    id: &str,
    subscribe: &[&str],
) -> Result<
    (
        AsyncClient,
        mpsc::UnboundedReceiver<(String, Instant)>,
        Arc<AtomicU64>,
    ),
    LiveBenchError,
> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(opts, 10_000);
    events.network_options = crate::mqtt::network_options();
    for t in subscribe {
        client
            .subscribe(*t, QoS::AtMostOnce)
            .await
            .map_err(|e| LiveBenchError::Mqtt(e.to_string()))?;
    }
    wait_connected(&mut events, subscribe.len()).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicU64::new(0));
    let n = count.clone();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    n.fetch_add(1, Ordering::Relaxed);
                    let body = String::from_utf8_lossy(&p.payload).into_owned();
                    if tx.send((body, Instant::now())).is_err() {
                        // Nobody listens for bodies (a counting client): keep counting.
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    Ok((client, rx, count))
}

async fn wait_connected(events: &mut EventLoop, subacks: usize) -> Result<(), LiveBenchError> {
    let deadline = Instant::now() + WAIT;
    let (mut connected, mut acked) = (false, 0);
    while !(connected && acked >= subacks) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.poll()).await {
            Err(_) => return Err(LiveBenchError::Timeout("MQTT connection".into())),
            Ok(Err(e)) => return Err(LiveBenchError::Mqtt(e.to_string())),
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => connected = true,
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
        }
    }
    Ok(())
}

/// Polls `done` every millisecond until it holds or `deadline` passes.
async fn until(
    what: &str,
    deadline: Duration,
    done: impl Fn() -> bool,
) -> Result<(), LiveBenchError> {
    let end = Instant::now() + deadline;
    while !done() {
        if Instant::now() > end {
            return Err(LiveBenchError::Timeout(what.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Publishes `n` QoS 0 messages to `topic` as fast as the client takes them.
async fn flood(client: &AsyncClient, topic: &str, n: usize) -> Result<(), LiveBenchError> {
    for i in 0..n {
        let body = format!("{}", 1000 + (i % 1000));
        client
            .publish(topic, QoS::AtMostOnce, false, body)
            .await
            .map_err(|e| LiveBenchError::Mqtt(e.to_string()))?;
    }
    Ok(())
}

/// Waits until `count` reaches `target` or stops moving for half a second; returns the
/// count and when it last moved.
async fn drained(count: &AtomicU64, target: u64) -> (u64, Instant) {
    let (mut last, mut moved) = (count.load(Ordering::Relaxed), Instant::now());
    loop {
        let c = count.load(Ordering::Relaxed);
        if c != last {
            last = c;
            moved = Instant::now();
        }
        if c >= target || moved.elapsed() > Duration::from_millis(500) {
            return (c, moved);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn command(act: &str, jti: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::json!({
        "iss": "bench-operator", "aud": SITE, "iat": now, "exp": now + 30, "jti": jti, "act": act,
    });
    if act == "curtail" {
        claims["limit_w"] = 0.into();
    }
    sign_hs256(SECRET.as_bytes(), &claims)
}

/// Runs every phase; takes about `idle_seconds` plus 15 s.
pub async fn live(opts: &LiveOptions) -> Result<LiveBench, LiveBenchError> {
    let idle_window = seconds(
        opts.idle_seconds,
        &format!("--idle-seconds {}", opts.idle_seconds),
    )?;
    seconds(
        opts.paced_seconds,
        &format!("--paced-seconds {}", opts.paced_seconds),
    )?;
    let scratch = Scratch::new()?;
    let port = free_port()?;
    let path = scratch.write("site.toml", &site_config(port, true, None))?;
    let running = runtime::start(crate::runtime::config::load(&path)?).await?;
    let result = phases(opts, &running, port).await;
    running.stop(Duration::from_secs(10)).await?;
    let mut bench = result?;
    let idle = idle(&scratch, idle_window)?;
    bench.idle_rss_mb = idle.rss_mb;
    bench.idle_cpu_percent = idle.cpu_percent;
    bench.dashboard_first_load_bytes = idle.first_load_bytes;
    bench.dashboard_state_bytes = idle.state_bytes;
    bench.dashboard_cpu_percent = idle.dashboards_cpu_percent;
    bench.dashboard_extra_cpu_percent = idle.dashboards_cpu_percent - idle.cpu_percent;
    Ok(bench)
}

async fn phases(
    opts: &LiveOptions,
    running: &Running,
    port: u16,
) -> Result<LiveBench, LiveBenchError> {
    let accepted = || running.counters.signals.accepted.load(Ordering::Relaxed);
    let (publisher, _, _) = client(port, "bench-publisher", &[]).await?;
    let (_raw, _raw_bodies, raw_count) = client(port, "bench-baseline", &["bench/raw"]).await?;

    // Flat out: baseline first, then the daemon.
    let n = opts.messages;
    let t = Instant::now();
    flood(&publisher, "bench/raw", n).await?;
    let (got, at) = drained(&raw_count, n as u64).await;
    let baseline = got as f64 / at.duration_since(t).as_secs_f64();

    let before = accepted();
    let t = Instant::now();
    flood(&publisher, &format!("{SITE}/pv"), n).await?;
    let count = &running.counters.signals.accepted;
    let (got, at) = drained(count, before + n as u64).await;
    let ingest_messages = got - before;
    let ingest = ingest_messages as f64 / at.duration_since(t).as_secs_f64();

    // Paced at the budget's rate, one burst a millisecond; backlog sampled every 10 ms.
    let per_ms = (opts.paced_rate / 1000.0).round().max(1.0) as usize;
    let total_ms = (opts.paced_seconds * 1000.0) as usize;
    let before = accepted();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut first, mut last) = (0u64, 0u64);
    let mut published = 0u64;
    let topic = format!("{SITE}/pv");
    for ms in 0..total_ms {
        tick.tick().await;
        flood(&publisher, &topic, per_ms).await?;
        published += per_ms as u64;
        if ms % 10 == 0 {
            let backlog = published.saturating_sub(accepted() - before);
            if ms < 1000 {
                first = first.max(backlog);
            } else if ms + 1000 >= total_ms {
                last = last.max(backlog);
            }
        }
    }
    let (paced_accepted, _) = drained(count, before + published).await;
    let lag_ms = |backlog: u64| backlog as f64 / opts.paced_rate * 1e3;

    // The site as the latency phases need it: surplus to mine, a price.
    for (topic, body) in [
        ("pv", "5000"),
        ("load", "500"),
        ("price", "40"),
        ("frequency", "50.0"),
    ] {
        publisher
            .publish(format!("{SITE}/{topic}"), QoS::AtLeastOnce, false, body)
            .await
            .map_err(|e| LiveBenchError::Mqtt(e.to_string()))?;
    }
    let mut snaps = running.snapshots.clone();
    let deadline = Instant::now() + WAIT;
    while snaps.borrow_and_update().decision.total().0 <= 0.0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, snaps.changed()).await.is_err() {
            return Err(LiveBenchError::Timeout("a decision to mine".into()));
        }
    }

    // Broker round trip alone, then frequency reading -> new setpoint.
    let (_echo, mut echo_rx, _) = client(port, "bench-echo", &["bench/echo"]).await?;
    let mut spacing = tokio::time::interval(SPACING);
    spacing.tick().await; // the first tick is immediate: start a full spacing later
    let mut round_trips = Vec::with_capacity(opts.samples);
    for i in 0..opts.samples {
        spacing.tick().await;
        let t = Instant::now();
        publisher
            .publish("bench/echo", QoS::AtMostOnce, false, i.to_string())
            .await
            .map_err(|e| LiveBenchError::Mqtt(e.to_string()))?;
        let want = i.to_string();
        round_trips.push(receive(&mut echo_rx, |b| b == want).await? - t);
    }
    round_trips.sort();

    let setpoint = format!("{SITE}/miners/setpoint");
    let (_watch, mut setpoints, _) = client(port, "bench-setpoints", &[&setpoint]).await?;
    let mut to_load = Vec::with_capacity(opts.samples);
    for i in 0..opts.samples {
        spacing.tick().await;
        let shed = i % 2 == 0;
        let hz = if shed { "49.7" } else { "50.0" };
        let t = Instant::now();
        publisher
            .publish(format!("{SITE}/frequency"), QoS::AtMostOnce, false, hz)
            .await
            .map_err(|e| LiveBenchError::Mqtt(e.to_string()))?;
        let at = receive(&mut setpoints, |b| {
            let off = serde_json::from_str::<serde_json::Value>(b)
                .ok()
                .and_then(|v| v["power_w"].as_f64())
                .is_some_and(|w| w == 0.0);
            off == shed
        })
        .await?;
        to_load.push(at - t);
    }
    to_load.sort();

    // Curtail to 0 W -> the hashing pool's last worker idle; release between samples.
    let cmd = format!("gridminer/{SITE}/cmd");
    let pool = running
        .hashers
        .first()
        .ok_or_else(|| LiveBenchError::Timeout("a hashing pool in the bench site".into()))?;
    let mut to_stop = Vec::with_capacity(opts.samples);
    for i in 0..opts.samples {
        let release = command("release", &format!("release-{i}-{}", std::process::id()));
        publisher
            .publish(&cmd, QoS::AtLeastOnce, false, release)
            .await
            .map_err(|e| LiveBenchError::Mqtt(e.to_string()))?;
        until("the pool to hash", WAIT, || pool.hashing_threads() > 0).await?;
        spacing.tick().await;
        let curtail = command("curtail", &format!("curtail-{i}-{}", std::process::id()));
        let t = Instant::now();
        publisher
            .publish(&cmd, QoS::AtLeastOnce, false, curtail)
            .await
            .map_err(|e| LiveBenchError::Mqtt(e.to_string()))?;
        until("the pool to stop", WAIT, || pool.hashing_threads() == 0).await?;
        to_stop.push(t.elapsed());
    }
    to_stop.sort();
    let release = command("release", &format!("release-end-{}", std::process::id()));
    let _ = publisher
        .publish(&cmd, QoS::AtLeastOnce, false, release)
        .await;

    Ok(LiveBench {
        ingest_messages,
        ingest_msgs_per_s: ingest,
        baseline_msgs_per_s: baseline,
        ingest_ratio_vs_baseline: ingest / baseline,
        ingest_lost: n as u64 - ingest_messages,
        paced_rate: opts.paced_rate,
        paced_lag_first_second_ms: lag_ms(first),
        paced_lag_last_second_ms: lag_ms(last),
        paced_accepted: paced_accepted - before,
        paced_published: published,
        signal_to_load_p50_ms: percentile_ms(&to_load, 0.5),
        signal_to_load_p99_ms: percentile_ms(&to_load, 0.99),
        baseline_round_trip_p50_ms: percentile_ms(&round_trips, 0.5),
        baseline_round_trip_p99_ms: percentile_ms(&round_trips, 0.99),
        curtail_to_stop_p50_ms: percentile_ms(&to_stop, 0.5),
        curtail_to_stop_p99_ms: percentile_ms(&to_stop, 0.99),
        idle_rss_mb: f64::NAN,
        idle_cpu_percent: f64::NAN,
        idle_seconds: opts.idle_seconds,
        dashboard_first_load_bytes: 0,
        dashboard_state_bytes: 0,
        dashboard_clients: DASHBOARDS,
        dashboard_cpu_percent: f64::NAN,
        dashboard_extra_cpu_percent: f64::NAN,
        cpu: super::fleet::cpu_model(),
        budget: LiveBudget {
            ingest_msgs_per_s: 50_000.0,
            signal_to_load_p99_ms: 5.0,
            curtail_to_stop_p99_ms: 20.0,
            idle_rss_mb: 30.0,
            idle_cpu_percent: 1.0,
            dashboard_first_load_bytes: 200_000,
            dashboard_extra_cpu_percent: 2.0,
        },
    })
}

/// The arrival time of the next message whose body passes `want`.
async fn receive(
    rx: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    want: impl Fn(&str) -> bool,
) -> Result<Instant, LiveBenchError> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((body, at))) if want(&body) => return Ok(at),
            Ok(Some(_)) => {}
            _ => return Err(LiveBenchError::Timeout("an MQTT message".into())),
        }
    }
}

/// What the idle daemon measured.
struct Idle {
    rss_mb: f64,
    cpu_percent: f64,
    first_load_bytes: u64,
    state_bytes: u64,
    dashboards_cpu_percent: f64,
}

/// A `gridminer run` of its own on the bench site without the hashing pool, with the
/// dashboard: resident memory and CPU share over `window` once it is up, the first page
/// load's bytes, then its CPU share over another `window` with [`DASHBOARDS`] event
/// streams open.
fn idle(scratch: &Scratch, window: Duration) -> Result<Idle, LiveBenchError> {
    let port = free_port()?;
    let web_port = free_port()?;
    let path = scratch.write("idle.toml", &site_config(port, false, Some(web_port)))?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["run", "--config"])
        .arg(&path)
        .current_dir(&scratch.0)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let web = std::net::SocketAddr::from(([127, 0, 0, 1], web_port));
    let result = (|| {
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            || std::net::TcpStream::connect(web).is_err()
        {
            if Instant::now() > deadline {
                return Err(LiveBenchError::Timeout("the idle daemon's broker".into()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Let start-up (discovery messages, first steps) pass before the window.
        std::thread::sleep(Duration::from_secs(2));
        let pid = child.id();
        let cpu = |window: Duration| -> Result<f64, LiveBenchError> {
            let a = cpu_ticks(pid)?;
            let t = Instant::now();
            std::thread::sleep(window);
            let b = cpu_ticks(pid)?;
            Ok((b - a) as f64 / CLOCK_TICKS_PER_S / t.elapsed().as_secs_f64() * 100.0)
        };
        let idle_cpu = cpu(window)?;
        let rss = super::proc_memory_mb(&pid.to_string(), "VmRSS:")
            .ok_or_else(|| LiveBenchError::Proc(format!("VmRSS of process {pid}")))?;
        let (first_load_bytes, state_bytes) = first_load(web)?;
        let streams = Dashboards::open(web, DASHBOARDS)?;
        streams.until_each_has_a_frame()?;
        let dashboards_cpu = cpu(window)?;
        drop(streams);
        Ok(Idle {
            rss_mb: rss,
            cpu_percent: idle_cpu,
            first_load_bytes,
            state_bytes,
            dashboards_cpu_percent: dashboards_cpu,
        })
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// One HTTP/1.1 GET with `Connection: close`: the whole response, head and body.
fn get(web: std::net::SocketAddr, path: &str) -> Result<Vec<u8>, LiveBenchError> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(web)?;
    s.set_read_timeout(Some(WAIT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    if !out.starts_with(b"HTTP/1.1 200") {
        return Err(LiveBenchError::Proc(format!("GET {path}: not 200 OK")));
    }
    Ok(out)
}

/// The bytes of a first page load (what `index.html` names, the history, the first
/// event) and the state document's share of that event.
fn first_load(web: std::net::SocketAddr) -> Result<(u64, u64), LiveBenchError> {
    let mut total = 0;
    for path in [
        "/",
        "/assets/uPlot.min.css",
        "/assets/dashboard.css",
        "/assets/uPlot.iife.min.js",
        "/assets/dashboard.js",
        "/api/history",
    ] {
        total += get(web, path)?.len() as u64;
    }
    let mut stream = EventStream::open(web)?;
    let frame = stream.frame()?;
    total += stream.read as u64;
    let state = serde_json::from_str::<serde_json::Value>(&frame)
        .ok()
        .map_or(0, |v| v["state"].to_string().len() as u64);
    Ok((total, state))
}

/// One page's event stream, read by hand.
struct EventStream {
    socket: std::net::TcpStream,
    buf: Vec<u8>,
    read: usize,
}

impl EventStream {
    fn open(web: std::net::SocketAddr) -> Result<EventStream, LiveBenchError> {
        use std::io::Write;
        let mut socket = std::net::TcpStream::connect(web)?;
        socket.set_read_timeout(Some(WAIT))?;
        write!(
            socket,
            "GET /api/events HTTP/1.1\r\nHost: {web}\r\nAccept: text/event-stream\r\n\r\n"
        )?;
        Ok(EventStream {
            socket,
            buf: Vec::new(),
            read: 0,
        })
    }

    /// The data of the next `frame` event.
    fn frame(&mut self) -> Result<String, LiveBenchError> {
        use std::io::Read;
        let mut chunk = [0u8; 65536];
        loop {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            if let Some(start) = text.find("event: frame\n") {
                if let Some(len) = text[start..].find("\n\n") {
                    let data: String = text[start..start + len]
                        .lines()
                        .filter_map(|l| l.strip_prefix("data: "))
                        .collect();
                    self.buf.drain(..(start + len + 2).min(self.buf.len()));
                    return Ok(data);
                }
            }
            let n = self.socket.read(&mut chunk)?;
            if n == 0 {
                return Err(LiveBenchError::Timeout(
                    "an event from the dashboard".into(),
                ));
            }
            self.read += n;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// `n` pages' event streams, each read (and dropped) by a thread of its own as a
/// browser would, until the set is dropped.
struct Dashboards {
    stop: Arc<std::sync::atomic::AtomicBool>,
    frames: Arc<AtomicU64>,
    n: usize,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Dashboards {
    fn open(web: std::net::SocketAddr, n: usize) -> Result<Dashboards, LiveBenchError> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::with_capacity(n);
        for _ in 0..n {
            let mut stream = EventStream::open(web)?;
            // Short reads, so a thread sees `stop` soon.
            stream
                .socket
                .set_read_timeout(Some(Duration::from_millis(200)))?;
            let (stop, frames) = (stop.clone(), frames.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match stream.frame() {
                        Ok(_) => {
                            frames.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(LiveBenchError::Io(e))
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
            }));
        }
        Ok(Dashboards {
            stop,
            frames,
            n,
            threads,
        })
    }

    /// Waits until as many frames arrived as there are streams, twice over (each has
    /// its first and is following), with a deadline.
    fn until_each_has_a_frame(&self) -> Result<(), LiveBenchError> {
        let deadline = Instant::now() + WAIT;
        while self.frames.load(Ordering::Relaxed) < 2 * self.n as u64 {
            if Instant::now() > deadline {
                return Err(LiveBenchError::Timeout("a frame on every dashboard".into()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Dashboards {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Linux's USER_HZ, the unit of /proc/PID/stat's CPU times, is 100 on every mainstream
/// architecture.
const CLOCK_TICKS_PER_S: f64 = 100.0;

fn cpu_ticks(pid: u32) -> Result<u64, LiveBenchError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        f.get(i - 3)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(field(14) + field(15))
}
