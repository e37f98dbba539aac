//! gridminer's asic-rs driver against the Whatsminer emulator, one fault kind at a time:
//! every command is confirmed by a read-back (checked against the emulator's own
//! state, the truth), a miner that does not comply leaves the capacity and what it
//! still draws is taken off its group's target.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use gridminer::actuator::asic::config::{FleetConfig, FleetMinerConfig};
use gridminer::actuator::asic::{Command, Fleet, MinerState, MinerStatus, Timings};
use gridminer::actuator::{ActuatorError, ReadPower, SetPower};
use gridminer::clock::{Clock, SystemClock};
use gridminer::decision::LoadTarget;
use gridminer::emulator::{self, Dynamics, FaultShare, FleetOptions, Phase};
use gridminer::runtime::fleet::build;
use gridminer::site::{LoadSpec, PowerLevels};
use gridminer::units::Watts;
use tokio_util::sync::CancellationToken;

use crate::loopback::start_fleet;

/// Fast firmware: a test waits seconds, not minutes, for what takes minutes at a site.
fn dynamics() -> Dynamics {
    Dynamics {
        wake: Duration::from_millis(600),
        ramp: Duration::from_millis(600),
        stop: Duration::from_millis(300),
        step: Watts(1000.0),
        step_every: Duration::from_millis(100),
        ..Dynamics::default()
    }
}

fn timings() -> Timings {
    Timings {
        poll: Duration::from_millis(500),
        verify_every: Duration::from_millis(150),
        pause_within: Duration::from_secs(3),
        resume_within: Duration::from_secs(4),
        limit_within: Duration::from_secs(3),
        attempts: 2,
        backoff: Duration::from_millis(200),
        unknown_after: Duration::from_secs(4),
        readmit_after: Duration::from_secs(600),
    }
}

struct Running {
    emu: emulator::Fleet,
    fleet: Fleet,
    loads: Vec<LoadSpec>,
    stop: CancellationToken,
}

impl Running {
    /// `models`: per model as asic-rs names it, on/off or the minimum power limit (the
    /// firmware reports no range, so the config gives it).
    async fn start(opts: FleetOptions, models: &[(&str, Option<f64>)]) -> Running {
        Running::start_with(opts, models, dynamics()).await
    }

    async fn start_with(
        opts: FleetOptions,
        models: &[(&str, Option<f64>)],
        dynamics: Dynamics,
    ) -> Running {
        let emu = start_fleet(FleetOptions { dynamics, ..opts }).await;
        let config = FleetConfig {
            name: "fleet".into(),
            miners: emu
                .addresses()
                .into_iter()
                .map(|a| FleetMinerConfig {
                    address: IpAddr::V4(a),
                    password: None,
                    // Where it does not answer at start (the dead one), it is this.
                    model: Some("M30SPlusVE40".into()),
                    listed: true,
                })
                .collect(),
            timings: timings(),
            concurrency: 16,
            relay_topic: None,
            models: models
                .iter()
                .map(|(m, min)| {
                    (
                        m.to_string(),
                        gridminer::actuator::asic::config::RawModel {
                            min_power: min.map(Watts),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (fleet, loads) = build(&config, clock).await.expect("the fleet builds");
        let stop = CancellationToken::new();
        for t in fleet.tasks(stop.clone()) {
            tokio::spawn(t);
        }
        Running {
            emu,
            fleet,
            loads,
            stop,
        }
    }

    /// The one miner with a fault (the tests that call it give exactly one).
    fn faulty(&self) -> std::net::Ipv4Addr {
        self.emu
            .snapshots()
            .into_iter()
            .find(|s| s.fault.is_some())
            .expect("one faulty miner")
            .addr
    }

    fn hashing(&self) -> usize {
        self.emu.snapshots().iter().filter(|s| s.hashing).count()
    }

    fn drawn(&self) -> Watts {
        self.emu.snapshots().iter().map(|s| s.power).sum()
    }

    fn statuses(&self) -> Vec<MinerStatus> {
        self.fleet.statuses(None)
    }

    async fn stop(self) {
        self.stop.cancel();
        self.emu.stop().await;
    }
}

/// Polls `cond` every 50 ms until it holds; fails with `what` and both views of the
/// fleet after `within`. (A poll with a deadline, not a sleep: the firmware's dynamics
/// take real time.)
async fn until(r: &Running, within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            let truth: Vec<_> = r
                .emu
                .snapshots()
                .into_iter()
                .map(|s| (s.addr, s.phase, s.power, s.limit, s.fault, s.received.len()))
                .collect();
            let commands: Vec<String> =
                (0..r.fleet.groups())
                    .flat_map(|g| r.fleet.commands_since(g, gridminer::clock::Timestamp(0)))
                    .map(|(a, c)| {
                        format!(
                        "{a} {:?} sent {} acked {:?} confirmed {:?} failed {} superseded {} {:?}",
                        c.command, c.sent.0 % 100_000, c.acked.map(|t| t.0 % 100_000),
                        c.confirmed.map(|t| t.0 % 100_000), c.failed, c.superseded, c.error
                    )
                    })
                    .collect();
            panic!(
                "timed out: {what}\nemulator: {truth:?}\ncommands: {commands:#?}\ndriver: {:?}",
                r.statuses()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn on(units: u32, w: f64) -> LoadTarget {
    LoadTarget {
        units_on: units,
        power: Watts(w),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_the_driver_finds_groups_by_model_and_confirms_every_command_by_read_back() {
    let r = Running::start(
        FleetOptions {
            miners: 4,
            models: vec![
                emulator::model("M30S+").expect("a model"),
                emulator::model("M50S").expect("a model"),
            ],
            ..FleetOptions::default()
        },
        &[("M30SPlusVE40", Some(1800.0)), ("M50SVH50", Some(1800.0))],
    )
    .await;
    // Two models, two groups, each with the firmware's power-limit range.
    assert_eq!(r.loads.len(), 2, "{:?}", r.loads);
    for l in &r.loads {
        assert_eq!(l.count, 2);
        assert!(matches!(l.levels, PowerLevels::Range { .. }), "{l:?}");
    }
    let names: Vec<&str> = r.loads.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["fleet-m30splusve40", "fleet-m50svh50"]);
    let mut g0 = r.fleet.group(0);
    let mut g1 = r.fleet.group(1);
    // Everything off: acknowledged, then confirmed by the emulator's truth and by the
    // driver's own read-backs.
    g0.set(LoadTarget::OFF).await.expect("acknowledged");
    g1.set(LoadTarget::OFF).await.expect("acknowledged");
    until(
        &r,
        Duration::from_secs(10),
        "every miner asleep and confirmed",
        || {
            r.hashing() == 0
                && r.statuses()
                    .iter()
                    .all(|s| s.state == MinerState::Sleeping && s.confirmed == Some(true))
        },
    )
    .await;
    // One M30S+ at 2500 W.
    g0.set(on(1, 2500.0)).await.expect("acknowledged");
    until(
        &r,
        Duration::from_secs(15),
        "one miner at its limit",
        || {
            let snaps = r.emu.snapshots();
            let running: Vec<_> = snaps.iter().filter(|s| s.hashing).collect();
            running.len() == 1
                && running[0].model == "M30S+"
                && (running[0].limit.0 - 2500.0).abs() < 25.0
                && r.statuses().iter().any(|s| {
                    s.state == MinerState::Mining
                        && s.last_command
                            .as_ref()
                            .is_some_and(|c| c.confirmed.is_some())
                })
        },
    )
    .await;
    // The group's reading is what the miners report, and the learned wake is there.
    let reading = g0.read().await.expect("a reading");
    assert!(
        (reading.value.0 - 2500.0).abs() < 200.0,
        "{:?} vs 2500 W",
        reading.value
    );
    let woke = r
        .statuses()
        .into_iter()
        .find(|s| s.state == MinerState::Mining)
        .expect("one mining");
    assert!(woke.wake_s.is_some_and(|w| w > 0.3), "{woke:?}");
    assert_eq!(woke.starts_today, 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_a_liar_is_detected_excluded_and_its_draw_taken_off_the_target() {
    // Catches: a miner that says OK and keeps hashing booked as paused, and the group
    // drawing its target on top of it.
    let r = Running::start(
        FleetOptions {
            miners: 3,
            faults: vec!["liar:0.01".parse::<FaultShare>().expect("a share")],
            ..FleetOptions::default()
        },
        &[],
    )
    .await;
    let liar = r.faulty();
    let mut g = r.fleet.group(0);
    // Off: the two honest ones stop; the liar answers OK and keeps hashing.
    let _ = g.set(LoadTarget::OFF).await;
    until(&r, Duration::from_secs(20), "the liar unresponsive", || {
        r.statuses()
            .iter()
            .any(|s| s.address == IpAddr::V4(liar) && s.state == MinerState::Unresponsive)
    })
    .await;
    assert_eq!(r.hashing(), 1, "only the liar hashes");
    let s = r
        .statuses()
        .into_iter()
        .find(|s| s.address == IpAddr::V4(liar))
        .expect("the liar");
    let cmd = s.last_command.clone().expect("its pause");
    assert!(
        cmd.acked.is_some() && cmd.confirmed.is_none() && cmd.failed,
        "{cmd:?}"
    );
    assert!(s.uncontrolled_w > 3000.0, "{s:?}");
    // Off is not achievable while the liar hashes: the write fails, it is never booked.
    match g.set(LoadTarget::OFF).await {
        Err(ActuatorError::Refused(why)) => assert!(why.contains("do not comply"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Two units' worth: the liar's draw is taken off, so one honest miner runs.
    g.set(on(2, 6800.0)).await.expect("acknowledged");
    until(
        &r,
        Duration::from_secs(15),
        "one honest miner beside the liar",
        || r.hashing() == 2,
    )
    .await;
    assert!(
        r.drawn() <= Watts(6800.0 * 1.05),
        "the group draws {} for a 6800 W target",
        r.drawn()
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_refused_auth_and_a_dead_miner_leave_the_capacity() {
    let r = Running::start(
        FleetOptions {
            miners: 3,
            faults: vec![
                "refuses-auth:0.01".parse().expect("a share"),
                "dead:0.01".parse().expect("a share"),
            ],
            asleep: true,
            ..FleetOptions::default()
        },
        &[],
    )
    .await;
    let mut g = r.fleet.group(0);
    let _ = g.set(on(3, 3.0 * 3400.0)).await;
    until(
        &r,
        Duration::from_secs(20),
        "the healthy miner hashes, the others excluded",
        || {
            let st = r.statuses();
            r.hashing() == 1
                && st.iter().filter(|s| s.state == MinerState::Mining).count() == 1
                && st
                    .iter()
                    .filter(|s| matches!(s.state, MinerState::Unresponsive | MinerState::Unknown))
                    .count()
                    == 2
        },
    )
    .await;
    let st = r.statuses();
    let refused = st
        .iter()
        .find(|s| s.state == MinerState::Unresponsive)
        .expect("the one that refuses auth");
    assert!(
        refused
            .last_command
            .as_ref()
            .is_some_and(|c| c.failed && c.error.is_some()),
        "{refused:?}"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_a_limit_that_is_taken_but_not_followed_escalates_to_a_pause() {
    let r = Running::start(
        FleetOptions {
            miners: 2,
            faults: vec!["stuck-stabilizing:0.01".parse().expect("a share")],
            ..FleetOptions::default()
        },
        &[("M30SPlusVE40", Some(1800.0))],
    )
    .await;
    let stuck = r.faulty();
    let mut g = r.fleet.group(0);
    // The fault sticks on a limit change made while hashing; a limit sent while the
    // miner still wakes is ramped to anyway. So: both hashing first, then the change
    // (with one target only, which of the two came first was the machine's load).
    // The fault sticks on a limit change made while hashing. The emulated miners hash
    // from power-on, so the first limit sticks if it lands before the driver's first
    // pause has put the miner to sleep; otherwise the miner wakes at that limit and a
    // second change while it runs steady sticks. (Which comes first is the machine's
    // load, so the test takes either path; one that changed the limit while the miner
    // still ramped would stick it below the limit, which is no breach.)
    let escalated = || {
        let s = r.emu.snapshot(stuck).expect("the stuck miner");
        !s.hashing
            && r.statuses()
                .iter()
                .any(|m| m.address == IpAddr::V4(stuck) && m.state == MinerState::Unresponsive)
    };
    let mut target = 4400.0;
    let _ = g.set(on(2, target)).await;
    until(
        &r,
        Duration::from_secs(25),
        "the stuck miner excluded, or both steady at the first limit",
        || {
            escalated()
                || r.statuses().iter().all(|m| {
                    m.last_command
                        .as_ref()
                        .is_some_and(|c| c.command == Command::Resume && c.confirmed.is_some())
                }) && r
                    .emu
                    .snapshots()
                    .iter()
                    .all(|s| s.phase == Phase::Mining && s.power.0 > 4000.0 / 2.0 * 1.05)
        },
    )
    .await;
    if !escalated() {
        target = 4000.0;
        let _ = g.set(on(2, target)).await;
        until(
            &r,
            Duration::from_secs(25),
            "the stuck miner paused and excluded",
            escalated,
        )
        .await;
    }
    // The other one runs alone, within the target.
    until(
        &r,
        Duration::from_secs(10),
        "the other at most the target",
        || r.hashing() == 1 && r.drawn() <= Watts(target * 1.05),
    )
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_dropped_connections_are_retried_until_confirmed() {
    // One connection in four dropped. (The default, one in two, fails a Whatsminer
    // privileged command, two connections, three times in four: a pause given up after
    // its two sends and tried again some seconds later could then miss any deadline a
    // test can afford about one time in five, which made this test flaky, not the
    // driver wrong.)
    let r = Running::start_with(
        FleetOptions {
            miners: 2,
            faults: vec!["drops-connection:0.01".parse().expect("a share")],
            ..FleetOptions::default()
        },
        &[],
        Dynamics {
            drop_every: 4,
            ..dynamics()
        },
    )
    .await;
    let mut g = r.fleet.group(0);
    let _ = g.set(LoadTarget::OFF).await;
    // Both asleep, each pause confirmed by a read-back. The flaky one may have used up
    // its sends on the way (then it stays out of the capacity until readmitted), but
    // its stop is tried again until it takes.
    until(
        &r,
        Duration::from_secs(60),
        "both asleep and confirmed",
        || {
            r.hashing() == 0
                && r.statuses().iter().all(|s| {
                    s.last_command
                        .as_ref()
                        .is_some_and(|c| c.command == Command::Pause && c.confirmed.is_some())
                })
        },
    )
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_the_driver_controls_luxos_miners_too() {
    // The second firmware family: LuxOS through asic-rs (sessions, `curtail
    // sleep|wakeup`). asic-rs gives it no power limit, so the group is on/off, and its
    // firmware says "mining" even asleep: the read-back's hashrate and power decide.
    let r = Running::start(
        FleetOptions {
            miners: 2,
            models: vec![emulator::model("S19XP-Lux").expect("a model")],
            ..FleetOptions::default()
        },
        &[],
    )
    .await;
    assert_eq!(r.loads.len(), 1, "{:?}", r.loads);
    assert_eq!(r.loads[0].levels, PowerLevels::OnOff, "{:?}", r.loads[0]);
    let rated = r.loads[0].rated_power;
    let mut g = r.fleet.group(0);
    g.set(LoadTarget::OFF).await.expect("acknowledged");
    until(
        &r,
        Duration::from_secs(20),
        "both LuxOS miners asleep and confirmed",
        || {
            r.hashing() == 0
                && r.statuses()
                    .iter()
                    .all(|s| s.state == MinerState::Sleeping && s.confirmed == Some(true))
        },
    )
    .await;
    g.set(on(1, rated.0)).await.expect("acknowledged");
    until(
        &r,
        Duration::from_secs(20),
        "one LuxOS miner mining, confirmed",
        || {
            r.hashing() == 1
                && r.statuses().iter().any(|s| {
                    s.state == MinerState::Mining
                        && s.last_command
                            .as_ref()
                            .is_some_and(|c| c.command == Command::Resume && c.confirmed.is_some())
                })
        },
    )
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_slow_wake_is_learned_and_a_restart_on_limit_change_is_ridden_out() {
    let r = Running::start(
        FleetOptions {
            miners: 3,
            faults: vec![
                "slow-wake:0.01".parse().expect("a share"),
                "restarts-on-limit-change:0.01".parse().expect("a share"),
            ],
            asleep: true,
            ..FleetOptions::default()
        },
        &[("M30SPlusVE40", Some(1800.0))],
    )
    .await;
    let fault_of = |a: IpAddr| {
        r.emu
            .snapshots()
            .into_iter()
            .find(|s| IpAddr::V4(s.addr) == a)
            .and_then(|s| s.fault)
    };
    let mut g = r.fleet.group(0);
    // All three at 2500 W: the slow one wakes 5x slower (3 s against 0.6 s, inside the
    // 4 s resume deadline); the one that restarts on a limit change stops, wakes and
    // ramps again, and ends at its limit.
    let _ = g.set(on(3, 7500.0)).await;
    until(
        &r,
        Duration::from_secs(40),
        "all three mining near 2500 W",
        || {
            let snaps = r.emu.snapshots();
            snaps
                .iter()
                .all(|s| s.hashing && (s.limit.0 - 2500.0).abs() < 100.0)
                && r.statuses().iter().all(|s| s.state == MinerState::Mining)
        },
    )
    .await;
    let st = r.statuses();
    let wake = |f: emulator::Fault| {
        st.iter()
            .find(|s| fault_of(s.address) == Some(f))
            .and_then(|s| s.wake_s)
            .expect("a learned wake")
    };
    let healthy = st
        .iter()
        .find(|s| fault_of(s.address).is_none())
        .and_then(|s| s.wake_s)
        .expect("a learned wake");
    assert!(
        wake(emulator::Fault::SlowWake) > 3.0 * healthy,
        "slow {} vs healthy {healthy}",
        wake(emulator::Fault::SlowWake)
    );
    r.stop().await;
}
