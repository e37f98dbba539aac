//! A `kind = "asic-fleet"` load's own keys: the miners (addresses, ranges to scan,
//! credentials by file), how they are driven (poll period, deadlines, concurrency) and
//! what each model is to the policy (`[loads.models."M30S+"]`).
//!
//! Which models there are is known only once the miners answer, so the groups the
//! policy drives are made at start (`runtime::fleet`); here everything that can be
//! checked without the network is.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::control::Timings;
use crate::config::Problems;
use crate::units::{de_hashrate, de_opt_duration, de_opt_watts, HashRate, Watts};

/// Most addresses one fleet may list or scan.
pub const MAX_ADDRESSES: usize = 65_536;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAsicFleet {
    pub name: String,
    #[serde(default)]
    miners: Vec<RawMiner>,
    #[serde(default)]
    scan: Vec<String>,
    /// The miners' API password, in a file (the firmware default when absent).
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    poll: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pause_within: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    resume_within: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    limit_within: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    readmit_after: Option<Duration>,
    #[serde(default)]
    attempts: Option<u32>,
    #[serde(default)]
    concurrency: Option<usize>,
    /// Where a hard cut is sent (`OFF`/`ON`, retained), `{miner}` for the address.
    #[serde(default)]
    relay_topic: Option<String>,
    #[serde(default)]
    models: BTreeMap<String, RawModel>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawMiner {
    /// An address, or a range of them (`10.0.0.1-10.0.0.9`, `10.0.0.1-9`, a CIDR).
    Address(String),
    One(RawOneMiner),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOneMiner {
    address: String,
    #[serde(default)]
    password_file: Option<PathBuf>,
    /// Its model, for when it does not answer at start.
    #[serde(default)]
    model: Option<String>,
}

/// What a model is to the policy; anything left out comes from what the miners report.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    #[serde(default, deserialize_with = "de_opt_watts")]
    pub rated_power: Option<Watts>,
    #[serde(default, deserialize_with = "opt_hashrate")]
    pub hashrate: Option<HashRate>,
    /// Lowest power limit to use; absent: the firmware's, or on/off if it has none.
    #[serde(default, deserialize_with = "de_opt_watts")]
    pub min_power: Option<Watts>,
    /// Run it on/off even if it takes power limits.
    #[serde(default)]
    pub on_off: bool,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub wake: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub ramp: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_on: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_off: Option<Duration>,
    #[serde(default)]
    pub max_starts_per_day: Option<u32>,
    /// The wear one start costs, EUR (see the site's `[[loads]] start_cost_eur`).
    #[serde(default)]
    pub start_cost_eur: Option<f64>,
}

fn opt_hashrate<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<HashRate>, D::Error> {
    de_hashrate(d).map(Some)
}

/// One miner to drive, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetMinerConfig {
    pub address: IpAddr,
    pub password: Option<String>,
    pub model: Option<String>,
    /// Listed (expected) rather than found by a scan: kept, as unknown, when it does
    /// not answer at start.
    pub listed: bool,
}

/// A checked `kind = "asic-fleet"` load.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    pub name: String,
    pub miners: Vec<FleetMinerConfig>,
    pub timings: Timings,
    pub concurrency: usize,
    /// The PDU relay's topic for hard cuts, `{miner}` for the address.
    pub relay_topic: Option<String>,
    pub models: BTreeMap<String, RawModel>,
}

fn read_password(p: &mut Problems, at: &str, base: &Path, file: &Path) -> Option<String> {
    let path = if file.is_absolute() {
        file.to_path_buf()
    } else {
        base.join(file)
    };
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s.trim_end_matches(['\n', '\r']).to_string()),
        Err(e) => {
            p.push(at, format!("{}: {e}", path.display()));
            None
        }
    }
}

/// The IPv4 addresses `s` names: one address, `A-B` (B a whole address or the last
/// octet), or a CIDR block (without its network and broadcast addresses when shorter
/// than /31).
pub fn parse_range(s: &str) -> Result<Vec<IpAddr>, String> {
    let s = s.trim();
    let bad = |why: &str| format!("{s:?}: {why}; expected an address, A-B or a CIDR block");
    let ip = |t: &str| {
        t.trim()
            .parse::<Ipv4Addr>()
            .map_err(|_| bad("not an IPv4 address"))
    };
    let (lo, hi) = if let Some((net, bits)) = s.split_once('/') {
        let net = u32::from(ip(net)?);
        let bits: u32 = bits.trim().parse().map_err(|_| bad("bad prefix length"))?;
        if bits > 32 {
            return Err(bad("prefix longer than 32"));
        }
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        let lo = net & mask;
        let hi = lo | !mask;
        if bits < 31 {
            (lo + 1, hi - 1)
        } else {
            (lo, hi)
        }
    } else if let Some((a, b)) = s.split_once('-') {
        let a = ip(a)?;
        let b = match b.trim().parse::<u8>() {
            Ok(last) => {
                let o = a.octets();
                Ipv4Addr::new(o[0], o[1], o[2], last)
            }
            Err(_) => ip(b)?,
        };
        (u32::from(a), u32::from(b))
    } else {
        let a = u32::from(ip(s)?);
        (a, a)
    };
    if hi < lo {
        return Err(bad("the range ends before it starts"));
    }
    if (hi - lo) as usize >= MAX_ADDRESSES {
        return Err(bad(&format!("more than {MAX_ADDRESSES} addresses")));
    }
    Ok((lo..=hi).map(|a| IpAddr::V4(Ipv4Addr::from(a))).collect())
}

impl RawAsicFleet {
    /// Checks the fleet at key path `at`; files are read relative to `base`.
    pub fn check(self, p: &mut Problems, at: &str, base: &Path) -> Option<FleetConfig> {
        let before = p.0.len();
        let password = self
            .password_file
            .as_deref()
            .and_then(|f| read_password(p, &format!("{at}.password_file"), base, f));
        let mut miners: Vec<FleetMinerConfig> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut add = |p: &mut Problems, key: &str, m: FleetMinerConfig| {
            if !seen.insert(m.address) {
                if m.listed {
                    p.push(key, format!("{} is listed twice", m.address));
                }
                return;
            }
            miners.push(m);
        };
        for (i, m) in self.miners.into_iter().enumerate() {
            let key = format!("{at}.miners[{i}]");
            match m {
                RawMiner::Address(s) => match parse_range(&s) {
                    Ok(ips) => {
                        for a in ips {
                            let m = FleetMinerConfig {
                                address: a,
                                password: password.clone(),
                                model: None,
                                listed: true,
                            };
                            add(p, &key, m);
                        }
                    }
                    Err(e) => p.push(key, e),
                },
                RawMiner::One(one) => {
                    let address = match one.address.trim().parse::<IpAddr>() {
                        Ok(a) => Some(a),
                        Err(_) => {
                            p.push(
                                format!("{key}.address"),
                                format!("{:?}: not an IP address", one.address),
                            );
                            None
                        }
                    };
                    let own = one
                        .password_file
                        .as_deref()
                        .and_then(|f| read_password(p, &format!("{key}.password_file"), base, f));
                    if let Some(address) = address {
                        let m = FleetMinerConfig {
                            address,
                            password: own.or_else(|| password.clone()),
                            model: one.model,
                            listed: true,
                        };
                        add(p, &key, m);
                    }
                }
            }
        }
        for (i, s) in self.scan.iter().enumerate() {
            match parse_range(s) {
                Ok(ips) => {
                    for a in ips {
                        let m = FleetMinerConfig {
                            address: a,
                            password: password.clone(),
                            model: None,
                            listed: false,
                        };
                        add(p, &format!("{at}.scan[{i}]"), m);
                    }
                }
                Err(e) => p.push(format!("{at}.scan[{i}]"), e),
            }
        }
        if miners.is_empty() && p.0.len() == before {
            p.push(at, "lists no miners: give `miners` or `scan`");
        }
        if miners.len() > MAX_ADDRESSES {
            p.push(
                at,
                format!("{} addresses is more than {MAX_ADDRESSES}", miners.len()),
            );
        }
        let mut timings = Timings::default();
        for (key, v, slot, lo, hi) in [
            ("poll", self.poll, &mut timings.poll, 1, 3600),
            (
                "pause_within",
                self.pause_within,
                &mut timings.pause_within,
                1,
                3600,
            ),
            (
                "resume_within",
                self.resume_within,
                &mut timings.resume_within,
                1,
                3600,
            ),
            (
                "limit_within",
                self.limit_within,
                &mut timings.limit_within,
                1,
                3600,
            ),
            (
                "readmit_after",
                self.readmit_after,
                &mut timings.readmit_after,
                1,
                86_400,
            ),
        ] {
            if let Some(d) = v {
                let (lo, hi) = (Duration::from_millis(100 * lo), Duration::from_secs(hi));
                if d < lo || d > hi {
                    p.push(
                        format!("{at}.{key}"),
                        format!("{d:?} is outside {lo:?}..={hi:?}"),
                    );
                }
                *slot = d;
            }
        }
        // Without a read-back for three polls a miner is unknown.
        timings.unknown_after = timings.poll * 3 + Duration::from_secs(5);
        if let Some(a) = self.attempts {
            if !(1..=10).contains(&a) {
                p.push(format!("{at}.attempts"), format!("{a} is outside 1..=10"));
            }
            timings.attempts = a.clamp(1, 10);
        }
        let concurrency = self.concurrency.unwrap_or(64);
        if !(1..=4096).contains(&concurrency) {
            p.push(
                format!("{at}.concurrency"),
                format!("{concurrency} is outside 1..=4096"),
            );
        }
        for (model, m) in &self.models {
            let key = format!("{at}.models.{model:?}");
            if let Some(r) = m.rated_power {
                if !(r.0 > 0.0 && r.is_finite() && r <= Watts::mw(1.0)) {
                    p.push(
                        format!("{key}.rated_power"),
                        format!("{r} must be > 0 and at most 1 MW"),
                    );
                }
                if let Some(min) = m.min_power {
                    if !(min.0 > 0.0 && min <= r) {
                        p.push(
                            format!("{key}.min_power"),
                            format!("{min} must be > 0 and at most rated_power {r}"),
                        );
                    }
                }
            }
            if let Some(h) = m.hashrate {
                if !(h.0 > 0.0 && h.0.is_finite()) {
                    p.push(format!("{key}.hashrate"), "must be > 0");
                }
            }
            if let Some(c) = m.start_cost_eur {
                let max = crate::site::MAX_START_COST_EUR;
                if !(0.0..=max).contains(&c) {
                    p.push(
                        format!("{key}.start_cost_eur"),
                        format!("{c} must be from 0 to {max} EUR"),
                    );
                }
            }
            if m.max_starts_per_day == Some(0) {
                p.push(
                    format!("{key}.max_starts_per_day"),
                    "0 would never start a miner; leave it out for no limit",
                );
            }
        }
        if let Some(t) = &self.relay_topic {
            if t.is_empty() || t.contains(['+', '#']) || !t.contains("{miner}") {
                p.push(
                    format!("{at}.relay_topic"),
                    format!("{t:?}: must name each miner's relay with {{miner}}, without + or #"),
                );
            }
        }
        (p.0.len() == before).then_some(FleetConfig {
            name: self.name,
            miners,
            timings,
            concurrency: concurrency.clamp(1, 4096),
            relay_topic: self.relay_topic,
            models: self.models,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn ranges_cidr_and_single_addresses() {
        assert_eq!(parse_range("127.0.1.1").unwrap(), vec![v4("127.0.1.1")]);
        assert_eq!(parse_range("127.0.1.1-3").unwrap().len(), 3);
        assert_eq!(
            parse_range("127.0.1.254-127.0.2.1").unwrap(),
            vec![
                v4("127.0.1.254"),
                v4("127.0.1.255"),
                v4("127.0.2.0"),
                v4("127.0.2.1")
            ]
        );
        let block = parse_range("10.0.0.0/29").unwrap();
        assert_eq!(block.first(), Some(&v4("10.0.0.1")));
        assert_eq!(block.len(), 6);
        assert_eq!(parse_range("10.0.0.7/32").unwrap(), vec![v4("10.0.0.7")]);
        for bad in ["10.0.0.9-3", "10.0.0.0/33", "nope", "10.0.0.0/8", "::1"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_problem_of_a_fleet_at_once_with_its_key_path() {
        let raw: RawAsicFleet = toml::from_str(
            r#"
            name = "f"
            miners = ["10.0.0.1", "10.0.0.1", { address = "x" }]
            scan = ["10.0.0.0/33"]
            poll = "2h"
            attempts = 0
            [models."M30S+"]
            rated_power = "3400 W"
            min_power = "4000 W"
            max_starts_per_day = 0
            "#,
        )
        .expect("parses");
        let mut p = Problems::default();
        assert!(raw.check(&mut p, "loads[0]", Path::new(".")).is_none());
        let text: String = p.0.iter().map(|x| format!("{x}\n")).collect();
        for key in [
            "loads[0].miners[1]",
            "loads[0].miners[2].address",
            "loads[0].scan[0]",
            "loads[0].poll",
            "loads[0].attempts",
            "loads[0].models.\"M30S+\".min_power",
            "loads[0].models.\"M30S+\".max_starts_per_day",
        ] {
            assert!(text.contains(key), "{key} missing from:\n{text}");
        }
    }
}
