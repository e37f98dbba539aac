//! Issue 11: the simulated ASIC fleet (`gridminer::emulator`) against two independent
//! clients that real fleets are driven with: pyasic (PyPI, `tests/pyasic/client.py`,
//! found by `peers::pyasic_python`) and asic-rs (crates.io, in-process). Each client
//! detects the make and model, reads hash rate and power, and its pause, resume and
//! power-limit commands must act on the emulator: checked from the emulator's own
//! state ([`Fleet::snapshot`]) and read back through the client again.
//!
//! The clients detect on port 4028 only, so every test takes its own loopback block
//! (`loopback::start_fleet`). Waits poll the emulator with a deadline.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use asic_rs::core::traits::miner::*;
use asic_rs::MinerFactory;
use gridminer::emulator::{
    self, Command, Dynamics, Fault, FaultShare, Fleet, FleetOptions, Outcome, Phase, Snapshot,
};
use gridminer::units::Watts;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::loopback;
use crate::peers;

/// Times a test can wait for, short enough to keep the suite quick, long enough that
/// the client sees every phase: wake, ramp and stop of a second or two.
fn quick() -> Dynamics {
    Dynamics {
        wake: Duration::from_millis(1500),
        ramp: Duration::from_millis(1500),
        stop: Duration::from_millis(1000),
        step: Watts(400.0),
        step_every: Duration::from_millis(300),
        ripple: 0.0,
        ..Dynamics::default()
    }
}

fn options(miners: usize, models: &[&str], faults: &[&str]) -> FleetOptions {
    FleetOptions {
        miners,
        models: models.iter().map(|m| emulator::model(m).unwrap()).collect(),
        faults: faults
            .iter()
            .map(|f| f.parse::<FaultShare>().unwrap())
            .collect(),
        dynamics: quick(),
        ..FleetOptions::default()
    }
}

/// Polls the emulator until `ok` holds for the miner at `addr`; panics with the last
/// snapshot after `within`.
async fn wait_for(
    fleet: &Fleet,
    addr: Ipv4Addr,
    within: Duration,
    what: &str,
    ok: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let s = fleet.snapshot(addr).expect("the address is in the fleet");
        if ok(&s) {
            return s;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{addr}: not {what} within {within:?}: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until the fleet's own clock has passed `t` (to show that something did *not*
/// happen in the time it would have taken).
async fn wait_past(fleet: &Fleet, t: Duration) {
    let deadline = tokio::time::Instant::now() + t + Duration::from_secs(30);
    while fleet.elapsed() <= t {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fleet's clock stands still"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn commands(s: &Snapshot) -> Vec<(Command, Outcome)> {
    s.received
        .iter()
        .map(|r| (r.command, r.outcome.clone()))
        .collect()
}

// ---------------------------------------------------------------- pyasic

/// The pyasic client process, driven one request per line.
struct Pyasic {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Pyasic {
    fn start(test: &str) -> Option<Pyasic> {
        let python = peers::pyasic_python();
        peers::need(
            python.is_some(),
            &format!("{test}: pyasic"),
            "run .ci/setup-pyasic.sh, or set GRIDMINER_PYASIC_PYTHON",
        )?;
        let script: PathBuf = peers::repo().join("tests/pyasic/client.py");
        let mut child = tokio::process::Command::new(python?)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python starts");
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        Some(Pyasic {
            _child: child,
            stdin,
            stdout,
        })
    }

    async fn ask(&mut self, line: &str) -> Value {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("the client reads");
        let answer = tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("pyasic did not answer {line:?} in 60 s"))
            .expect("the client's stdout")
            .expect("the client answers before it exits");
        let v: Value = serde_json::from_str(&answer).expect("one JSON line");
        assert!(v.get("error").is_none(), "pyasic: {line}: {v}");
        v
    }

    async fn data(&mut self, addr: Ipv4Addr) -> Value {
        let d = self.ask(&format!("data {addr}")).await;
        assert_eq!(d["found"], true, "pyasic does not find {addr}: {d}");
        d
    }

    async fn ok(&mut self, line: &str) -> bool {
        self.ask(line).await["ok"].as_bool().expect("an ok answer")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_pyasic_detects_every_model_and_reads_power_and_hashrate() {
    // Catches replies a real client cannot parse or types as the wrong miner.
    let Some(mut py) = Pyasic::start("r11_pyasic_detects_every_model") else {
        return;
    };
    let fleet = loopback::start_fleet(options(3, &["M30S+", "M50S", "M60"], &[])).await;
    let expected = ["M30S+ VE40", "M50S VH50", "M60 VK10"];
    for (addr, model) in fleet.addresses().into_iter().zip(expected) {
        let d = py.data(addr).await;
        let truth = fleet.snapshot(addr).unwrap();
        assert_eq!(d["make"], "WhatsMiner", "{d}");
        assert_eq!(d["model"], model, "{d}");
        assert_eq!(d["fw_ver"], emulator::whatsminer::FIRMWARE_VERSION);
        assert_eq!(d["is_mining"], true);
        assert_eq!(d["hashboards"], 3);
        assert_eq!(d["wattage"].as_f64(), Some(truth.power.0.round()), "{d}");
        assert_eq!(d["wattage_limit"].as_f64(), Some(truth.limit.0));
        let ths = d["hashrate_ths"].as_f64().unwrap();
        assert!(
            (ths - truth.hashrate.0 / 1e12).abs() < 0.01,
            "{ths} vs {truth:?}"
        );
        assert!(truth.connections > 0);
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_pyasic_pause_resume_and_power_limit_act_on_the_miner() {
    let Some(mut py) = Pyasic::start("r11_pyasic_pause_resume_and_power_limit") else {
        return;
    };
    let fleet = loopback::start_fleet(options(1, &["M50S"], &[])).await;
    let ip = fleet.addresses()[0];
    let long = Duration::from_secs(30);

    assert!(py.ok(&format!("pause {ip}")).await);
    let s = wait_for(&fleet, ip, long, "asleep", |s| s.phase == Phase::Sleeping).await;
    assert!(s.reported_off);
    assert_eq!(commands(&s), [(Command::PowerOff, Outcome::Applied)]);
    let d = py.data(ip).await;
    assert_eq!(d["is_mining"], false);
    assert_eq!(d["wattage"].as_f64(), Some(s.power.0));
    assert_eq!(d["hashrate_ths"].as_f64(), Some(0.0));

    assert!(py.ok(&format!("resume {ip}")).await);
    let s = wait_for(&fleet, ip, long, "mining", |s| s.phase == Phase::Mining).await;
    assert_eq!(s.power, Watts(3276.0));
    let d = py.data(ip).await;
    assert_eq!(
        (d["is_mining"].as_bool(), d["wattage"].as_f64()),
        (Some(true), Some(3276.0))
    );

    assert!(py.ok(&format!("limit {ip} 2600")).await);
    let s = wait_for(&fleet, ip, long, "at 2600 W", |s| {
        s.power == Watts(2600.0) && s.phase == Phase::Mining
    })
    .await;
    assert_eq!(s.limit, Watts(2600.0));
    let d = py.data(ip).await;
    assert_eq!(d["wattage"].as_f64(), Some(2600.0));
    assert_eq!(d["wattage_limit"].as_f64(), Some(2600.0));
    assert!(d["hashrate_ths"].as_f64().unwrap() < 126.0);

    // Out of the model's range: pyasic reports the failure, nothing changes.
    assert!(!py.ok(&format!("limit {ip} 500")).await);
    assert_eq!(fleet.snapshot(ip).unwrap().limit, Watts(2600.0));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_pyasic_sees_refuses_auth_fail_and_a_liar_succeed_without_effect() {
    // Catches an emulator whose faults a real client would not see as real miners
    // show them: a refused token is an error; a liar's success changes nothing.
    let Some(mut py) = Pyasic::start("r11_pyasic_refuses_auth_and_liar") else {
        return;
    };
    let fleet =
        loopback::start_fleet(options(2, &["M30S+"], &["liar:0.5", "refuses-auth:0.5"])).await;
    let [refuses, liar] = fleet.addresses()[..] else {
        panic!("two miners")
    };
    assert_eq!(
        fleet.snapshot(refuses).unwrap().fault,
        Some(Fault::RefusesAuth)
    );
    assert_eq!(fleet.snapshot(liar).unwrap().fault, Some(Fault::Liar));

    assert!(!py.ok(&format!("pause {refuses}")).await);
    assert!(!py.ok(&format!("limit {refuses} 2600")).await);
    let s = fleet.snapshot(refuses).unwrap();
    assert!(s.received.is_empty(), "{s:?}");
    assert_eq!(s.phase, Phase::Mining);

    assert!(py.ok(&format!("pause {liar}")).await);
    assert!(py.ok(&format!("limit {liar} 2600")).await);
    let s = fleet.snapshot(liar).unwrap();
    assert_eq!(
        commands(&s),
        [
            (Command::PowerOff, Outcome::Ignored),
            (Command::PowerLimit(Watts(2600.0)), Outcome::Ignored)
        ]
    );
    // Long after a real miner would have stopped, it still hashes at full power.
    wait_past(&fleet, s.received[0].at + quick().stop * 3).await;
    let d = py.data(liar).await;
    assert_eq!(
        (d["is_mining"].as_bool(), d["wattage"].as_f64()),
        (Some(true), Some(3400.0))
    );
    assert_eq!(d["wattage_limit"].as_f64(), Some(3400.0));
    assert_eq!(fleet.snapshot(liar).unwrap().phase, Phase::Mining);
    fleet.stop().await;
}

// ---------------------------------------------------------------- asic-rs

async fn asic_rs_miner(ip: Ipv4Addr) -> Box<dyn Miner> {
    MinerFactory::new()
        .get_miner(ip.into())
        .await
        .expect("discovery runs")
        .unwrap_or_else(|| panic!("asic-rs finds no miner at {ip}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_asic_rs_detects_reads_and_controls_the_miners() {
    // The library gridminer drives real fleets with: it must take the emulator for a
    // Whatsminer v2 of the right model, and its commands must act.
    let fleet = loopback::start_fleet(options(2, &["M60", "M30S+"], &[])).await;
    let long = Duration::from_secs(30);
    for (ip, model) in fleet
        .addresses()
        .into_iter()
        .zip(["M60VK10", "M30SPlusVE40"])
    {
        let miner = asic_rs_miner(ip).await;
        let info = miner.get_device_info();
        assert_eq!(
            (
                info.make.as_str(),
                info.model.as_str(),
                info.firmware.as_str()
            ),
            ("Whatsminer", model, "WhatsMiner Stock"),
        );
        let d = miner.get_data().await;
        let truth = fleet.snapshot(ip).unwrap();
        assert!(d.is_mining);
        assert_eq!(d.wattage.map(|p| p.as_watts()), Some(truth.power.0));
        let ths = d.hashrate.map(|h| {
            h.as_unit(asic_rs::core::data::hashrate::HashRateUnit::TeraHash)
                .value
        });
        assert!(
            (ths.unwrap() - truth.hashrate.0 / 1e12).abs() < 0.01,
            "{ths:?}"
        );
        assert_eq!(d.hashboards.len(), 3);
        assert_eq!(
            d.firmware_version.as_deref(),
            Some(emulator::whatsminer::FIRMWARE_VERSION)
        );

        assert!(miner.pause(None).await.unwrap());
        wait_for(&fleet, ip, long, "asleep", |s| s.phase == Phase::Sleeping).await;
        let d = miner.get_data().await;
        assert!(!d.is_mining);
        assert!(d.wattage.unwrap().as_watts() < 50.0);

        assert!(miner.resume(None).await.unwrap());
        wait_for(&fleet, ip, long, "mining", |s| s.phase == Phase::Mining).await;
        assert!(miner.get_data().await.is_mining);

        let limit = measurements::Power::from_watts(2400.0);
        assert!(miner.set_power_limit(limit).await.unwrap());
        let s = wait_for(&fleet, ip, long, "at 2400 W", |s| s.power == Watts(2400.0)).await;
        assert_eq!(s.limit, Watts(2400.0));
        let d = miner.get_data().await;
        assert_eq!(d.wattage.map(|p| p.as_watts()), Some(2400.0));
        assert_eq!(
            d.tuning_target,
            Some(asic_rs::core::data::miner::TuningTarget::Power(limit))
        );
        let kinds: Vec<Command> = s.received.iter().map(|r| r.command).collect();
        assert_eq!(
            kinds,
            [
                Command::PowerOff,
                Command::PowerOn,
                Command::PowerLimit(Watts(2400.0))
            ]
        );
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_asic_rs_pause_returns_true_from_a_liar_and_refuses_auth() {
    // asic-rs #310: `pause()` is fire-and-forget and says true whatever the miner did.
    // The emulator reproduces both lies, so the driver must verify by read-back.
    let fleet =
        loopback::start_fleet(options(2, &["M50S"], &["liar:0.5", "refuses-auth:0.5"])).await;
    let [refuses, liar] = fleet.addresses()[..] else {
        panic!("two miners")
    };
    for ip in [refuses, liar] {
        let miner = asic_rs_miner(ip).await;
        assert!(
            miner.pause(None).await.unwrap(),
            "asic-rs's pause says true"
        );
        assert!(miner.get_data().await.is_mining, "{ip} still mines");
    }
    let limit = measurements::Power::from_watts(2400.0);
    let refused = asic_rs_miner(refuses).await.set_power_limit(limit).await;
    assert!(
        !refused.unwrap_or(false),
        "a refused token is not a success"
    );
    assert!(fleet.snapshot(refuses).unwrap().received.is_empty());
    let lied = fleet.snapshot(liar).unwrap();
    assert_eq!(commands(&lied), [(Command::PowerOff, Outcome::Ignored)]);
    wait_past(&fleet, lied.received[0].at + quick().stop * 3).await;
    assert_eq!(fleet.snapshot(liar).unwrap().phase, Phase::Mining);
    fleet.stop().await;
}

// ---------------------------------------------------------------- faults over the wire

/// One request, one answer, as the clients frame it.
async fn raw(ip: Ipv4Addr, request: &str) -> std::io::Result<String> {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect((ip, emulator::DEFAULT_PORT)).await?;
    s.write_all(request.as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_dead_refuses_connections_and_drops_connection_answers_every_other() {
    let fleet = loopback::start_fleet(options(
        3,
        &["M30S+"],
        &["dead:0.34", "drops-connection:0.34"],
    ))
    .await;
    let [healthy, drops, dead] = fleet.addresses()[..] else {
        panic!("three miners")
    };
    assert_eq!(fleet.snapshot(dead).unwrap().fault, Some(Fault::Dead));
    assert!(raw(dead, r#"{"command":"summary"}"#).await.is_err());
    assert_eq!(fleet.snapshot(dead).unwrap().connections, 0);

    let answers: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(
                raw(drops, r#"{"command":"summary"}"#)
                    .await
                    .unwrap_or_default(),
            );
        }
        v
    };
    let answered = answers.iter().filter(|a| a.contains("SUMMARY")).count();
    assert_eq!(answered, 2, "{answers:?}");
    assert!(raw(healthy, r#"{"command":"summary"}"#)
        .await
        .unwrap()
        .contains("SUMMARY"));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_stop_closes_every_listener() {
    let fleet = loopback::start_fleet(options(2, &["M30S+"], &[])).await;
    let addrs = fleet.addresses();
    assert!(raw(addrs[0], r#"{"command":"status"}"#)
        .await
        .unwrap()
        .contains("mineroff"));
    fleet.stop().await;
    for ip in addrs {
        assert!(
            raw(ip, r#"{"command":"status"}"#).await.is_err(),
            "{ip} still listens"
        );
    }
}

// ---------------------------------------------------------------- the CLI

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_fleet_simulate_serves_what_it_prints_and_stops_on_sigint() {
    // The command a user runs: it lists each miner with model and fault, serves them,
    // and Ctrl-C closes every listener and exits 0.
    let first = loopback::block(3);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gridminer"))
        .args([
            "fleet", "simulate", "--miners", "3", "--model", "M30S+", "--model", "m60",
        ])
        .args([
            "--fault", "liar:34%", "--wake", "1s", "--ramp", "1s", "--first",
        ])
        .arg(first.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("gridminer runs");
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    while lines.len() < 4 {
        let line = tokio::time::timeout(Duration::from_secs(30), out.next_line())
            .await
            .expect("gridminer prints its fleet")
            .unwrap()
            .unwrap_or_else(|| panic!("gridminer ended early: {lines:?}"));
        lines.push(line);
    }
    let ip = |i: u32| Ipv4Addr::from(u32::from(first) + i);
    assert_eq!(lines[0], format!("{}:4028\tM30S+\thealthy\t3400 W", ip(0)));
    assert_eq!(lines[1], format!("{}:4028\tM60\thealthy\t3422 W", ip(1)));
    assert_eq!(lines[2], format!("{}:4028\tM30S+\tliar\t3400 W", ip(2)));
    assert!(lines[3].starts_with("serving 3 miners"), "{lines:?}");
    let d = raw(ip(1), r#"{"command":"devdetails"}"#).await.unwrap();
    assert!(d.contains("M60_VK10"), "{d}");

    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("gridminer stops on SIGINT")
        .unwrap();
    assert!(status.success(), "{status}");
    for i in 0..3 {
        assert!(raw(ip(i), r#"{"command":"summary"}"#).await.is_err());
    }
}

#[test]
fn r11_fleet_simulate_refuses_bad_options_with_a_clear_error() {
    let cwd = peers::repo();
    for (args, says) in [
        (
            &["--model", "S9"][..],
            "unknown model \"S9\" (known: M30S+, M50S, M60, S19XP-Lux, S21-Lux)",
        ),
        (&["--fault", "lazy:0.1"][..], "bad fault \"lazy:0.1\""),
        (
            &["--fault", "liar:0.6", "--fault", "dead:0.6"][..],
            "the faults take 2 miners, the fleet has 1",
        ),
        (
            &["--first", "192.168.1.10"][..],
            "192.168.1.10 is not a loopback address",
        ),
        (&["--wake", "soon"][..], "invalid value 'soon' for '--wake"),
        (&["--step", "100"][..], "invalid value '100' for '--step"),
        (&["--step", "0 W"][..], "--step must be above 0 W, not 0 W"),
    ] {
        let o = crate::support::gridminer(&[&["fleet", "simulate"][..], args].concat(), &cwd);
        let text = crate::support::text(&o);
        assert!(!o.status.success(), "{args:?}: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
    }
}

// ---------------------------------------------------------------- LuxOS, the second family

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_pyasic_detects_reads_and_controls_luxos_miners() {
    let Some(mut py) = Pyasic::start("r11_pyasic_luxos") else {
        return;
    };
    let fleet = loopback::start_fleet(options(2, &["S19XP-Lux", "S21-Lux"], &[])).await;
    let long = Duration::from_secs(30);
    for (ip, model) in fleet.addresses().into_iter().zip(["S19 XP", "S21"]) {
        let d = py.data(ip).await;
        let truth = fleet.snapshot(ip).unwrap();
        assert_eq!(
            (d["make"].as_str(), d["model"].as_str()),
            (Some("AntMiner"), Some(model)),
            "{d}"
        );
        assert_eq!(d["firmware"], "LuxOS");
        assert_eq!(d["wattage"].as_f64(), Some(truth.power.0.round()));
        assert_eq!(d["wattage_limit"].as_f64(), Some(truth.limit.0));
        let ths = d["hashrate_ths"].as_f64().unwrap();
        assert!(
            (ths - truth.hashrate.0 / 1e12).abs() < 0.05,
            "{ths} vs {truth:?}"
        );
    }
    let ip = fleet.addresses()[0];
    assert!(py.ok(&format!("pause {ip}")).await);
    let s = wait_for(&fleet, ip, long, "asleep", |s| s.phase == Phase::Sleeping).await;
    let d = py.data(ip).await;
    assert_eq!(d["wattage"].as_f64(), Some(s.power.0));
    assert_eq!(d["hashrate_ths"].as_f64(), Some(0.0));

    assert!(py.ok(&format!("resume {ip}")).await);
    wait_for(&fleet, ip, long, "mining", |s| s.phase == Phase::Mining).await;

    // pyasic picks the highest profile at or under the limit and sets it.
    assert!(py.ok(&format!("limit {ip} 2500")).await);
    let profiles = {
        let lux = gridminer::emulator::model::model("S19XP-Lux").unwrap();
        let m = gridminer::emulator::Miner::new(lux, quick(), None);
        gridminer::emulator::luxos::profiles(&m)
    };
    let want = profiles
        .iter()
        .map(|p| p.1)
        .filter(|w| *w <= Watts(2500.0))
        .fold(Watts(0.0), Watts::max);
    let s = wait_for(&fleet, ip, long, "at the profile's power", |s| {
        s.power == want
    })
    .await;
    assert_eq!(s.limit, want);
    let d = py.data(ip).await;
    assert_eq!(d["wattage"].as_f64(), Some(want.0));
    assert_eq!(d["wattage_limit"].as_f64(), Some(want.0));
    assert_eq!(
        commands(&s).into_iter().map(|c| c.0).collect::<Vec<_>>(),
        [
            Command::PowerOff,
            Command::PowerOn,
            Command::PowerLimit(want)
        ]
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_pyasic_luxos_refuses_auth_fails_and_liar_changes_nothing() {
    let Some(mut py) = Pyasic::start("r11_pyasic_luxos_faults") else {
        return;
    };
    let fleet =
        loopback::start_fleet(options(2, &["S21-Lux"], &["liar:0.5", "refuses-auth:0.5"])).await;
    let [refuses, liar] = fleet.addresses()[..] else {
        panic!("two miners")
    };
    assert!(!py.ok(&format!("pause {refuses}")).await);
    assert!(fleet.snapshot(refuses).unwrap().received.is_empty());
    assert!(py.ok(&format!("pause {liar}")).await);
    let s = fleet.snapshot(liar).unwrap();
    assert_eq!(commands(&s), [(Command::PowerOff, Outcome::Ignored)]);
    wait_past(&fleet, s.received[0].at + quick().stop * 3).await;
    let d = py.data(liar).await;
    assert_eq!(d["wattage"].as_f64(), Some(3500.0));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_asic_rs_detects_reads_and_curtails_luxos_miners() {
    let fleet = loopback::start_fleet(options(2, &["S19XP-Lux", "S21-Lux"], &[])).await;
    let long = Duration::from_secs(30);
    for (ip, model) in fleet.addresses().into_iter().zip(["S19XP", "S21"]) {
        let miner = asic_rs_miner(ip).await;
        let info = miner.get_device_info();
        assert_eq!(
            (info.model.as_str(), info.firmware.as_str()),
            (model, "LuxOS"),
            "{info:?}"
        );
        let d = miner.get_data().await;
        let truth = fleet.snapshot(ip).unwrap();
        assert_eq!(d.wattage.map(|p| p.as_watts()), Some(truth.power.0.round()));
        let ths = d.hashrate.map(|h| {
            h.as_unit(asic_rs::core::data::hashrate::HashRateUnit::TeraHash)
                .value
        });
        assert!(
            (ths.unwrap() - truth.hashrate.0 / 1e12).abs() < 0.05,
            "{ths:?}"
        );
        assert_eq!(
            d.tuning_target,
            Some(asic_rs::core::data::miner::TuningTarget::Power(
                measurements::Power::from_watts(truth.limit.0)
            ))
        );

        assert!(miner.pause(None).await.unwrap());
        let s = wait_for(&fleet, ip, long, "asleep", |s| s.phase == Phase::Sleeping).await;
        let d = miner.get_data().await;
        assert_eq!(d.wattage.map(|p| p.as_watts()), Some(s.power.0));
        assert_eq!(d.hashrate.map(|h| h.value), Some(0.0));

        assert!(miner.resume(None).await.unwrap());
        wait_for(&fleet, ip, long, "mining", |s| s.phase == Phase::Mining).await;
        // asic-rs 0.8.6 does not set power limits on LuxOS (profiles only).
        assert!(!miner.supports_set_power_limit());
    }
    fleet.stop().await;
}

// ---------------------------------------------------------------- bad input over the wire

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_hostile_requests_get_errors_or_a_close_and_the_miner_keeps_serving() {
    // Whatever arrives on 4028 (a scanner, a fuzzer, a client of another firmware),
    // the emulator answers or closes; it never stops serving or changes state.
    use tokio::io::AsyncReadExt;
    let fleet = loopback::start_fleet(options(2, &["M30S+", "S21-Lux"], &[])).await;
    let big = format!("{{\"command\":\"{}\"}}", "x".repeat(100_000));
    let requests: Vec<Vec<u8>> = vec![
        b"\xff\xfe\x00garbage".to_vec(),
        b"[1,2,3]".to_vec(),
        b"{\"command\":42}".to_vec(),
        b"{\"enc\":1,\"data\":\"%%%\"}".to_vec(),
        b"{\"enc\":1,\"data\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}".to_vec(),
        b"{\"command\":\"curtail\",\"parameter\":\",,,,\"}".to_vec(),
        b"{\"command\":\"summary+\"}".to_vec(),
        big.into_bytes(),
    ];
    for ip in fleet.addresses() {
        for req in &requests {
            let mut s = tokio::net::TcpStream::connect((ip, emulator::DEFAULT_PORT))
                .await
                .unwrap();
            let _ = s.write_all(req).await;
            let _ = s.shutdown().await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
                .await
                .expect("the miner answers or closes");
            if !out.is_empty() {
                let v: Value = serde_json::from_slice(&out).expect("an answer is JSON");
                assert!(
                    v.to_string().contains("\"E\"") || v.get("summary").is_some(),
                    "{v}"
                );
            }
        }
        // A client that connects and sends nothing is closed by the read deadline,
        // and a healthy request still gets its answer meanwhile.
        let _idle = tokio::net::TcpStream::connect((ip, emulator::DEFAULT_PORT))
            .await
            .unwrap();
        let answer = raw(ip, r#"{"command":"summary"}"#).await.unwrap();
        assert!(answer.contains("SUMMARY"), "{answer}");
        let s = fleet.snapshot(ip).unwrap();
        assert!(s.received.is_empty() && s.phase == Phase::Mining, "{s:?}");
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_asic_rs_sees_slow_wake_restarts_and_stuck_stabilizing_as_the_field_does() {
    // The faults that only show over time, through the driver's own library: each
    // command "succeeds", and only the read-backs tell the miners apart.
    let fleet = loopback::start_fleet(options(
        4,
        &["M30S+"],
        &[
            "slow-wake:0.25",
            "restarts-on-limit-change:0.25",
            "stuck-stabilizing:0.25",
        ],
    ))
    .await;
    let [healthy, stuck, restarts, slow] = fleet.addresses()[..] else {
        panic!("four miners")
    };
    assert_eq!(fleet.snapshot(slow).unwrap().fault, Some(Fault::SlowWake));
    let long = Duration::from_secs(30);

    // slow-wake: paused and resumed with a healthy one, it is still waking when the
    // healthy one already mines at full power.
    for ip in [healthy, slow] {
        assert!(asic_rs_miner(ip).await.pause(None).await.unwrap());
    }
    for ip in [healthy, slow] {
        wait_for(&fleet, ip, long, "asleep", |s| s.phase == Phase::Sleeping).await;
    }
    for ip in [healthy, slow] {
        assert!(asic_rs_miner(ip).await.resume(None).await.unwrap());
    }
    wait_for(&fleet, healthy, long, "mining", |s| {
        s.phase == Phase::Mining
    })
    .await;
    let s = fleet.snapshot(slow).unwrap();
    assert_eq!((s.phase, s.hashing), (Phase::Waking, false), "{s:?}");
    wait_for(&fleet, slow, long, "mining at last", |s| {
        s.phase == Phase::Mining
    })
    .await;

    // restarts-on-limit-change: the new limit stops the boards first.
    let limit = measurements::Power::from_watts(2600.0);
    assert!(asic_rs_miner(restarts)
        .await
        .set_power_limit(limit)
        .await
        .unwrap());
    let s = fleet.snapshot(restarts).unwrap();
    assert_eq!((s.phase, s.hashing), (Phase::Waking, false), "{s:?}");
    wait_for(&fleet, restarts, long, "at 2600 W", |s| {
        s.power == Watts(2600.0)
    })
    .await;

    // stuck-stabilizing: reports the new target and keeps drawing the old power.
    let miner = asic_rs_miner(stuck).await;
    assert!(miner.set_power_limit(limit).await.unwrap());
    let stuck_at = fleet.snapshot(stuck).unwrap();
    wait_past(&fleet, stuck_at.received[0].at + Duration::from_secs(3)).await;
    let d = miner.get_data().await;
    assert_eq!(
        d.tuning_target,
        Some(asic_rs::core::data::miner::TuningTarget::Power(limit))
    );
    assert_eq!(d.wattage.map(|p| p.as_watts()), Some(3400.0));
    assert_eq!(fleet.snapshot(stuck).unwrap().phase, Phase::Stabilizing);
    fleet.stop().await;
}
