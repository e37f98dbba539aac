//! LuxOS (LUXminer on Antminer hardware), the firmware side: a cgminer-style API on
//! 4028, `{"command": "...", "parameter": "..."}` in, a `STATUS` list and the command's
//! table out, joined commands (`a+b`) answered `{"a": [..], "b": [..]}`.
//!
//! Read from the clients (asic-rs `asic-rs-firmwares-luxminer` and its recorded replies,
//! pyasic `rpc/luxminer.py` and `miners/backends/luxminer.py`). Control needs a session:
//! `session` shows the active one, `logon` opens one (one at a time), and a privileged
//! command carries it first in its parameter (`"SESSION,sleep"`). `curtail sleep|wakeup`
//! pauses and resumes; the power target is a profile (`profileset`), whose watts the
//! `profiles` table lists.

use std::time::Duration;

use serde_json::{json, Value};

use super::firmware::{Answer, Identity};
use super::model::{Command, Fault, Miner, Outcome, Reading};
use crate::units::Watts;

/// What `version` reports (the recorded reply's LUXminer release).
pub const LUXMINER_VERSION: &str = "2025.4.8.220305-57b389c7";
const MINER_VERSION: &str = "2025.4.8.220305";

fn description() -> String {
    format!("LUXminer {LUXMINER_VERSION}")
}

/// The profiles a model offers: nine frequency steps from its lowest to its highest
/// power limit, named by frequency as LuxOS names them.
pub fn profiles(miner: &Miner) -> Vec<(String, Watts, u32)> {
    let s = miner.spec;
    let steps = 8;
    (0..=steps)
        .map(|i| {
            let f = f64::from(i) / f64::from(steps);
            let watts = Watts((s.min_limit.0 + (s.max_limit.0 - s.min_limit.0) * f).round());
            let mhz = (190.0 + 25.0 * f64::from(i)) as u32;
            (format!("{mhz}MHz"), watts, mhz)
        })
        .collect()
}

/// One miner's LUXminer: its session and ATM flag.
pub struct Firmware {
    identity: Identity,
    session: Option<(String, Duration)>,
    atm: bool,
    rng: u64,
}

impl Firmware {
    pub fn new(identity: Identity) -> Firmware {
        let rng = 0x2545_f491_4f6c_dd1du64 ^ (identity.index as u64).wrapping_mul(0x9e37_79b9);
        Firmware {
            identity,
            session: None,
            atm: true,
            rng,
        }
    }

    pub fn answer(&mut self, miner: &mut Miner, request: &[u8], t: Duration, unix: i64) -> Answer {
        let text = String::from_utf8_lossy(request);
        let Ok(req) = serde_json::from_str::<Value>(text.trim_matches(['\0', '\n', '\r', ' ']))
        else {
            return Answer::Reply(error(unix, 23, "Invalid JSON").to_string());
        };
        let Some(command) = req.get("command").and_then(Value::as_str) else {
            return Answer::Reply(error(unix, 14, "Invalid command").to_string());
        };
        let parameter = match req.get("parameter") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        if command.contains('+') {
            let mut joined = serde_json::Map::new();
            for part in command.split('+') {
                joined.insert(
                    part.to_string(),
                    json!([self.one(miner, part, "", t, unix)]),
                );
            }
            joined.insert("id".into(), json!(1));
            return Answer::Reply(Value::Object(joined).to_string());
        }
        Answer::Reply(self.one(miner, command, &parameter, t, unix).to_string())
    }

    fn one(
        &mut self,
        miner: &mut Miner,
        command: &str,
        parameter: &str,
        t: Duration,
        unix: i64,
    ) -> Value {
        if let Some((_, used)) = &self.session {
            if t.saturating_sub(*used) > miner.dynamics.token_ttl {
                self.session = None;
            }
        }
        let r = miner.reading(t);
        let ctx = Ctx {
            miner,
            r: &r,
            id: &self.identity,
            unix,
            atm: self.atm,
        };
        match command {
            "version" => version(&ctx),
            "config" => config(&ctx),
            "summary" => summary(&ctx),
            "stats" => stats(&ctx),
            "devs" => devs(&ctx),
            "power" => table(
                &ctx,
                311,
                "Power usage",
                "POWER",
                json!([{"PSU": false, "Watts": r.power.0.round() as i64}]),
            ),
            "profiles" => profiles_table(&ctx),
            "fans" => fans(&ctx),
            "temps" => temps(&ctx),
            "pools" => pools(&ctx),
            "groups" => table(
                &ctx,
                7,
                "1 Group(s)",
                "GROUPS",
                json!([{"GROUP": 0, "Name": "Default", "Quota": 1}]),
            ),
            "tempctrl" => table(
                &ctx,
                200,
                "Temperature control",
                "TEMPCTRL",
                json!([{"Mode": "Auto", "Target": 75.0, "Hot": 85.0, "Dangerous": 95.0}]),
            ),
            "events" => table(&ctx, 357, "Miner Events", "EVENTS", json!([])),
            "atm" => table(
                &ctx,
                339,
                "ATM configuration values",
                "ATM",
                json!([{"Enabled": self.atm, "MaxProfile": "", "MinProfile": "", "PostRampMinutes": 15, "StartupMinutes": 15, "TempWindow": 7}]),
            ),
            "session" => {
                let id = self.session.as_ref().map_or("", |(id, _)| id.as_str());
                table(&ctx, 351, "Session", "SESSION", json!([{"SessionID": id}]))
            }
            "logon" => {
                if self.session.is_some() {
                    return error(unix, 352, "Another session is active");
                }
                let id = session_id(&mut self.rng);
                self.session = Some((id.clone(), t));
                table(
                    &ctx,
                    350,
                    "Session created",
                    "SESSION",
                    json!([{"SessionID": id}]),
                )
            }
            "curtail" | "profileset" | "atmset" | "logoff" => {
                self.privileged(miner, command, parameter, t, unix)
            }
            _ => error(unix, 14, "Invalid command"),
        }
    }

    /// A command that needs the session id first in its parameter.
    fn privileged(
        &mut self,
        miner: &mut Miner,
        command: &str,
        parameter: &str,
        t: Duration,
        unix: i64,
    ) -> Value {
        let mut args = parameter.split(',').map(str::trim);
        let given = args.next().unwrap_or("");
        let valid = match &mut self.session {
            Some((id, used)) if id == given && !given.is_empty() => {
                *used = t;
                true
            }
            _ => false,
        };
        // `refuses-auth`: the session is checked against a management tool's own.
        if !valid || miner.fault == Some(Fault::RefusesAuth) {
            return error(unix, 353, "Invalid session id");
        }
        let arg = args.next().unwrap_or("");
        let ok = |code: u32, msg: &str| status_only(unix, "S", code, msg);
        match command {
            "logoff" => {
                self.session = None;
                ok(354, "Session closed")
            }
            "atmset" => {
                match arg.strip_prefix("enabled=") {
                    Some("true") => self.atm = true,
                    Some("false") => self.atm = false,
                    _ => return error(unix, 340, "Invalid ATM parameter"),
                }
                ok(340, "ATM configuration updated")
            }
            "curtail" => {
                let c = match arg {
                    "sleep" => Command::PowerOff,
                    "wakeup" => Command::PowerOn,
                    _ => return error(unix, 334, "Invalid curtail mode (sleep or wakeup)"),
                };
                miner.apply(t, c);
                ok(334, &format!("Curtail {arg}"))
            }
            "profileset" => {
                let Some((name, watts, _)) = profiles(miner).into_iter().find(|(n, ..)| n == arg)
                else {
                    return error(unix, 336, &format!("Invalid profile {arg}"));
                };
                match miner.apply(t, Command::PowerLimit(watts)) {
                    Outcome::Applied | Outcome::Ignored => {}
                    Outcome::Refused(msg) => return error(unix, 336, &msg),
                }
                // A liar confirms the profile it was asked for, not the one it runs.
                json!({
                    "STATUS": [{"STATUS": "S", "When": unix, "Code": 335, "Msg": "Profile set", "Description": description()}],
                    "PROFILE": [{"Profile": name, "Result": "Success"}],
                    "id": 1,
                })
            }
            _ => error(unix, 14, "Invalid command"),
        }
    }
}

struct Ctx<'a> {
    miner: &'a Miner,
    r: &'a Reading,
    id: &'a Identity,
    unix: i64,
    atm: bool,
}

fn status_only(unix: i64, s: &str, code: u32, msg: &str) -> Value {
    json!({
        "STATUS": [{"STATUS": s, "When": unix, "Code": code, "Msg": msg, "Description": description()}],
        "id": 1,
    })
}

fn error(unix: i64, code: u32, msg: &str) -> Value {
    status_only(unix, "E", code, msg)
}

fn table(ctx: &Ctx, code: u32, msg: &str, key: &str, rows: Value) -> Value {
    let mut v = status_only(ctx.unix, "S", code, msg);
    v[key] = rows;
    v
}

fn session_id(rng: &mut u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    super::firmware::random_chars(rng, ALPHABET, 8)
}

fn ghs(ctx: &Ctx) -> f64 {
    round2(ctx.r.hashrate.0 / 1e9)
}

fn current_profile(miner: &Miner) -> String {
    profiles(miner)
        .into_iter()
        .min_by(|a, b| {
            (a.1 - miner.limit())
                .abs()
                .0
                .total_cmp(&(b.1 - miner.limit()).abs().0)
        })
        .map(|p| p.0)
        .unwrap_or_default()
}

fn version(ctx: &Ctx) -> Value {
    table(
        ctx,
        22,
        "LUXminer versions",
        "VERSION",
        json!([{
            "API": "3.7", "CompileTime": "Tue Apr  8 22:05:35 UTC 2025",
            "LUXminer": LUXMINER_VERSION, "Miner": MINER_VERSION, "Type": ctx.miner.spec.firmware_model,
        }]),
    )
}

fn config(ctx: &Ctx) -> Value {
    let s = ctx.miner.spec;
    table(
        ctx,
        33,
        "LUXminer config",
        "CONFIG",
        json!([{
            "ASC Count": s.boards, "ControlBoardType": "amlogic", "Cooling": "Air",
            "CurtailMode": if ctx.r.mineroff { "Sleep" } else { "None" },
            "DHCP": true, "FeeStatus": "Ok", "GreenLed": "auto", "RedLed": "auto",
            "Hostname": format!("luxos-{}", ctx.id.index), "IPAddr": ctx.id.addr.to_string(),
            "IsAtmEnabled": ctx.atm, "IsPowerSupplyOn": true, "IsTuning": !ctx.r.stable,
            "MACAddr": ctx.id.mac().to_lowercase(), "Model": s.firmware_model,
            "NameplateTHS": s.rated_hashrate.0 / 1e12, "OS": "LuxOS",
            "Pool Count": 1, "Profile": current_profile(ctx.miner),
            "SerialNumber": ctx.id.serial(), "Strategy": "Failover", "SystemStatus": "Normal",
        }]),
    )
}

fn summary(ctx: &Ctx) -> Value {
    let g = ghs(ctx);
    table(
        ctx,
        11,
        "Summary",
        "SUMMARY",
        json!([{
            "Elapsed": ctx.r.elapsed.as_secs(), "GHS 5s": g, "GHS 1m": g, "GHS 5m": g,
            "GHS 15m": g, "GHS 30m": g, "GHS av": g, "Accepted": 0, "Rejected": 0,
            "Hardware Errors": 0, "Pool Rejected%": 0.0, "Stale": 0,
        }]),
    )
}

fn stats(ctx: &Ctx) -> Value {
    let s = ctx.miner.spec;
    let r = ctx.r;
    let per_board = ghs(ctx) / f64::from(s.boards);
    let mut board = serde_json::Map::new();
    let chip = r.chip_temp_c.round() as i64;
    let pcb = r.board_temp_c.round() as i64;
    for i in 1..=4u8 {
        let present = i <= s.boards;
        let rate = if present { per_board } else { 0.0 };
        board.insert(format!("chain_rate{i}"), json!(format!("{rate:.2}")));
        board.insert(
            format!("chain_acn{i}"),
            json!(if present { s.chips_per_board } else { 0 }),
        );
        board.insert(format!("chain_hw{i}"), json!(0));
        let temps = if present {
            format!("{}-{}-{}-{}", chip, pcb - 10, pcb - 10, chip)
        } else {
            "0-0-0-0".into()
        };
        board.insert(format!("temp_chip{i}"), json!(temps));
        board.insert(format!("temp_pcb{i}"), json!(temps));
        board.insert(format!("temp_pic{i}"), json!(temps));
        board.insert(format!("fan{i}"), json!(r.fan_rpm.round() as i64));
        board.insert(
            format!("freq{i}"),
            json!(if present && r.hashrate.0 > 0.0 {
                300.0
            } else {
                0.0
            }),
        );
    }
    for (k, v) in [
        ("Elapsed", json!(r.elapsed.as_secs())),
        ("GHS 5s", json!(ghs(ctx))),
        ("GHS av", json!(ghs(ctx))),
        ("ID", json!("BTM_SOC0")),
        ("STATS", json!(0)),
        ("fan_num", json!(4)),
        ("miner_count", json!(s.boards)),
        ("rate_unit", json!("GH")),
        ("temp_max", json!(chip)),
        ("temp_num", json!(s.boards)),
        (
            "total_acn",
            json!(u32::from(s.boards) * u32::from(s.chips_per_board)),
        ),
        ("total_rateideal", json!(round2(s.rated_hashrate.0 / 1e9))),
        ("total rate", json!(ghs(ctx))),
    ] {
        board.insert(k.into(), v);
    }
    table(
        ctx,
        70,
        "LUXminer stats",
        "STATS",
        json!([
            {"CompileTime": "Tue Apr  8 22:05:35 UTC 2025", "Miner": MINER_VERSION, "Type": s.firmware_model},
            Value::Object(board),
        ]),
    )
}

fn devs(ctx: &Ctx) -> Value {
    let s = ctx.miner.spec;
    let n = f64::from(s.boards);
    let rows: Vec<Value> = (0..s.boards)
        .map(|i| {
            let mhs = ctx.r.hashrate.0 / 1e6 / n;
            json!({
                "ASC": i, "ID": i, "Enabled": "Y", "Status": "Alive", "Name": "",
                "Temperature": ctx.r.board_temp_c.round(),
                "MHS 5s": mhs, "MHS 1m": mhs, "MHS av": mhs,
                "Nominal MHS": s.rated_hashrate.0 / 1e6 / n,
                "Profile": current_profile(ctx.miner),
                "IsRamping": ctx.r.phase == super::model::Phase::Ramping,
                "IsUserShutdown": ctx.r.mineroff,
                "SerialNumber": format!("{}{:02}", ctx.id.serial(), i),
                "Device Elapsed": ctx.r.elapsed.as_secs(),
            })
        })
        .collect();
    table(ctx, 9, &format!("{} ASC(s)", s.boards), "DEVS", json!(rows))
}

fn profiles_table(ctx: &Ctx) -> Value {
    let current = current_profile(ctx.miner);
    let s = ctx.miner.spec;
    let rows: Vec<Value> = profiles(ctx.miner)
        .into_iter()
        .map(|(name, watts, mhz)| {
            let board = (watts - s.control).max(Watts::ZERO);
            let ths = s.rated_hashrate.0 / 1e12 * (board / (s.rated_power - s.control)).powf(0.8);
            json!({
                "Profile Name": name, "Watts": watts.0 as i64, "Hashrate": round2(ths),
                "Frequency": mhz, "Voltage": 12.0, "Step": "0",
                "IsTuned": name == current, "IsDynamic": true, "CanRestore": true, "HasOverrides": false,
            })
        })
        .collect();
    table(ctx, 327, "Profiles", "PROFILES", json!(rows))
}

fn fans(ctx: &Ctx) -> Value {
    let rpm = ctx.r.fan_rpm.round() as i64;
    let speed = (ctx.r.fan_rpm / ctx.miner.spec.fan_rpm_max * 100.0).round() as i64;
    let rows: Vec<Value> = (0..4)
        .map(|i| json!({"FAN": format!("FAN{}", i + 1), "ID": i, "RPM": rpm, "Speed": speed}))
        .collect();
    let mut v = table(ctx, 202, "4 Fan(s)", "FANS", json!(rows));
    v["FANCTRL"] = json!([{"MinFans": 3, "PowerOffSpeed": 20}]);
    v
}

fn temps(ctx: &Ctx) -> Value {
    let chip = round2(ctx.r.chip_temp_c);
    let pcb = round2(ctx.r.board_temp_c - 10.0);
    let rows: Vec<Value> = (0..ctx.miner.spec.boards)
        .map(|i| {
            json!({"ID": i, "TEMP": i, "TopLeft": chip, "BottomLeft": chip, "TopRight": pcb, "BottomRight": pcb})
        })
        .collect();
    let mut v = table(
        ctx,
        201,
        &format!("{} Temp(s)", rows.len()),
        "TEMPS",
        json!(rows),
    );
    v["METADATA"] = json!([{
        "TopLeft": {"Label": "Board Exhaust (top)", "Position": [0, 0]},
        "TopRight": {"Label": "Board Intake (top)", "Position": [0, 1]},
        "BottomLeft": {"Label": "Board Exhaust (bottom)", "Position": [1, 0]},
        "BottomRight": {"Label": "Board Intake (bottom)", "Position": [1, 1]},
    }]);
    v
}

fn pools(ctx: &Ctx) -> Value {
    let alive = !ctx.r.mineroff;
    table(
        ctx,
        7,
        "1 Pool(s)",
        "POOLS",
        json!([{
            "POOL": 0, "GROUP": 0, "URL": "stratum+tcp://pool.invalid:3333",
            "User": format!("gridminer.{}", ctx.id.index), "Status": if alive { "Alive" } else { "Dead" },
            "Stratum Active": alive, "Accepted": 0, "Rejected": 0, "Priority": 0, "Quota": 1,
            "Get Failures": 0, "Remote Failures": 0, "Last Share Time": 0,
        }]),
    )
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::model::{self, Dynamics, Phase};
    use std::net::Ipv4Addr;

    fn lux(fault: Option<Fault>) -> (Firmware, Miner) {
        let spec = model::model("S19XP-Lux").expect("a LuxOS model");
        let id = Identity {
            index: 0,
            addr: Ipv4Addr::new(127, 2, 1, 1),
        };
        let d = Dynamics {
            ripple: 0.0,
            ..Dynamics::default()
        };
        (Firmware::new(id), Miner::new(spec, d, fault))
    }

    fn ask(fw: &mut Firmware, m: &mut Miner, req: Value, t: f64) -> Value {
        match fw.answer(
            m,
            req.to_string().as_bytes(),
            Duration::from_secs_f64(t),
            1_764_000_000,
        ) {
            Answer::Reply(s) => serde_json::from_str(&s).unwrap(),
            Answer::Drop => Value::Null,
        }
    }

    #[test]
    fn version_names_luxminer_and_the_antminer_model() {
        let (mut fw, mut m) = lux(None);
        let v = ask(&mut fw, &mut m, json!({"command": "version"}), 1.0);
        assert!(v.to_string().to_uppercase().contains("LUXMINER"));
        assert_eq!(v["VERSION"][0]["Type"], "Antminer S19 XP");
    }

    #[test]
    fn a_session_then_curtail_and_profileset_act() {
        let (mut fw, mut m) = lux(None);
        let none = ask(&mut fw, &mut m, json!({"command": "session"}), 0.0);
        assert_eq!(none["SESSION"][0]["SessionID"], "");
        let refused = ask(
            &mut fw,
            &mut m,
            json!({"command": "curtail", "parameter": "x,sleep"}),
            0.5,
        );
        assert_eq!(refused["STATUS"][0]["STATUS"], "E");
        let s = ask(&mut fw, &mut m, json!({"command": "logon"}), 1.0);
        let id = s["SESSION"][0]["SessionID"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 8);
        let again = ask(&mut fw, &mut m, json!({"command": "logon"}), 1.5);
        assert_eq!(again["STATUS"][0]["Msg"], "Another session is active");
        let ok = ask(
            &mut fw,
            &mut m,
            json!({"command": "curtail", "parameter": format!("{id},sleep")}),
            2.0,
        );
        assert_eq!(ok["STATUS"][0]["STATUS"], "S");
        assert_eq!(m.reading(Duration::from_secs(60)).phase, Phase::Sleeping);
        let p = profiles(&m);
        let (name, watts, _) = p[2].clone();
        let set = ask(
            &mut fw,
            &mut m,
            json!({"command": "profileset", "parameter": format!("{id},{name}")}),
            3.0,
        );
        assert_eq!(set["PROFILE"][0]["Profile"], name.as_str());
        assert_eq!(m.limit(), watts);
        let cfg = ask(&mut fw, &mut m, json!({"command": "config"}), 4.0);
        assert_eq!(cfg["CONFIG"][0]["Profile"], name.as_str());
        let bad = ask(
            &mut fw,
            &mut m,
            json!({"command": "profileset", "parameter": format!("{id},9MHz")}),
            5.0,
        );
        assert_eq!(bad["STATUS"][0]["STATUS"], "E");
    }

    #[test]
    fn r11_refuses_auth_rejects_a_valid_session() {
        let (mut fw, mut m) = lux(Some(Fault::RefusesAuth));
        let s = ask(&mut fw, &mut m, json!({"command": "logon"}), 1.0);
        let id = s["SESSION"][0]["SessionID"].as_str().unwrap().to_string();
        let e = ask(
            &mut fw,
            &mut m,
            json!({"command": "curtail", "parameter": format!("{id},sleep")}),
            2.0,
        );
        assert_eq!(e["STATUS"][0]["Msg"], "Invalid session id");
        assert_eq!(m.received().len(), 0);
    }

    #[test]
    fn joined_commands_and_profiles_span_the_limits() {
        let (mut fw, mut m) = lux(None);
        let j = ask(
            &mut fw,
            &mut m,
            json!({"command": "config+profiles+power"}),
            1.0,
        );
        assert_eq!(j["power"][0]["POWER"][0]["Watts"], 3010);
        let p = j["profiles"][0]["PROFILES"].as_array().unwrap();
        assert_eq!(p.first().unwrap()["Watts"], m.spec.min_limit.0 as i64);
        assert_eq!(p.last().unwrap()["Watts"], m.spec.max_limit.0 as i64);
        assert_eq!(
            j["config"][0]["CONFIG"][0]["Profile"],
            p.last().unwrap()["Profile Name"]
        );
    }
}
