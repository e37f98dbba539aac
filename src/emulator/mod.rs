//! Faithful emulations of field devices that cannot run here, checked by independent
//! clients (pyasic, asic-rs) rather than by our own driver: a simulated ASIC fleet, one
//! miner per loopback address on the firmware's standard port.
//!
//! - [`model`]: the pure dynamics of one miner (state at `t` from the commands it took),
//!   the model table, the faults.
//! - [`whatsminer`]: btminer's API v2 (the firmware side of both clients' protocol).
//! - [`luxos`]: LUXminer's cgminer-style API (sessions, curtail, profiles).
//! - `server`: the thin tokio layer: a listener per miner, one request per connection.
//! - [`sunspec`]: a SunSpec inverter or meter over Modbus TCP (`gridminer demo`'s PV and
//!   grid meter).
//!
//! It must not import the controller's layers (only `units` and `clock`): the driver
//! is tested against it, so it may not share the driver's idea of the protocol.

mod firmware;
pub mod luxos;
pub mod model;
mod server;
pub mod sunspec;
pub mod whatsminer;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use model::{
    Command, Dynamics, Family, Fault, Miner, Outcome, Phase, PowerMode, Received, Spec, FAULTS,
    MODELS,
};

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::units::{HashRate, Watts};
use firmware::{Firmware, Identity};

/// The port btminer (and cgminer) listen on; both clients detect on it only.
pub const DEFAULT_PORT: u16 = 4028;

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("a fleet needs at least one miner")]
    NoMiners,
    #[error("unknown model {0:?} (known: {known})", known = known_models())]
    UnknownModel(String),
    #[error(
        "bad fault {0:?}: write KIND:SHARE, SHARE a fraction (0.1) or a percentage (10%), \
         KIND one of {kinds}",
        kinds = FAULTS.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
    )]
    BadFault(String),
    #[error("the faults take {wanted} miners, the fleet has {miners}")]
    TooManyFaults { wanted: usize, miners: usize },
    #[error("{0} is not a loopback address (the emulator serves on 127.0.0.0/8 only)")]
    NotLoopback(Ipv4Addr),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddrV4,
        source: std::io::Error,
    },
}

impl EmulatorError {
    /// Another process (or test) holds the address: try another block.
    pub fn is_addr_in_use(&self) -> bool {
        matches!(self, EmulatorError::Bind { source, .. }
            if source.kind() == std::io::ErrorKind::AddrInUse)
    }
}

fn known_models() -> String {
    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

/// The model named `name`, or the error that lists the known ones.
pub fn model(name: &str) -> Result<&'static Spec, EmulatorError> {
    model::model(name).ok_or_else(|| EmulatorError::UnknownModel(name.to_string()))
}

/// A fault and the share of the fleet that has it (`liar:0.1`, `dead:5%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultShare {
    pub fault: Fault,
    /// 0 to 1.
    pub share: f64,
}

impl FromStr for FaultShare {
    type Err = EmulatorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || EmulatorError::BadFault(s.to_string());
        let (kind, share) = s.split_once(':').ok_or_else(bad)?;
        let fault = Fault::parse(kind.trim()).ok_or_else(bad)?;
        let share = share.trim();
        let share = match share.strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
            None => share.parse::<f64>().map_err(|_| bad())?,
        };
        if !(0.0..=1.0).contains(&share) {
            return Err(bad());
        }
        Ok(FaultShare { fault, share })
    }
}

/// Which miner gets which fault: each fault takes `round(share * miners)` miners (at
/// least one for a non-zero share), counted from the last miner down, in the order
/// given; the first miners stay healthy. The same options always give the same fleet.
pub fn assign_faults(
    miners: usize,
    faults: &[FaultShare],
) -> Result<Vec<Option<Fault>>, EmulatorError> {
    let mut out = vec![None; miners];
    let mut next = miners;
    let mut wanted = 0;
    for f in faults {
        let n = if f.share > 0.0 {
            ((f.share * miners as f64).round() as usize).max(1)
        } else {
            0
        };
        wanted += n;
        if wanted > miners {
            continue;
        }
        for slot in out[next - n..next].iter_mut() {
            *slot = Some(f.fault);
        }
        next -= n;
    }
    if wanted > miners {
        return Err(EmulatorError::TooManyFaults { wanted, miners });
    }
    Ok(out)
}

/// What [`Fleet::start`] serves.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub miners: usize,
    /// Assigned round-robin: miner `i` is `models[i % len]`.
    pub models: Vec<&'static Spec>,
    /// The first miner's address; the others follow one by one.
    pub first: Ipv4Addr,
    /// Clients detect on 4028 only; port 0 (each miner its own free port) serves tests
    /// whose client takes any port.
    pub port: u16,
    pub faults: Vec<FaultShare>,
    pub dynamics: Dynamics,
    /// The privileged API's password (btminer's default is `admin`, which both clients
    /// use unless told otherwise).
    pub password: String,
    /// Start with every miner asleep instead of hashing at its rated power.
    pub asleep: bool,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            miners: 1,
            models: vec![&MODELS[0]],
            first: Ipv4Addr::new(127, 0, 1, 1),
            port: DEFAULT_PORT,
            faults: Vec::new(),
            dynamics: Dynamics::default(),
            password: "admin".into(),
            asleep: false,
        }
    }
}

/// One simulated miner: what the server and the snapshots share.
struct Station {
    addr: SocketAddrV4,
    spec: &'static Spec,
    fault: Option<Fault>,
    state: Mutex<StationState>,
}

struct StationState {
    miner: Miner,
    firmware: Firmware,
    connections: u64,
    /// Its outlet is off (a PDU relay opened): nothing answers, nothing is drawn.
    unpowered: bool,
}

/// One miner as the emulator knows it (the truth a client's read-back is checked
/// against).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    pub addr: Ipv4Addr,
    /// The model's name (`M30S+`).
    pub model: &'static str,
    pub fault: Option<Fault>,
    pub phase: Phase,
    /// Whether the boards hash.
    pub hashing: bool,
    /// Whether the firmware says it is off (`mineroff`, LuxOS `CurtailMode`): set when
    /// the command is accepted, before the boards stop.
    pub reported_off: bool,
    /// Whether its outlet is on ([`Fleet::outlet`]).
    pub powered: bool,
    /// Wall power.
    pub power: Watts,
    /// The power limit set.
    pub limit: Watts,
    pub hashrate: HashRate,
    /// Every privileged command received, `at` since the fleet started.
    pub received: Vec<Received>,
    /// Connections accepted (a `dead` miner has none).
    pub connections: u64,
}

/// A running simulated fleet. [`Fleet::stop`] closes the listeners and joins every task;
/// dropping it without `stop` still cancels them.
pub struct Fleet {
    stations: Vec<Arc<Station>>,
    epoch: Instant,
    started: Timestamp,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Fleet {
    /// Binds every miner's listener and serves them. Nothing is served when any
    /// binding fails (the ones bound are closed again).
    pub async fn start(opts: FleetOptions) -> Result<Fleet, EmulatorError> {
        if opts.miners == 0 {
            return Err(EmulatorError::NoMiners);
        }
        if opts.models.is_empty() {
            return Err(EmulatorError::UnknownModel(String::new()));
        }
        let faults = assign_faults(opts.miners, &opts.faults)?;
        let first = u32::from(opts.first);
        let mut addrs = Vec::with_capacity(opts.miners);
        for i in 0..opts.miners {
            let ip = first
                .checked_add(i as u32)
                .map(Ipv4Addr::from)
                .filter(Ipv4Addr::is_loopback)
                .ok_or(EmulatorError::NotLoopback(
                    first
                        .checked_add(i as u32)
                        .map_or(Ipv4Addr::BROADCAST, Ipv4Addr::from),
                ))?;
            addrs.push(SocketAddrV4::new(ip, opts.port));
        }
        let epoch = Instant::now();
        let started = SystemClock.now();
        let mut stations = Vec::with_capacity(opts.miners);
        let mut listeners = Vec::new();
        for (i, (addr, fault)) in addrs.into_iter().zip(faults).enumerate() {
            let spec = opts.models[i % opts.models.len()];
            let mut miner = Miner::new(spec, opts.dynamics.clone(), fault);
            if opts.asleep {
                miner.sleep_now(Duration::ZERO);
            }
            let identity = Identity {
                index: i,
                addr: *addr.ip(),
            };
            // Bound first, so a port 0 (unit tests) is known as the port it became.
            let (addr, listener) = if fault == Some(Fault::Dead) {
                (addr, None)
            } else {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| EmulatorError::Bind { addr, source })?;
                let port = listener.local_addr().map_or(addr.port(), |a| a.port());
                (SocketAddrV4::new(*addr.ip(), port), Some(listener))
            };
            let station =
                Arc::new(Station {
                    addr,
                    spec,
                    fault,
                    state: Mutex::new(StationState {
                        miner,
                        firmware: match spec.family {
                            Family::WhatsminerV2 => Firmware::Whatsminer(
                                whatsminer::Firmware::new(identity, &opts.password, fault),
                            ),
                            Family::LuxOs => Firmware::LuxOs(luxos::Firmware::new(identity)),
                        },
                        connections: 0,
                        unpowered: false,
                    }),
                });
            if let Some(listener) = listener {
                listeners.push((station.clone(), listener));
            }
            stations.push(station);
        }
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        for (station, listener) in listeners {
            tasks.spawn(server::serve(
                station,
                listener,
                epoch,
                shutdown.clone(),
                tasks.clone(),
            ));
        }
        Ok(Fleet {
            stations,
            epoch,
            started,
            shutdown,
            tasks,
        })
    }

    /// Every miner's address, in order.
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        self.stations.iter().map(|s| *s.addr.ip()).collect()
    }

    /// Every miner's address and port, in order (the ports differ only when the
    /// options asked for port 0).
    pub fn socket_addrs(&self) -> Vec<SocketAddrV4> {
        self.stations.iter().map(|s| s.addr).collect()
    }

    /// The port the first miner listens on (every miner's, unless port 0 was asked).
    pub fn port(&self) -> u16 {
        self.stations
            .first()
            .map_or(DEFAULT_PORT, |s| s.addr.port())
    }

    /// When the fleet started (what `Received::at` counts from).
    pub fn started(&self) -> Timestamp {
        self.started
    }

    /// Time since the fleet started.
    pub fn elapsed(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The miner at `addr` now, or `None` for an address not in the fleet.
    pub fn snapshot(&self, addr: Ipv4Addr) -> Option<Snapshot> {
        let t = self.elapsed();
        self.stations
            .iter()
            .find(|s| *s.addr.ip() == addr)
            .map(|s| s.snapshot(t))
    }

    /// Every miner now, in address order.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        let t = self.elapsed();
        self.stations.iter().map(|s| s.snapshot(t)).collect()
    }

    /// Switches the outlet of the miner at `addr` (what a PDU relay does): off, it answers
    /// nothing and draws nothing, whatever its firmware would say (a `liar` too); on, it
    /// boots and comes up asleep, to be resumed. `false` for an address not in the fleet.
    pub fn outlet(&self, addr: Ipv4Addr, on: bool) -> bool {
        let t = self.elapsed();
        let Some(s) = self.stations.iter().find(|s| *s.addr.ip() == addr) else {
            return false;
        };
        let mut st = s.state.lock().expect("no panic while the miner is locked");
        if !on && !st.unpowered {
            st.miner.sleep_now(t);
        }
        st.unpowered = !on;
        true
    }

    /// Closes every listener and waits for every connection task to end.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Without `stop` (a failed test), the listeners still close.
        self.shutdown.cancel();
    }
}

impl Station {
    fn snapshot(&self, t: Duration) -> Snapshot {
        let st = self
            .state
            .lock()
            .expect("no panic while the miner is locked");
        let r = st.miner.reading(t);
        Snapshot {
            addr: *self.addr.ip(),
            model: self.spec.name,
            fault: self.fault,
            phase: r.phase,
            hashing: !st.unpowered && r.hashrate.0 > 0.0,
            reported_off: r.mineroff,
            power: if st.unpowered { Watts::ZERO } else { r.power },
            powered: !st.unpowered,
            limit: st.miner.limit(),
            hashrate: r.hashrate,
            received: st.miner.received().cloned().collect(),
            connections: st.connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_shares_parse_as_fractions_or_percentages() {
        let f: FaultShare = "liar:0.25".parse().unwrap();
        assert_eq!((f.fault, f.share), (Fault::Liar, 0.25));
        let f: FaultShare = "dead:10%".parse().unwrap();
        assert_eq!((f.fault, f.share), (Fault::Dead, 0.1));
        for bad in ["liar", "liar:2", "lazy:0.1", "liar:-0.1", "liar:x"] {
            assert!(bad.parse::<FaultShare>().is_err(), "{bad}");
        }
    }

    #[test]
    fn faults_are_assigned_from_the_end_deterministically() {
        let faults = ["liar:0.25".parse().unwrap(), "dead:0.1".parse().unwrap()];
        let a = assign_faults(8, &faults).unwrap();
        assert_eq!(a, assign_faults(8, &faults).unwrap());
        assert_eq!(a[..5], [None; 5]);
        assert_eq!(a[5], Some(Fault::Dead));
        assert_eq!(a[6..], [Some(Fault::Liar); 2]);
        let all = ["liar:0.5".parse().unwrap(), "dead:0.6".parse().unwrap()];
        assert!(matches!(
            assign_faults(10, &all),
            Err(EmulatorError::TooManyFaults {
                wanted: 11,
                miners: 10
            })
        ));
    }

    #[tokio::test]
    async fn a_fleet_on_port_0_serves_each_miner_on_its_own_port_and_can_start_asleep() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let fleet = Fleet::start(FleetOptions {
            miners: 3,
            first: Ipv4Addr::new(127, 2, 0, 1),
            port: 0,
            asleep: true,
            faults: vec!["dead:0.34".parse().unwrap()],
            ..FleetOptions::default()
        })
        .await
        .unwrap();
        let addrs = fleet.socket_addrs();
        assert!(addrs[..2].iter().all(|a| a.port() != 0));
        for s in fleet.snapshots() {
            assert_eq!((s.phase, s.hashing), (Phase::Sleeping, false));
        }
        let mut c = tokio::net::TcpStream::connect(addrs[1]).await.unwrap();
        c.write_all(br#"{"command":"status"}"#).await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        assert!(out.contains(r#""mineroff":"true""#), "{out}");
        assert_eq!(fleet.snapshot(*addrs[1].ip()).unwrap().connections, 1);
        assert!(fleet.snapshot(Ipv4Addr::new(127, 2, 0, 9)).is_none());
        fleet.stop().await;
    }

    #[tokio::test]
    async fn bad_options_are_refused_before_anything_binds() {
        let opts = |f: fn(&mut FleetOptions)| {
            let mut o = FleetOptions {
                first: Ipv4Addr::new(127, 2, 0, 1),
                port: 0,
                ..FleetOptions::default()
            };
            f(&mut o);
            o
        };
        assert!(matches!(
            Fleet::start(opts(|o| o.miners = 0)).await,
            Err(EmulatorError::NoMiners)
        ));
        assert!(matches!(
            Fleet::start(opts(|o| o.first = Ipv4Addr::new(10, 0, 0, 1))).await,
            Err(EmulatorError::NotLoopback(_))
        ));
        assert!(matches!(
            Fleet::start(opts(|o| {
                o.first = Ipv4Addr::new(127, 255, 255, 255);
                o.miners = 2;
            }))
            .await,
            Err(EmulatorError::NotLoopback(_))
        ));
        assert!(matches!(model("S9"), Err(EmulatorError::UnknownModel(_))));
    }
}
