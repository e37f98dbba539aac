//! `gridminer demo`: a whole site in one process, nothing to install or configure.
//!
//! It starts the peers a real site has, each speaking its real protocol on loopback:
//! a PV inverter and a grid meter served as SunSpec devices over Modbus TCP
//! ([`crate::emulator::sunspec`]), replaying a week of German data (June 2018, shipped in
//! `data/demo-de-2018-06.csv`, from 2018-06-20 06:00 UTC) at `--speed`; the simulated ASIC fleet
//! ([`crate::emulator::Fleet`], Whatsminer API v2 on port 4028 of its own loopback
//! addresses); a grid operator that signs Ed25519 JWS commands (a curtail at 11:00, a
//! release at 14:00 of every demo day, heartbeats) and sends them over MQTT; and the
//! day-ahead price over MQTT. Then it writes a site config for them, loads it through the
//! same loader `gridminer run --config` uses and starts the daemon with it, so the
//! daemon is exactly the one a site runs: it discovers the miners with asic-rs, polls the
//! SunSpec devices, verifies the operator's signatures and acknowledges on `cmd/ack`.
//! `--print-config` shows that config.
//!
//! Time: the data and the operator's schedule run in demo time (`--speed 60`: a minute
//! of data per second); the daemon and the devices' dynamics run in real time, with the
//! miners' wake, ramp and stop, and the driver's poll and deadlines, scaled down by the
//! speed (with floors) so a miner still wakes in about a demo minute.
//!
//! The meter closes the loop: grid power = site load + what the emulated miners draw
//! (and the CPU pool, as the daemon reports it) - PV, so the daemon sees its own mining
//! on the meter as it would at a site.
//!
//! Ctrl-C (or SIGTERM, or the end of `--duration`) stops it in order: the demo's feeds,
//! then the daemon (its loads to the safe state), then it waits until every emulated
//! miner has stopped hashing, says so, and stops the devices. Exit 0.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::emulator::sunspec::{DeviceKind, Measurement, SunSpecDevice};
use crate::emulator::{self, Dynamics, Fleet, FleetOptions};
use crate::runtime::Snapshot;
use crate::signal::operator::sign_eddsa;
use crate::units::{format_duration, Hertz, WattHours, Watts};

/// The demo's site id: topics are `gridminer/demo/...`.
pub const SITE: &str = "demo";
/// The simulated grid operator's `iss`.
const OPERATOR: &str = "demo-tso";
/// Where the price goes, and what the daemon subscribes to.
const PRICE_TOPIC: &str = "demo/price";
/// Where the day-ahead schedule goes: the next 24 demo hours' prices, each hour at the
/// real time the demo reaches it, sent at every demo hour (a rolling day, where a real
/// auction publishes the next day once, by 12:00 CET).
const SCHEDULE_TOPIC: &str = "demo/price_schedule";
/// Hours the schedule covers.
const SCHEDULE_HOURS: u64 = 24;
/// A week of German data, 15 minutes a row: see data/README.md.
const DATA: &str = include_str!("../../data/demo-de-2018-06.csv");
/// German installed solar at the start of 2018 (MW): the national series is scaled to
/// the demo's PV by this, as the simulator does (data/README.md).
const SOLAR_REFERENCE_MW: f64 = 42_804.0;
/// The demo starts at dawn of a sunny day, 2018-06-20 06:00 UTC, so mining begins
/// within minutes at the default speed; a day from there still has its night.
const START_OF_DAY: Duration = Duration::from_secs(6 * 3600);
/// The row of that start: the file begins on 2018-06-18 00:00.
const FIRST_ROW: usize = 2 * 96 + (START_OF_DAY.as_secs() / ROW.as_secs()) as usize;
/// Every miner is this model (Whatsminer M30S+, 3400 W, 100 TH/s, limits 1800-3400 W).
const MODEL: &str = "M30S+";
/// The operator's daily schedule, demo time of day.
const CURTAIL_AT: Duration = Duration::from_secs(11 * 3600);
const RELEASE_AT: Duration = Duration::from_secs(14 * 3600);
const DAY: Duration = Duration::from_secs(86_400);
/// How often the operator says it is there, in demo time (see [`Timing`] for the floor).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(15 * 60);

/// `gridminer demo`'s options.
#[derive(Debug, Clone)]
pub struct DemoArgs {
    /// Demo seconds per real second (60: a minute of data per second).
    pub speed: f64,
    /// The dashboard's address (port 0: a free one, printed).
    pub listen: SocketAddr,
    pub miners: usize,
    /// Stop by itself after this much demo time.
    pub duration: Option<Duration>,
    /// The first miner's loopback address.
    pub first: Ipv4Addr,
    /// Print the site config the daemon would get, and exit.
    pub print_config: bool,
}

/// One row of the shipped data.
#[derive(Debug, Clone, Copy)]
struct Row {
    solar_mw: f64,
    generation_mw: f64,
    price: f64,
}

/// The demo's data: rows 15 minutes apart, looped.
struct Series {
    rows: Vec<Row>,
    mean_generation_mw: f64,
    /// The first row's time, ms since the epoch.
    start_ms: i64,
}

const ROW: Duration = Duration::from_secs(15 * 60);

impl Series {
    fn parse(text: &str) -> anyhow::Result<Series> {
        let mut rows = Vec::new();
        let mut start_ms = None;
        for (i, line) in text.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let [t, solar, gen, price] = f[..] else {
                bail!("demo data line {}: expected 4 fields: {line:?}", i + 1);
            };
            let num = |s: &str| {
                s.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .with_context(|| format!("demo data line {}: {s:?} is not a number", i + 1))
            };
            if start_ms.is_none() {
                start_ms = Some(
                    crate::clock::Timestamp::parse(t)
                        .map_err(|e| anyhow::anyhow!("demo data line {}: {e}", i + 1))?
                        .0,
                );
            }
            rows.push(Row {
                solar_mw: num(solar)?,
                generation_mw: num(gen)?,
                price: num(price)?,
            });
        }
        let Some(start_ms) = start_ms else {
            bail!("the demo data has no rows");
        };
        let mean_generation_mw =
            rows.iter().map(|r| r.generation_mw).sum::<f64>() / rows.len() as f64;
        Ok(Series {
            rows,
            mean_generation_mw,
            start_ms,
        })
    }

    /// The data `t` after the demo's start, interpolated between rows (the price held
    /// for its hour, as the file holds it per row), looping over the week.
    fn at(&self, t: Duration) -> (Row, crate::clock::Timestamp) {
        let n = self.rows.len();
        let pos = t.as_secs_f64() / ROW.as_secs_f64() + FIRST_ROW as f64;
        let i = pos.floor() as usize;
        let frac = pos - pos.floor();
        let (a, b) = (self.rows[i % n], self.rows[(i + 1) % n]);
        let lerp = |x: f64, y: f64| x + (y - x) * frac;
        let row = Row {
            solar_mw: lerp(a.solar_mw, b.solar_mw),
            generation_mw: lerp(a.generation_mw, b.generation_mw),
            price: a.price,
        };
        let data_ms = (pos % n as f64 * ROW.as_millis() as f64) as i64;
        (row, crate::clock::Timestamp(self.start_ms + data_ms))
    }
}

/// The demo site's size, from its fleet.
#[derive(Debug, Clone, Copy)]
struct Sizing {
    fleet_rated: Watts,
    pv_capacity: Watts,
    /// The site's load at the week's mean national generation.
    base_load: Watts,
    export_limit: Watts,
    import_limit: Watts,
    /// The grid curtails mining to this.
    curtail_to: Watts,
}

impl Sizing {
    fn new(miners: usize, rated: Watts) -> Sizing {
        let fleet = Watts(rated.0 * miners as f64);
        // June's national peak is about 55 % of installed solar: 2.5x the fleet's rating
        // gives a midday surplus above what the fleet can take, none at night.
        let pv = Watts(fleet.0 * 2.5);
        Sizing {
            fleet_rated: fleet,
            pv_capacity: pv,
            base_load: Watts((fleet.0 * 0.15).max(500.0)),
            export_limit: Watts(fleet.0 * 0.25),
            import_limit: Watts(fleet.0 * 1.5),
            curtail_to: Watts((fleet.0 * 0.25).round()),
        }
    }
}

/// Real-time durations, from the demo's speed: what takes `d` of demo time takes
/// `d / speed`, never less than `floor` (the daemon's tick, the driver's poll and the
/// emulator's steps cannot usefully go faster on a small machine).
#[derive(Debug, Clone, Copy)]
struct Timing {
    speed: f64,
}

impl Timing {
    fn real(self, demo: Duration, floor: Duration, ceiling: Duration) -> Duration {
        Duration::from_secs_f64(demo.as_secs_f64() / self.speed).clamp(floor, ceiling)
    }
    /// For the config: whole seconds or milliseconds, the forms every duration key reads
    /// (`format_duration` writes `6m40s`, which they do not).
    fn ms(d: Duration) -> String {
        let ms = d.as_millis();
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }
    fn tick(self) -> Duration {
        self.real(
            Duration::from_secs(60),
            Duration::from_millis(200),
            Duration::from_secs(1),
        )
    }
    fn modbus_poll(self) -> Duration {
        self.real(
            Duration::from_secs(60),
            Duration::from_millis(250),
            Duration::from_secs(1),
        )
    }
    fn miner_poll(self) -> Duration {
        self.real(
            Duration::from_secs(10),
            Duration::from_millis(500),
            Duration::from_secs(10),
        )
    }
    fn heartbeat(self) -> Duration {
        self.real(
            HEARTBEAT_EVERY,
            Duration::from_secs(1),
            Duration::from_secs(15),
        )
    }
    /// The replay's step: how often the devices and the price are updated.
    fn replay_step(self) -> Duration {
        self.real(
            Duration::from_secs(60),
            Duration::from_millis(100),
            Duration::from_secs(1),
        )
    }
    fn dynamics(self) -> Dynamics {
        let d = Dynamics::default();
        let f = |x: Duration| self.real(x, Duration::from_millis(20), x);
        Dynamics {
            wake: f(d.wake),
            ramp: f(d.ramp),
            stop: f(d.stop),
            step_every: f(d.step_every),
            ..d
        }
    }
}

/// Where the demo's peers are, as the site config names them.
struct Peers<'a> {
    mqtt_port: u16,
    web: SocketAddr,
    inverter: SocketAddr,
    meter: SocketAddr,
    miners: &'a [Ipv4Addr],
    /// The operator's Ed25519 public key, base64 of its 32 bytes.
    public_key: &'a str,
}

/// The site config the daemon runs: what a site with these devices would write.
fn site_config(s: &Sizing, t: Timing, peers: &Peers) -> String {
    let Peers {
        mqtt_port,
        web,
        inverter,
        meter,
        miners,
        public_key,
    } = *peers;
    let dynamics = t.dynamics();
    let poll = t.miner_poll();
    let stop = dynamics.stop + poll * 2;
    let wake = dynamics.wake + dynamics.ramp + poll * 2;
    let at_least = |d: Duration, floor: u64| Timing::ms(d.max(Duration::from_secs(floor)));
    let miners: Vec<String> = miners.iter().map(|a| format!("\"{a}\"")).collect();
    // The meter sees a miner's draw at once, the driver only at its next read-back: a
    // miner kept on (and off) for a few polls rides that lag out instead of the
    // policy reading its own draw as site load and stopping it (floors on min_on/min_off).
    let modbus_poll = t.modbus_poll();
    let heartbeat = t.heartbeat();
    format!(
        r#"# Written by `gridminer demo`: a site whose devices the demo serves on loopback.
site_id = "{SITE}"
tick = "{tick}"
hashprice = 60.0                      # EUR per PH/s per day: an M30S+ earns about 73 EUR/MWh
policy = {{ mode = "surplus-only", max_signal_age = "15s" }}
operator_replay_cache = "operator-replay.json"

[site]
pv = true
pv_capacity = "{pv} W"
export_limit = "{export} W"
import_limit = "{import} W"
connection_rating = "{rating} W"

[tariff]
import_adder_eur_mwh = 100.0
export = "day-ahead"

[mqtt]
broker = "embedded"
listen = "127.0.0.1:{mqtt_port}"

[web]
listen = "{web}"

[[signals]]
topic = "{PRICE_TOPIC}"
quantity = "price"
unit = "EUR/MWh"
max_age = "15s"

[[signals]]
topic = "{SCHEDULE_TOPIC}"
quantity = "price_schedule"
unit = "EUR/MWh"

[[modbus]]
name = "inverter"
kind = "sunspec"
role = "pv"
host = "{inv_host}"
port = {inv_port}
poll = "{mpoll}"
timeout = "{mpoll}"

[[modbus]]
name = "meter"
kind = "sunspec"
role = "grid-meter"
host = "{met_host}"
port = {met_port}
poll = "{mpoll}"
timeout = "{mpoll}"

[[operators]]
id = "{OPERATOR}"
alg = "EdDSA"
public_key = "{public_key}"             # the demo's operator made this key at start
max_lifetime = "60s"

[operator_heartbeat]
timeout = "{hb_timeout}"
failsafe_limit = "0 W"

[[loads]]
kind = "asic-fleet"
name = "fleet"
miners = [{miners}]
poll = "{poll}"
pause_within = "{pause_within}"
resume_within = "{resume_within}"
limit_within = "{limit_within}"
attempts = 3

[loads.models."M30SPlusVE40"]
min_power = "1800 W"
min_on = "{min_on}"
min_off = "{min_off}"

[[loads]]
kind = "cpu"                          # the embedded SHA-256d pool: one thread
name = "cpu"
threads = 1
watts_per_core = "10 W"
hashrate_per_core = "30 MH/s"
"#,
        tick = Timing::ms(t.tick()),
        pv = s.pv_capacity.0.round(),
        export = s.export_limit.0.round(),
        import = s.import_limit.0.round(),
        rating = s.pv_capacity.0.max(s.import_limit.0).round(),
        inv_host = inverter.ip(),
        inv_port = inverter.port(),
        met_host = meter.ip(),
        met_port = meter.port(),
        mpoll = Timing::ms(modbus_poll),
        hb_timeout = Timing::ms((heartbeat * 4).max(Duration::from_secs(20))),
        miners = miners.join(", "),
        poll = Timing::ms(poll),
        pause_within = at_least(stop * 2, 3),
        resume_within = at_least(wake * 2, 5),
        limit_within = at_least(wake * 2, 3),
        min_on = Timing::ms(t.real(
            Duration::from_secs(15 * 60),
            poll * 4,
            Duration::from_secs(900).max(poll * 4)
        )),
        min_off = Timing::ms(t.real(
            Duration::from_secs(5 * 60),
            poll * 2,
            Duration::from_secs(300).max(poll * 2)
        )),
    )
}

/// A free loopback port: bound and released, for listeners the daemon opens itself.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A fresh Ed25519 key from the OS's random source.
fn operator_key() -> anyhow::Result<ed25519_dalek::SigningKey> {
    use std::io::Read as _;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("reading /dev/urandom for the demo operator's key")?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// The demo's config directory (config, operator record, events file), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("gridminer-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(%error, dir = %self.0.display(), "Could not remove the demo's directory");
        }
    }
}

/// Starts the fleet at `first`, moving on a /24 at a time while an address is taken
/// (another demo, a test's fleet).
async fn start_fleet(mut opts: FleetOptions) -> anyhow::Result<Fleet> {
    for _ in 0..16 {
        match Fleet::start(opts.clone()).await {
            Ok(f) => return Ok(f),
            Err(e) if e.is_addr_in_use() => {
                let next = u32::from(opts.first).wrapping_add(256);
                opts.first = Ipv4Addr::from(next);
                if !opts.first.is_loopback() {
                    break;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!(
        "no free block of loopback addresses for the simulated fleet near {}",
        opts.first
    )
}

/// Runs `gridminer demo`.
pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if !(args.speed.is_finite() && (1.0..=100_000.0).contains(&args.speed)) {
        bail!(
            "--speed {}: must be 1 to 100000 (demo seconds per second)",
            args.speed
        );
    }
    if !(1..=250).contains(&args.miners) {
        bail!("--miners {}: must be 1 to 250", args.miners);
    }
    if !args.first.is_loopback() {
        bail!(
            "--first {}: must be a loopback address (127.0.0.0/8)",
            args.first
        );
    }
    if args.duration == Some(Duration::ZERO) {
        bail!("--duration 0: give a positive demo time, e.g. 1d");
    }
    let series = Series::parse(DATA)?;
    crate::mqtt::install_crypto_provider();
    super::run::daemon_runtime()?.block_on(run(args, series))
}

async fn run(args: DemoArgs, series: Series) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    // Before anything starts: a Ctrl-C during start-up must still stop in order.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let timing = Timing { speed: args.speed };
    let spec = emulator::model(MODEL)?;
    let sizing = Sizing::new(args.miners, spec.rated_power);

    let bind = || async {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a loopback port for a SunSpec device")
    };
    let inverter = SunSpecDevice::start(DeviceKind::Inverter, sizing.pv_capacity, bind().await?)?;
    let meter = SunSpecDevice::start(
        DeviceKind::Meter,
        Watts(sizing.pv_capacity.0.max(sizing.import_limit.0)),
        bind().await?,
    )?;
    let fleet = start_fleet(FleetOptions {
        miners: args.miners,
        models: vec![spec],
        first: args.first,
        dynamics: timing.dynamics(),
        asleep: true,
        ..FleetOptions::default()
    })
    .await?;

    let key = operator_key()?;
    let public_key =
        base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
    let mqtt_port = free_port().context("finding a free port for the MQTT broker")?;
    // Port 0 goes to the daemon as it is: it binds a free port and says which.
    let web = args.listen;
    let miners = fleet.addresses();
    let config = site_config(
        &sizing,
        timing,
        &Peers {
            mqtt_port,
            web,
            inverter: inverter.addr(),
            meter: meter.addr(),
            miners: &miners,
            public_key: &public_key,
        },
    );
    if args.print_config {
        outln!("{config}")?;
        stop_devices(fleet, inverter, meter).await;
        return Ok(ExitCode::SUCCESS);
    }
    let scratch = Scratch::new()?;
    let path = scratch.0.join("site.toml");
    std::fs::write(&path, &config).with_context(|| format!("writing {}", path.display()))?;
    let site = crate::runtime::config::load(&path)
        .map_err(|e| anyhow::anyhow!("the demo's site config does not load: {e}"))?;
    let running = crate::runtime::start(site).await?;

    let addrs = fleet.addresses();
    outln!("gridminer demo: site {SITE:?}, {} miners ({MODEL}, {:.1} kW), {:.1} kW of PV, speed {}x (a minute of data every {:.2} s)",
        args.miners, sizing.fleet_rated.0 / 1e3, sizing.pv_capacity.0 / 1e3, args.speed, 60.0 / args.speed)?;
    match running.web_addr {
        Some(addr) => outln!("dashboard  http://{addr}/")?,
        // Its port taken, say: the daemon logged why and runs on without it.
        None => outln!("dashboard  not serving on {web} (see the log above)")?,
    }
    outln!("mqtt       127.0.0.1:{mqtt_port} (state on gridminer/{SITE}/state)")?;
    outln!("inverter   {} (SunSpec model 103)", inverter.addr())?;
    outln!("meter      {} (SunSpec model 203)", meter.addr())?;
    outln!(
        "miners     {}..{} port {} (Whatsminer API v2)",
        addrs[0],
        addrs[addrs.len() - 1],
        fleet.port()
    )?;
    outln!("operator   {OPERATOR} (Ed25519): curtail to {:.1} kW at 11:00, release at 14:00, heartbeat every {} real",
        sizing.curtail_to.0 / 1e3, format_duration(timing.heartbeat()))?;
    match args.duration {
        Some(d) => outln!(
            "running for {} of demo time; Ctrl-C stops",
            format_duration(d)
        )?,
        None => outln!("Ctrl-C stops")?,
    }

    let started = Instant::now();
    let demo = Demo {
        series: Arc::new(series),
        sizing,
        timing,
        started,
    };
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    // The client outlives the feeds: it sees the daemon say `offline` as it stops.
    let client_shutdown = CancellationToken::new();
    let client_tracker = TaskTracker::new();
    let (client, mut availability) =
        demo_client(mqtt_port, &client_tracker, &client_shutdown).await?;
    let fleet = Arc::new(fleet);
    tracker.spawn(demo.clone().replay(
        inverter.values(),
        meter.values(),
        fleet.clone(),
        running.snapshots.clone(),
        client.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(demo.clone().operator(key, client.clone(), shutdown.clone()));
    tracker.spawn(
        demo.clone()
            .report(running.snapshots.clone(), shutdown.clone()),
    );

    let end = args
        .duration
        .map(|d| Duration::from_secs_f64(d.as_secs_f64() / args.speed));
    let until_end = async {
        match end {
            Some(e) => tokio::time::sleep(e).await,
            None => std::future::pending().await,
        }
    };
    let failed = tokio::select! {
        _ = int.recv() => { outln!("stopping (Ctrl-C)")?; None }
        _ = term.recv() => { outln!("stopping (SIGTERM)")?; None }
        () = until_end => { outln!("stopping: {} of demo time done", format_duration(args.duration.unwrap_or_default()))?; None }
        failure = running.failed() => Some(failure),
    };
    stop_demo(shutdown, tracker).await;
    let stopped = running.stop(Duration::from_secs(10)).await;
    // The daemon's goodbye goes through the broker to every client (a dashboard, HA)
    // before the process, and with it the broker, ends.
    let offline = tokio::time::timeout(
        Duration::from_secs(5),
        availability.wait_for(|a| a.as_deref() == Some("offline")),
    )
    .await;
    // Said only when seen: the line is the demo's evidence that the goodbye went out.
    if matches!(offline, Ok(Ok(_))) {
        outln!("daemon     offline")?;
    } else {
        tracing::warn!("The daemon's `offline` did not come through the broker within 5s");
        outln!("daemon     stopped; its `offline` was not seen on the broker within 5 s")?;
    }
    stop_demo(client_shutdown, client_tracker).await;
    let safe = fleet_safe(&fleet, Duration::from_secs(15)).await;
    outln!("{}", safe.as_ref().unwrap_or_else(|e| e))?;
    let fleet = Arc::into_inner(fleet).context("the demo's tasks still hold the fleet")?;
    stop_devices(fleet, inverter, meter).await;
    drop(scratch);
    if let Some(f) = failed {
        bail!("the daemon failed: {f}");
    }
    stopped?;
    if let Err(unsafe_end) = safe {
        bail!("{unsafe_end}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What the demo's tasks share: the data, the site's size, and when demo time began.
#[derive(Clone)]
struct Demo {
    series: Arc<Series>,
    sizing: Sizing,
    timing: Timing,
    started: Instant,
}

impl Demo {
    /// Demo time since the start.
    fn now(&self) -> Duration {
        Duration::from_secs_f64(self.started.elapsed().as_secs_f64() * self.timing.speed)
    }

    /// `2018-06-20 11:00` for demo time `t`.
    fn clock(&self, t: Duration) -> String {
        let stamp = self.series.at(t).1.to_rfc3339();
        stamp.get(..16).unwrap_or(&stamp).replace('T', " ")
    }

    /// Feeds the devices and the price from the data, every replay step.
    async fn replay(
        self,
        inverter: crate::emulator::sunspec::Values,
        meter: crate::emulator::sunspec::Values,
        fleet: Arc<Fleet>,
        snapshots: tokio::sync::watch::Receiver<Arc<Snapshot>>,
        client: AsyncClient,
        shutdown: CancellationToken,
    ) {
        let step = self.timing.replay_step();
        let (mut pv_wh, mut import_wh, mut export_wh) = (0.0, 0.0, 0.0);
        let mut last = self.now();
        let mut scheduled_hour = None;
        loop {
            let t = self.now();
            let hour = t.as_secs() / 3600;
            if scheduled_hour != Some(hour) {
                scheduled_hour = Some(hour);
                self.schedule(&client, t).await;
            }
            let dt_h = t.saturating_sub(last).as_secs_f64() / 3600.0;
            last = t;
            let (row, _) = self.series.at(t);
            let s = &self.sizing;
            let pv = (row.solar_mw / SOLAR_REFERENCE_MW * s.pv_capacity.0).max(0.0);
            let load = s.base_load.0 * row.generation_mw / self.series.mean_generation_mw;
            let miners: f64 = fleet.snapshots().iter().map(|m| m.power.0).sum();
            let mining = miners + cpu_draw(&snapshots.borrow());
            let grid = load + mining - pv;
            pv_wh += pv * dt_h;
            import_wh += grid.max(0.0) * dt_h;
            export_wh += (-grid).max(0.0) * dt_h;
            // A few mHz of wander around 50 Hz, as a grid has: never near a shed.
            let hz = 50.0 + 0.02 * (t.as_secs_f64() / 420.0 * std::f64::consts::TAU).sin();
            inverter.set(Measurement {
                power: Watts(pv),
                frequency: Hertz(hz),
                energy: WattHours(pv_wh),
                exported: WattHours(0.0),
            });
            meter.set(Measurement {
                power: Watts(grid),
                frequency: Hertz(hz),
                energy: WattHours(import_wh),
                exported: WattHours(export_wh),
            });
            if let Err(error) = client
                .publish(
                    PRICE_TOPIC,
                    QoS::AtMostOnce,
                    false,
                    format!("{:.2}", row.price),
                )
                .await
            {
                tracing::warn!(%error, "Could not publish the demo price");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(step) => {}
            }
        }
    }

    /// Publishes the day-ahead schedule from demo time `t`'s hour on: each hour's price
    /// from the data, at the real time the demo reaches that hour (so the dashboard draws
    /// it against the clock the daemon runs on).
    async fn schedule(&self, client: &AsyncClient, t: Duration) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let entries: Vec<serde_json::Value> = (0..SCHEDULE_HOURS)
            .map(|h| {
                let start = Duration::from_secs((t.as_secs() / 3600 + h) * 3600);
                let ahead_s = (start.as_secs_f64() - t.as_secs_f64()) / self.timing.speed;
                let real = crate::clock::Timestamp(now_ms + (ahead_s * 1000.0) as i64);
                json!({ "start": real.to_rfc3339(), "price": self.series.at(start).0.price })
            })
            .collect();
        let body = serde_json::Value::Array(entries).to_string();
        if let Err(error) = client
            .publish(SCHEDULE_TOPIC, QoS::AtMostOnce, false, body)
            .await
        {
            tracing::warn!(%error, "Could not publish the demo's day-ahead schedule");
        }
    }

    /// The simulated grid operator: a heartbeat at once and then every
    /// [`Timing::heartbeat`]; each demo day a curtail at 11:00 and a release at 14:00.
    async fn operator(
        self,
        key: ed25519_dalek::SigningKey,
        client: AsyncClient,
        shutdown: CancellationToken,
    ) {
        let topic = crate::mqtt::Topics::new(SITE).cmd();
        let beat = self.timing.heartbeat();
        let mut next_beat = Instant::now();
        let mut curtailed: Option<u64> = None;
        let mut released: Option<u64> = None;
        let mut n = 0u64;
        let mut send = |act: &str, limit: Option<Watts>| {
            n += 1;
            let iat = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let jti = format!("demo-{act}-{n}");
            let mut claims = json!({
                "iss": OPERATOR, "aud": SITE, "iat": iat, "exp": iat + 30,
                "jti": jti, "act": act,
            });
            if let Some(w) = limit {
                claims["limit_w"] = json!(w.0);
            }
            (jti, sign_eddsa(&key, &claims))
        };
        loop {
            let t = self.now();
            // The schedule is by the data's time of day, not by time since the start.
            let d = (t + START_OF_DAY).as_secs();
            let day = d / DAY.as_secs();
            let of_day = Duration::from_secs(d % DAY.as_secs());
            let mut due = Vec::new();
            if of_day >= CURTAIL_AT && of_day < RELEASE_AT && curtailed != Some(day) {
                curtailed = Some(day);
                due.push(("curtail", Some(self.sizing.curtail_to)));
            }
            if of_day >= RELEASE_AT && curtailed == Some(day) && released != Some(day) {
                released = Some(day);
                due.push(("release", None));
            }
            if Instant::now() >= next_beat {
                next_beat += beat;
                due.push(("heartbeat", None));
            }
            for (act, limit) in due {
                let (jti, token) = send(act, limit);
                if act != "heartbeat" {
                    let what = limit.map_or(String::new(), |w| format!(" to {:.1} kW", w.0 / 1e3));
                    if outln!("{}  operator   {act}{what} (jti {jti})", self.clock(t)).is_err() {
                        return;
                    }
                }
                if let Err(error) = client.publish(&topic, QoS::AtLeastOnce, false, token).await {
                    tracing::warn!(%error, "Could not send the demo operator's command");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.timing.replay_step()) => {}
            }
        }
    }

    /// One line per demo hour: what the daemon saw and decided.
    async fn report(
        self,
        snapshots: tokio::sync::watch::Receiver<Arc<Snapshot>>,
        shutdown: CancellationToken,
    ) {
        if outln!("time              pv kW   grid kW  mining kW  target kW  reason").is_err() {
            return;
        }
        let mut hour = None;
        loop {
            let t = self.now();
            let h = t.as_secs() / 3600;
            if hour != Some(h) {
                hour = Some(h);
                let line = {
                    let s = snapshots.borrow();
                    let kw = |r: Option<crate::state::Reading<Watts>>| {
                        r.map_or("-".to_string(), |r| format!("{:.1}", r.value.0 / 1e3))
                    };
                    let mining: f64 = s
                        .loads
                        .iter()
                        .filter_map(|l| l.reading())
                        .map(|r| r.value.0)
                        .sum();
                    format!(
                        "{}  {:>8} {:>9} {:>10.1} {:>10.1}  {}",
                        self.clock(t),
                        kw(s.state.pv),
                        kw(s.state.grid),
                        mining / 1e3,
                        s.decision.total().0 / 1e3,
                        s.decision.reason.as_str()
                    )
                };
                if outln!("{line}").is_err() {
                    return;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.timing.replay_step()) => {}
            }
        }
    }
}

/// What the daemon reports its embedded CPU pools draw (the loads with a hashing report).
fn cpu_draw(s: &Snapshot) -> f64 {
    s.loads
        .iter()
        .zip(&s.hashing)
        .filter(|(_, h)| h.is_some())
        .filter_map(|(l, _)| l.reading())
        .map(|r| r.value.0)
        .sum()
}

/// The demo's own MQTT client (price, operator commands), and a task printing the
/// daemon's answers to the operator's curtail and release (and any refusal) and
/// following its availability.
async fn demo_client(
    port: u16,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<(AsyncClient, tokio::sync::watch::Receiver<Option<String>>)> {
    let mut opts = MqttOptions::new("gridminer-demo-feeds", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 1024);
    events.network_options = crate::mqtt::network_options();
    let topics = crate::mqtt::Topics::new(SITE);
    let ack_topic = topics.cmd_ack();
    let availability_topic = topics.availability();
    for t in [&ack_topic, &availability_topic] {
        client
            .subscribe(t.as_str(), QoS::AtLeastOnce)
            .await
            .context("subscribing to the daemon's answers")?;
    }
    let (available, availability) = tokio::sync::watch::channel(None);
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                e = events.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == availability_topic => {
                    available.send_replace(Some(String::from_utf8_lossy(&p.payload).into_owned()));
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                    if let Some(line) = ack_line(&p.payload) {
                        if outln!("{line}").is_err() {
                            return;
                        }
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "Demo MQTT client: reconnecting");
                    // rumqttc reconnects on the next poll; this pause is its backoff.
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    });
    Ok((client, availability))
}

/// The line for an acknowledgement worth showing: a curtail's or release's, or a refusal.
fn ack_line(payload: &[u8]) -> Option<String> {
    let ack: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let jti = ack["jti"].as_str().unwrap_or("?");
    let accepted = ack["accepted"].as_bool().unwrap_or(false);
    if accepted && jti.starts_with("demo-heartbeat-") {
        return None;
    }
    let limit = ack["effective_limit_w"]
        .as_f64()
        .map_or("no limit".to_string(), |w| {
            format!("limit {:.1} kW", w / 1e3)
        });
    Some(if accepted {
        format!("                  ack        {jti} accepted, {limit}")
    } else {
        format!(
            "                  ack        {jti} REFUSED: {}",
            ack["reason"].as_str().unwrap_or("?")
        )
    })
}

/// Cancels the demo's feeds and waits for them, at most 5 s.
async fn stop_demo(shutdown: CancellationToken, tracker: TaskTracker) {
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("The demo's feeds did not stop within 5s");
    }
}

/// Waits (polling the emulator, at most `deadline`) until no miner hashes: the daemon's
/// stop told them to pause, and a miner takes its `stop` time to wind down.
async fn fleet_safe(fleet: &Fleet, deadline: Duration) -> Result<String, String> {
    let until = Instant::now() + deadline;
    loop {
        let snaps = fleet.snapshots();
        let hashing = snaps.iter().filter(|s| s.hashing).count();
        let drawn: f64 = snaps.iter().map(|s| s.power.0).sum();
        if hashing == 0 {
            return Ok(format!(
                "loads safe: {} of {} miners not hashing ({:.0} W standby)",
                snaps.len(),
                snaps.len(),
                drawn
            ));
        }
        if Instant::now() >= until {
            return Err(format!(
                "loads NOT safe: {hashing} of {} miners still hashing after {}",
                snaps.len(),
                format_duration(deadline)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stop_devices(fleet: Fleet, inverter: SunSpecDevice, meter: SunSpecDevice) {
    fleet.stop().await;
    inverter.stop().await;
    meter.stop().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_shipped_week_parses_and_loops() {
        let s = Series::parse(DATA).unwrap();
        assert_eq!(s.rows.len(), 7 * 96);
        // Demo time 0 is 2018-06-20 06:00 UTC; a week later the same instant again.
        let (_, at0) = s.at(Duration::ZERO);
        assert_eq!(at0.to_rfc3339().get(..16), Some("2018-06-20T06:00"));
        let (_, week) = s.at(Duration::from_secs(7 * 86_400));
        assert_eq!(week, at0);
        // Halfway between two rows: the mean of their solar.
        let half = s.at(Duration::from_secs(6 * 3600 + 450)).0.solar_mw;
        let (a, b) = (s.rows[FIRST_ROW + 24], s.rows[FIRST_ROW + 25]);
        assert!((half - (a.solar_mw + b.solar_mw) / 2.0).abs() < 1e-6);
        // The night after (01:00) has no sun; noon has most of it.
        assert_eq!(s.at(Duration::from_secs(19 * 3600)).0.solar_mw, 0.0);
        assert!(s.at(Duration::from_secs(6 * 3600)).0.solar_mw > 15_000.0);
    }

    #[test]
    fn bad_data_is_an_error_not_a_panic() {
        for bad in [
            "h\n",
            "h\n2018-06-20T00:00:00Z,1,2\n",
            "h\n2018-06-20T00:00:00Z,x,2,3\n",
            "h\n2018-06-20T00:00:00Z,nan,2,3\n",
            "h\nyesterday,1,2,3\n",
        ] {
            assert!(Series::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// The written config goes through `gridminer run`'s loader at every speed the
    /// command accepts: a duration scaled below a key's minimum would make the demo
    /// fail to start at that speed.
    #[test]
    fn the_site_config_loads_at_every_speed() {
        let dir = tempfile::tempdir().unwrap();
        let miners = [Ipv4Addr::new(127, 2, 13, 1), Ipv4Addr::new(127, 2, 13, 2)];
        let key = ed25519_dalek::SigningKey::from_bytes(&[13; 32]);
        let public_key =
            base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
        for speed in [1.0, 60.0, 2880.0, 100_000.0] {
            let text = site_config(
                &Sizing::new(miners.len(), Watts(3400.0)),
                Timing { speed },
                &Peers {
                    mqtt_port: 1883,
                    web: "127.0.0.1:8080".parse().unwrap(),
                    inverter: "127.0.0.1:1502".parse().unwrap(),
                    meter: "127.0.0.1:1503".parse().unwrap(),
                    miners: &miners,
                    public_key: &public_key,
                },
            );
            let path = dir.path().join("site.toml");
            std::fs::write(&path, &text).unwrap();
            let site = crate::runtime::config::load(&path)
                .unwrap_or_else(|e| panic!("speed {speed}: {e}\n{text}"));
            assert_eq!(site.modbus.len(), 2);
            assert_eq!(
                site.telemetry.web.map(|w| w.listen),
                Some("127.0.0.1:8080".parse().unwrap())
            );
        }
    }

    #[test]
    fn acks_worth_a_line() {
        let line = |v: Value| ack_line(v.to_string().as_bytes());
        assert_eq!(
            line(json!({"jti": "demo-heartbeat-3", "accepted": true})),
            None
        );
        let refused =
            line(json!({"jti": "demo-heartbeat-4", "accepted": false, "reason": "expired"}));
        assert!(refused.unwrap().contains("REFUSED: expired"));
        let curtail =
            line(json!({"jti": "demo-curtail-5", "accepted": true, "effective_limit_w": 3400.0}));
        assert!(curtail.unwrap().contains("accepted, limit 3.4 kW"));
        assert_eq!(ack_line(b"not json"), None);
    }
}
