//! Modbus TCP / SunSpec source against real peers: pymodbus serving a SunSpec map built by
//! pysunspec2 (`tests/modbus/sunspec_server.py`), pysunspec2 as an independent reader of
//! the same map, and an in-process TCP peer that answers with malformed frames.
//!
//! The Python peer is found at `$GRIDMINER_MODBUS_PYTHON`, else `target/modbus-venv`
//! (what `.ci/setup-modbus.sh` creates), else `python3` if it imports pymodbus and
//! sunspec2. Without it the tests say so and pass, unless `GRIDMINER_REQUIRE_PEERS=1`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use gridminer::signal::modbus::sunspec::{self, ModelHeader};
use gridminer::signal::modbus::{
    DeviceKind, ModbusDevice, ModbusError, ModbusSource, ModbusStats, RawRegister, RawTarget,
    RegisterReader, RegisterType, Role, Table, TcpReader, WordOrder,
};
use gridminer::signal::{Observation, Quantity};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::root;

/// Generous: two cores are shared with other builds, and Python starts slowly.
const DEADLINE: Duration = Duration::from_secs(30);

fn python_with_peers() -> Option<PathBuf> {
    let works = |py: &PathBuf| {
        std::process::Command::new(py)
            .args(["-c", "import pymodbus, sunspec2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let candidates = [
        std::env::var_os("GRIDMINER_MODBUS_PYTHON").map(PathBuf::from),
        Some(root().join("target/modbus-venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(works)
}

/// The interpreter, or `None` after saying why the test is skipped (a failure in CI).
pub(crate) fn peer_python(test: &str) -> Option<PathBuf> {
    let found = python_with_peers();
    if found.is_none() {
        let msg = "no Python with pymodbus and pysunspec2 (run .ci/setup-modbus.sh, or set \
                   GRIDMINER_MODBUS_PYTHON)";
        if std::env::var("GRIDMINER_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{test}: {msg}; GRIDMINER_REQUIRE_PEERS=1 makes this a failure");
        }
        eprintln!("SKIPPING {test}: {msg}");
    }
    found
}

/// The SunSpec server process, driven through its stdin.
pub(crate) struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    pub(crate) port: u16,
}

impl Peer {
    pub(crate) async fn start(python: &PathBuf, port: u16) -> Peer {
        let mut child = Command::new(python)
            .arg(root().join("tests/modbus/sunspec_server.py"))
            .args(["--port", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the SunSpec server starts");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(DEADLINE, stdout.next_line())
            .await
            .expect("the SunSpec server prints its port in time")
            .unwrap()
            .expect("the SunSpec server prints its port");
        let port = first.trim().parse().expect("the first line is the port");
        Peer {
            child,
            stdin,
            stdout,
            port,
        }
    }

    pub(crate) async fn send(&mut self, cmd: Value) {
        let line = format!("{cmd}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        let reply = tokio::time::timeout(DEADLINE, self.stdout.next_line())
            .await
            .expect("the SunSpec server answers in time")
            .unwrap();
        assert_eq!(reply.as_deref(), Some("ok"), "command {cmd}");
    }

    /// Kills the process (SIGKILL: no goodbye on the socket) and waits for it to be gone.
    async fn kill(mut self) -> u16 {
        self.child.kill().await.unwrap();
        self.port
    }
}

fn device(name: &str, port: u16, kind: DeviceKind) -> ModbusDevice {
    ModbusDevice {
        name: name.into(),
        host: "127.0.0.1".into(),
        port,
        unit_id: 1,
        poll: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        kind,
    }
}

/// A running source and its ends.
struct Running {
    rx: mpsc::Receiver<Observation>,
    stats: Arc<ModbusStats>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ModbusError>>,
}

impl Running {
    fn start(device: ModbusDevice) -> Running {
        let source = ModbusSource::new(device);
        let stats = source.stats();
        let (tx, rx) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(source.run(tx, shutdown.clone()));
        Running {
            rx,
            stats,
            shutdown,
            task,
        }
    }

    /// The next observation `pick` accepts, skipping others, within the deadline.
    async fn next<T>(&mut self, what: &str, mut pick: impl FnMut(&Observation) -> Option<T>) -> T {
        let found = tokio::time::timeout(DEADLINE, async {
            loop {
                let obs = self.rx.recv().await.expect("the source keeps running");
                if let Some(t) = pick(&obs) {
                    return t;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "no {what} within {DEADLINE:?}; stats {:?}",
                self.stats.snapshot()
            )
        })
    }

    async fn power(&mut self, quantity: Quantity) -> f64 {
        self.next(quantity.as_str(), |o| match o {
            Observation::Power {
                quantity: q, value, ..
            } if *q == quantity => Some(value.0),
            _ => None,
        })
        .await
    }

    async fn frequency(&mut self) -> f64 {
        self.next("frequency", |o| match o {
            Observation::Frequency { value, .. } => Some(value.0),
            _ => None,
        })
        .await
    }

    /// Waits until `cond` holds for the stats (checked every 10 ms, under the deadline).
    async fn until(
        &self,
        what: &str,
        cond: impl Fn(&gridminer::signal::modbus::StatsSnapshot) -> bool,
    ) {
        let stats = Arc::clone(&self.stats);
        let ok = tokio::time::timeout(DEADLINE, async {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tick.tick().await;
                if cond(&stats.snapshot()) {
                    return;
                }
            }
        })
        .await;
        assert!(
            ok.is_ok(),
            "{what} not within {DEADLINE:?}; stats {:?}",
            self.stats.snapshot()
        );
    }

    /// Everything queued now, without waiting.
    fn drain(&mut self) -> Vec<Observation> {
        std::iter::from_fn(|| self.rx.try_recv().ok()).collect()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the source stops when cancelled")
            .unwrap();
        assert!(r.is_ok(), "{r:?}");
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * b.abs().max(1.0)
}

/// What pysunspec2 reads from the same server: the chain and the scaled points.
async fn pysunspec2_reads(python: &PathBuf, port: u16) -> Value {
    let script = r#"
import json, sys
import sunspec2.modbus.client as client
d = client.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=int(sys.argv[1]), timeout=10)
d.scan()
inv, met = d.models[103][0], d.models[203][0]
print(json.dumps({
    "models": [[m.model_id, m.model_addr, m.model_len] for m in d.model_list],
    "inverter": {"W": inv.W.cvalue, "Hz": inv.Hz.cvalue, "WH": inv.WH.cvalue},
    "meter": {"W": met.W.cvalue, "Hz": met.Hz.cvalue},
}))
d.close()
"#;
    let out = tokio::time::timeout(
        DEADLINE,
        Command::new(python)
            .args(["-c", script, &port.to_string()])
            .output(),
    )
    .await
    .expect("pysunspec2 reads in time")
    .unwrap();
    crate::support::json_stdout(&out)
}

#[tokio::test]
async fn discovery_finds_the_chain_pysunspec2_finds() {
    let Some(python) = peer_python("discovery_finds_the_chain_pysunspec2_finds") else {
        return;
    };
    let peer = Peer::start(&python, 0).await;
    let mut reader = TcpReader::connect("127.0.0.1", peer.port, 1, Duration::from_secs(5))
        .await
        .unwrap();
    let models = sunspec::discover(&mut reader).await.unwrap();
    assert_eq!(
        models,
        vec![
            ModelHeader {
                id: 1,
                address: 40002,
                len: 66
            },
            ModelHeader {
                id: 103,
                address: 40070,
                len: 50
            },
            ModelHeader {
                id: 203,
                address: 40122,
                len: 105
            },
        ]
    );

    // pysunspec2, reading the same server, sees the same chain and the same values.
    let theirs = pysunspec2_reads(&python, peer.port).await;
    let chain: Vec<Value> = models
        .iter()
        .map(|m| json!([m.id, m.address, m.len]))
        .collect();
    assert_eq!(theirs["models"], Value::Array(chain));
    for (role, key) in [(Role::Pv, "inverter"), (Role::GridMeter, "meter")] {
        let plan = sunspec::plan(&models, role).unwrap();
        let block = reader
            .read_holding(plan.model.address, plan.count)
            .await
            .unwrap();
        let ours = sunspec::decode(plan.model.id, &block).unwrap();
        let w = theirs[key]["W"].as_f64().unwrap();
        let hz = theirs[key]["Hz"].as_f64().unwrap();
        assert!(
            close(ours.power.unwrap().0, w),
            "{key} W: ours {ours:?}, pysunspec2 {w}"
        );
        assert!(
            close(ours.frequency.unwrap().0, hz),
            "{key} Hz: ours {ours:?}, pysunspec2 {hz}"
        );
        if key == "inverter" {
            let wh = theirs[key]["WH"].as_f64().unwrap();
            assert!(
                close(ours.energy.unwrap().0, wh),
                "WH: ours {ours:?}, pysunspec2 {wh}"
            );
        }
    }
}

#[tokio::test]
async fn inverter_and_meter_observations_come_out_scaled_and_signed() {
    let Some(python) = peer_python("inverter_and_meter_observations_come_out_scaled_and_signed")
    else {
        return;
    };
    let peer = Peer::start(&python, 0).await;
    let mut pv = Running::start(device(
        "pv",
        peer.port,
        DeviceKind::SunSpec { role: Role::Pv },
    ));
    let mut meter = Running::start(device(
        "grid",
        peer.port,
        DeviceKind::SunSpec {
            role: Role::GridMeter,
        },
    ));
    // Served: inverter W 12345 × 10^-1, Hz 5001 × 10^-2; meter W -150 × 10^1 (export),
    // Hz 4998 × 10^-2.
    let w = pv.power(Quantity::PvPower).await;
    assert!(close(w, 1234.5), "{w}");
    let hz = pv.frequency().await;
    assert!(close(hz, 50.01), "{hz}");
    let w = meter.power(Quantity::GridPower).await;
    assert!(close(w, -1500.0), "export must come out negative: {w}");
    let hz = meter.frequency().await;
    assert!(close(hz, 49.98), "{hz}");
    let s = pv.stats.snapshot();
    assert_eq!((s.errors, s.rejected), (0, 0), "{s:?}");
    pv.stop().await;
    meter.stop().await;
}

#[tokio::test]
async fn a_value_change_and_a_not_implemented_point() {
    let Some(python) = peer_python("a_value_change_and_a_not_implemented_point") else {
        return;
    };
    let mut peer = Peer::start(&python, 0).await;
    let mut pv = Running::start(device(
        "pv",
        peer.port,
        DeviceKind::SunSpec { role: Role::Pv },
    ));
    assert!(close(pv.power(Quantity::PvPower).await, 1234.5));

    peer.send(json!({"set": [103, "W", 20000]})).await;
    pv.next("the new W", |o| match o {
        Observation::Power { value, .. } if close(value.0, 2000.0) => Some(()),
        _ => None,
    })
    .await;

    // W "not implemented" (0x8000): frequency keeps coming, power stops.
    peer.send(json!({"unimplemented": [103, "W"]})).await;
    let polls = pv.stats.snapshot().polls;
    // Two full polls after the change, so the polls counted surely read the new map.
    pv.until("three more polls", |s| s.polls >= polls + 3).await;
    pv.drain();
    let polls = pv.stats.snapshot().polls;
    pv.until("three more polls", |s| s.polls >= polls + 3).await;
    let seen = pv.drain();
    assert!(
        seen.iter()
            .any(|o| matches!(o, Observation::Frequency { .. })),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|o| matches!(o, Observation::Power { .. })),
        "a not-implemented W must give no power observation: {seen:?}"
    );
    let s = pv.stats.snapshot();
    assert_eq!(
        (s.errors, s.rejected),
        (0, 0),
        "sentinels are not errors: {s:?}"
    );
    pv.stop().await;
}

#[tokio::test]
async fn raw_map_word_orders_and_a_refused_register() {
    let Some(python) = peer_python("raw_map_word_orders_and_a_refused_register") else {
        return;
    };
    let peer = Peer::start(&python, 0).await;
    let reg = |target, table, address, kind, word_order, scale| RawRegister {
        target,
        table,
        address,
        kind,
        word_order,
        scale,
    };
    let power = |quantity, watts_per_unit| RawTarget::Power {
        quantity,
        watts_per_unit,
    };
    let registers = vec![
        reg(
            power(Quantity::GridPower, 1.0),
            Table::Input,
            30775,
            RegisterType::I32,
            WordOrder::Big,
            1.0,
        ),
        reg(
            power(Quantity::SiteLoad, 1.0),
            Table::Input,
            30777,
            RegisterType::U32,
            WordOrder::Little,
            0.1,
        ),
        reg(
            RawTarget::Frequency,
            Table::Input,
            30779,
            RegisterType::F32,
            WordOrder::Big,
            1.0,
        ),
        reg(
            power(Quantity::PvPower, 1000.0),
            Table::Input,
            30782,
            RegisterType::U16,
            WordOrder::Big,
            0.001,
        ),
        // Not served: the device answers "illegal data address" every poll.
        reg(
            power(Quantity::WindPower, 1.0),
            Table::Holding,
            100,
            RegisterType::I16,
            WordOrder::Big,
            1.0,
        ),
    ];
    let mut src = Running::start(device("raw", peer.port, DeviceKind::Raw { registers }));
    assert!(close(src.power(Quantity::GridPower).await, -2500.0));
    assert!(close(src.power(Quantity::SiteLoad).await, 7000.0));
    let hz = src.frequency().await;
    assert!((hz - 49.95).abs() < 1e-5, "{hz}");
    assert!(close(src.power(Quantity::PvPower).await, 4321.0));
    src.until("two rejected replies", |s| s.rejected >= 2).await;
    let s = src.stats.snapshot();
    assert_eq!(
        s.errors, 0,
        "an exception is the device's answer, not a transport error: {s:?}"
    );
    assert_eq!(
        s.connects, 1,
        "an exception does not cost the connection: {s:?}"
    );
    src.stop().await;
}

#[tokio::test]
async fn device_exceptions_are_counted_and_survived() {
    let Some(python) = peer_python("device_exceptions_are_counted_and_survived") else {
        return;
    };
    let mut peer = Peer::start(&python, 0).await;
    let mut pv = Running::start(device(
        "pv",
        peer.port,
        DeviceKind::SunSpec { role: Role::Pv },
    ));
    pv.power(Quantity::PvPower).await;
    peer.send(json!({"exception": 4})).await;
    let rejected = pv.stats.snapshot().rejected;
    pv.until("rejected replies", |s| s.rejected >= rejected + 2)
        .await;
    peer.send(json!({"exception": null})).await;
    pv.drain();
    assert!(close(pv.power(Quantity::PvPower).await, 1234.5));
    pv.stop().await;
}

/// A peer that speaks just enough Modbus TCP to be wrong: every read of `n` registers is
/// answered with `n + 1`, under the right transaction id.
async fn miscounting_peer() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut req = [0u8; 12];
                while sock.read_exact(&mut req).await.is_ok() {
                    let (tid, unit, func) = ([req[0], req[1]], req[6], req[7]);
                    let n = u16::from_be_bytes([req[10], req[11]]) + 1;
                    let mut pdu = vec![func, (n * 2) as u8];
                    pdu.extend(std::iter::repeat_n([0u8, 7], usize::from(n)).flatten());
                    let len = (pdu.len() + 1) as u16;
                    let mut frame = vec![tid[0], tid[1], 0, 0];
                    frame.extend(len.to_be_bytes());
                    frame.push(unit);
                    frame.extend(pdu);
                    if sock.write_all(&frame).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn malformed_replies_are_rejected_counted_and_survived() {
    let port = miscounting_peer().await;
    let registers = vec![RawRegister {
        target: RawTarget::Power {
            quantity: Quantity::GridPower,
            watts_per_unit: 1.0,
        },
        table: Table::Holding,
        address: 0,
        kind: RegisterType::U16,
        word_order: WordOrder::Big,
        scale: 1.0,
    }];
    let mut src = Running::start(device("liar", port, DeviceKind::Raw { registers }));
    // Each malformed reply drops the connection; the source reconnects and tries again.
    src.until("three rejected replies over three connections", |s| {
        s.rejected >= 3 && s.connects >= 3
    })
    .await;
    assert!(
        src.drain().is_empty(),
        "nothing from a malformed reply is observed"
    );
    assert!(!src.task.is_finished());
    src.stop().await;
}

#[tokio::test]
async fn a_killed_device_stops_observations_and_a_restarted_one_resumes_them() {
    let Some(python) =
        peer_python("a_killed_device_stops_observations_and_a_restarted_one_resumes_them")
    else {
        return;
    };
    let peer = Peer::start(&python, 0).await;
    let mut pv = Running::start(device(
        "pv",
        peer.port,
        DeviceKind::SunSpec { role: Role::Pv },
    ));
    pv.power(Quantity::PvPower).await;

    let port = peer.kill().await;
    pv.until("the outage noticed", |s| s.errors >= 1 && !s.connected)
        .await;
    pv.drain();
    let before = pv.stats.snapshot();
    pv.until("three more failed reconnects", |s| {
        s.errors >= before.errors + 3
    })
    .await;
    let after = pv.stats.snapshot();
    assert_eq!(
        after.observations, before.observations,
        "a dead device sends nothing"
    );
    assert!(pv.drain().is_empty());
    assert!(!pv.task.is_finished(), "the source keeps reconnecting");

    let restarted = Peer::start(&python, port).await;
    assert_eq!(restarted.port, port);
    assert!(close(pv.power(Quantity::PvPower).await, 1234.5));
    assert!(pv.stats.snapshot().connects >= 2);
    pv.stop().await;
}
