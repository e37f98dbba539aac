//! Issue 9, grid safety first: the daemon end to end on Debian's mosquitto, as the
//! hostile tester found the holes. A curtailment survives `kill -9`; a crash loop cannot
//! outrun the heartbeat failsafe; a stale signal never lifts a cap.
//! <https://github.com/gridminer/gridminer/issues/9>

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::QoS;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::brokers::{free_port, Mosquitto};
use super::live::{subscriber, wait_for};
use super::support::{external_broker, site_feeds, SURPLUS_SITE};

const SECRET: &str = "tso-shared-secret-0123456789abcdef-0123";

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(site: &str, jti: &str, act: Value) -> String {
    let t = now_s();
    let mut claims = json!({"iss": "tso", "aud": site, "iat": t, "exp": t + 60, "jti": jti});
    for (k, v) in act.as_object().unwrap() {
        claims[k] = v.clone();
    }
    gridminer::signal::operator::sign_hs256(SECRET.as_bytes(), &claims)
}

/// A site of two 500 W MQTT miners on 3 kW of PV (surplus: they mine), the TSO as its
/// only operator, the record in `dir/state`, and `tail` (more tables) at the end.
fn config(dir: &Path, site: &str, port: u16, policy: &str, tail: &str) -> std::path::PathBuf {
    let cfg = dir.join("site.toml");
    let text = format!(
        r#"
site_id = "{site}"
tick = "100ms"
hashprice = 50.0
policy = {policy}
operator_replay_cache = "state/record.json"
{SURPLUS_SITE}
{mqtt}
{feeds}
[[operators]]
id = "tso"
alg = "HS256"
secret = "{SECRET}"
{tail}
"#,
        mqtt = external_broker(port, ""),
        feeds = site_feeds(site, 2),
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// `gridminer run` as its own process, killed (SIGKILL) on drop.
struct Daemon(Child);

impl Daemon {
    fn start(cfg: &Path) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_gridminer"))
            .args(["run", "--config"])
            .arg(cfg)
            .current_dir(cfg.parent().unwrap())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gridminer run starts");
        Daemon(child)
    }

    /// `kill -9`: no shutdown path runs, nothing is flushed.
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next message on `topic` that `ok` accepts, as JSON; panics after 20 s.
pub(super) async fn until(
    rx: &mut mpsc::Receiver<(String, Vec<u8>)>,
    topic: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Value::Null;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some((t, body))) = tokio::time::timeout(left, rx.recv()).await else {
            panic!("timed out waiting for {what}; last on {topic}: {last}");
        };
        if t != topic {
            continue;
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if ok(&v) {
            return v;
        }
        last = v;
    }
}

pub(super) async fn feed(client: &rumqttc::AsyncClient, site: &str) {
    for (topic, value) in [("pv", "3000"), ("load", "500"), ("price", "30")] {
        client
            .publish(format!("{site}/{topic}"), QoS::AtLeastOnce, false, value)
            .await
            .unwrap();
    }
}

fn target(state: &Value) -> f64 {
    state["decision"]["target_w"].as_f64().unwrap_or(f64::NAN)
}

pub(super) type Inbox = mpsc::Receiver<(String, Vec<u8>)>;

/// Sends `token` to the site's command topic and returns its ack.
async fn command(
    client: &rumqttc::AsyncClient,
    rx: &mut Inbox,
    site: &str,
    token: String,
) -> Value {
    client
        .publish(
            format!("gridminer/{site}/cmd"),
            QoS::AtLeastOnce,
            false,
            token,
        )
        .await
        .unwrap();
    until(rx, &format!("gridminer/{site}/cmd/ack"), "the ack", |_| {
        true
    })
    .await
}

/// Feeds surplus until the state shows both miners running (the daemon may not have
/// subscribed yet, or a cap may be about to lift); panics after 20 s.
async fn feed_until_mining(client: &rumqttc::AsyncClient, rx: &mut Inbox, site: &str, what: &str) {
    let state = format!("gridminer/{site}/state");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        feed(client, site).await;
        let mining = until(rx, &state, what, |s| target(s) == 1000.0);
        if tokio::time::timeout(Duration::from_millis(500), mining)
            .await
            .is_ok()
        {
            return;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
    }
}

/// Hole 2: a curtail to 0 W with `until` +10 min, then `kill -9` and a restart: it mined
/// at full power with `operator_command` null. Now the command in force is on disk before
/// it acts and back before the first decision: no state after the restart shows mining.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9_hole2_a_curtailment_survives_kill_9() {
    let Some(bin) = Mosquitto::find() else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&bin, dir.path(), free_port());
    let (site, policy) = ("k9", r#"{ mode = "economic", max_signal_age = "1h" }"#);
    let cfg = config(dir.path(), site, broker.port, policy, "");
    let (client, mut rx) = subscriber(broker.port, &format!("gridminer/{site}/#")).await;
    let state = format!("gridminer/{site}/state");

    let daemon = Daemon::start(&cfg);
    feed_until_mining(&client, &mut rx, site, "mining").await;
    let act = json!({"act": "curtail", "limit_w": 0, "until": now_s() + 600});
    let curtail = token(site, "c1", act);
    let ack = command(&client, &mut rx, site, curtail.clone()).await;
    assert_eq!(ack["accepted"], true, "{ack}");
    until(&mut rx, &state, "the curtail", |s| target(s) == 0.0).await;
    // The miners were told too (the setpoint is retained: a new subscriber gets the last).
    let setpoint = format!("{site}/miners/setpoint");
    let (_c, mut sp) = subscriber(broker.port, &setpoint).await;
    until(&mut sp, &setpoint, "the miners told 0 W", |v| {
        v["power_w"] == 0.0
    })
    .await;
    daemon.kill();

    // The retained state of the dead process is still there: listen afresh, and judge
    // every state and setpoint of the new process, from its first: the curtail holds.
    let (fresh, mut rx) = subscriber(broker.port, &format!("gridminer/{site}/#")).await;
    let daemon = Daemon::start(&cfg);
    let mut states = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while states < 20 {
        feed(&fresh, site).await;
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some((t, body))) = tokio::time::timeout(left, rx.recv()).await else {
            panic!("the restarted daemon published {states} states");
        };
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if t == setpoint {
            assert_eq!(v["power_w"], 0.0, "a setpoint after the restart: {v}");
        }
        if t == state {
            assert_eq!(target(&v), 0.0, "mining after the restart: {v}");
            assert_eq!(
                v["operator_command"]["limit_w"], 0.0,
                "the command was lost: {v}"
            );
            states += 1;
        }
    }
    // Re-sending the token is still refused as replayed: the record kept that too.
    let ack = command(&fresh, &mut rx, site, curtail).await;
    assert_eq!(ack["reason"], "replayed", "{ack}");
    // The operator's release ends it, and mining resumes.
    let release = token(site, "r1", json!({"act": "release"}));
    assert_eq!(
        command(&fresh, &mut rx, site, release).await["accepted"],
        true
    );
    feed_until_mining(&fresh, &mut rx, site, "mining again").await;
    daemon.kill();
    drop(client);
}

/// Hole 2, the failsafe: restarting under it gave a full `timeout` uncapped, and a crash
/// loop faster than the timeout never engaged it. Now a daemon with no heartbeat history
/// starts in the failsafe, and the silence clock survives restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9_hole2_a_crash_loop_cannot_outrun_the_failsafe() {
    let Some(bin) = Mosquitto::find() else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&bin, dir.path(), free_port());
    let (site, policy) = ("cl", r#"{ mode = "economic", max_signal_age = "1h" }"#);
    let heartbeat = "[operator_heartbeat]\ntimeout = \"3s\"\nfailsafe_limit = \"0 W\"\n";
    let cfg = config(dir.path(), site, broker.port, policy, heartbeat);
    let (client, mut rx) = subscriber(broker.port, &format!("gridminer/{site}/#")).await;
    let state = format!("gridminer/{site}/state");

    // No history: the failsafe from the first decision, whatever the surplus. (Its reason
    // is the feeds' staleness until they arrive: blind is rule one.)
    let daemon = Daemon::start(&cfg);
    feed(&client, site).await;
    let s = until(&mut rx, &state, "a state", |s| s["at"].is_string()).await;
    assert_eq!(
        (s["failsafe_w"].as_f64(), target(&s)),
        (Some(0.0), 0.0),
        "{s}"
    );
    // A heartbeat lifts it.
    let hb = token(site, "h1", json!({"act": "heartbeat"}));
    assert_eq!(command(&client, &mut rx, site, hb).await["accepted"], true);
    feed_until_mining(&client, &mut rx, site, "the heartbeat lifting the failsafe").await;
    let heard = Instant::now();
    daemon.kill();
    // Crash loop: every process is killed before its own clock could reach the 3 s
    // timeout (after its first state, or after 2 s if it is slow to start), never hearing
    // from the operator again. The old code restarted the silence clock in each process
    // and so never engaged; the silence clock on disk must make one of them cap mining.
    // (The deadline is generous: on a loaded machine a process may take a second to
    // start, and each one that is too slow only makes the loop longer.)
    let lifetime = Duration::from_secs(2);
    loop {
        assert!(
            heard.elapsed() < Duration::from_secs(60),
            "the failsafe never engaged"
        );
        let started = chrono::Utc::now();
        let daemon = Daemon::start(&cfg);
        let (c, mut rx) = subscriber(broker.port, &format!("gridminer/{site}/#")).await;
        feed(&c, site).await;
        // This process's first state (the retained one is an earlier process's).
        let first = until(&mut rx, &state, "this process's first state", |s| {
            s["at"]
                .as_str()
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                .is_some_and(|at| at >= started)
        });
        let first = tokio::time::timeout(lifetime, first).await;
        daemon.kill();
        if first.is_ok_and(|s| s["failsafe_w"] == 0.0) {
            break;
        }
    }
}

/// Hole 1, live: with `safe_limit` above 0 and a curtail to 0 W, the PV feed stopping
/// mined up to `safe_limit` (`stale:pv_power`) while the curtail was shown in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9_hole1_a_stale_feed_under_a_curtail_mines_nothing() {
    let Some(bin) = Mosquitto::find() else { return };
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&bin, dir.path(), free_port());
    let site = "st";
    let policy = r#"{ mode = "economic", max_signal_age = "1s", safe_limit = "1 kW" }"#;
    let cfg = config(dir.path(), site, broker.port, policy, "");
    let site_config = gridminer::runtime::config::load(&cfg).expect("config");
    let running = gridminer::runtime::start(site_config)
        .await
        .expect("daemon starts");
    let mut snaps = running.snapshots.clone();
    let (client, mut rx) = subscriber(broker.port, &format!("gridminer/{site}/#")).await;
    // Connected and subscribed: its `online` comes after its subscriptions.
    let availability = format!("gridminer/{site}/availability");
    until(&mut rx, &availability, "online", |v| {
        v.is_null() || v == "online"
    })
    .await;
    // Blind from the start (no PV yet): mining up to safe_limit, the cap while blind.
    wait_for(&mut snaps, "mining while blind", |s| {
        s.decision.reason.as_str() == "stale:pv_power" && s.decision.total().0 == 1000.0
    })
    .await;
    let curtail = token(site, "c1", json!({"act": "curtail", "limit_w": 0}));
    assert_eq!(
        command(&client, &mut rx, site, curtail).await["accepted"],
        true
    );
    // Still blind, now curtailed: nothing, and it stays nothing.
    let s = wait_for(&mut snaps, "the curtail while blind", |s| {
        s.decision.total().0 == 0.0
    })
    .await;
    assert_eq!(s.decision.reason.as_str(), "stale:pv_power");
    assert_eq!(s.decision.limit.map(|w| w.0), Some(0.0));
    let started = s.at;
    wait_for(&mut snaps, "a few more steps", |s| {
        assert_eq!(
            s.decision.total().0,
            0.0,
            "mined under a curtail: {:?}",
            s.decision
        );
        s.at.since(started) >= Duration::from_secs(1)
    })
    .await;
    running.stop(Duration::from_secs(10)).await.expect("stops");
}
