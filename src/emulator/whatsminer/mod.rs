//! btminer's API v2, the firmware side: one request in, one answer out (then the server
//! closes, as cgminer does), computed from the miner's state at `t`.
//!
//! Read from the clients (asic-rs `asic-rs-firmwares-whatsminer` v2 backend and its
//! recorded replies, pyasic `rpc/btminer.py`, `miners/backends/btminer.py` and
//! `miners/factory.py`) and the vendor's "WhatsMiner API V2" document as pyasic
//! describes it. Read commands are `{"command": "summary"}` (or joined, `summary+devs+
//! pools`, answered cgminer-style as `{"summary": [..], "devs": [..], ..}`); privileged
//! ones arrive as `{"enc": 1, "data": base64(aes(json))}` with the command under `cmd`
//! (pyasic) or `command` (asic-rs) and a `token` from `get_token` (see [`crypto`]).

pub mod crypto;
mod replies;

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{json, Value};

use super::firmware::{Answer, Identity};
use super::model::{Command, Fault, Miner, Outcome, PowerMode};
use crate::units::Watts;

/// The firmware's answer codes and messages (vendor document: 14 invalid command, 23
/// invalid JSON, 45 permission denied, 131 command OK, 132 command error, 134 token OK,
/// 135 token check failed).
mod code {
    pub const INVALID_CMD: (u32, &str) = (14, "invalid cmd");
    pub const INVALID_JSON: (u32, &str) = (23, "invalid json message");
    pub const PERMISSION_DENIED: (u32, &str) = (45, "permission denied");
    pub const OK: (u32, &str) = (131, "API command OK");
    pub const COMMAND_ERROR: u32 = 132;
    pub const TOKEN: u32 = 134;
    pub const CHECK_TOKEN: (u32, &str) = (135, "check token err");
}

/// What the firmware version says (`get_version` fw_ver): a v2 date (asic-rs takes
/// 2022-07-29 up to 2024-11 as v2; pyasic anything up to 2024-11-00).
pub const FIRMWARE_VERSION: &str = "20230911.12.Rel";
pub const API_VERSION: &str = "2.0.5";

/// Tokens kept at once; a new one beyond this pushes out the oldest. asic-rs takes a new
/// token for every privileged command, so a real limit would be hit within minutes.
const MAX_TOKENS: usize = 32;

/// Requests that name these go through the token check; sent in the clear they are
/// refused (permission denied).
const PRIVILEGED: &[&str] = &[
    "power_off",
    "power_on",
    "adjust_power_limit",
    "set_low_power",
    "set_normal_power",
    "set_high_power",
    "update_pools",
    "restart_btminer",
    "reboot",
    "set_led",
    "update_pwd",
    "set_target_freq",
    "enable_btminer_fast_boot",
    "disable_btminer_fast_boot",
    "set_power_pct",
    "pre_power_on",
];

struct Token {
    sign: String,
    issued: Duration,
}

/// One miner's btminer: its password hash, tokens and identity.
pub struct Firmware {
    identity: Identity,
    salt: String,
    passwd_md5: String,
    key: [u8; 32],
    tokens: VecDeque<Token>,
    rng: u64,
}

impl Firmware {
    /// `password` is what the miner's owner set; a `refuses-auth` miner has another
    /// one, so every client key and sign is wrong, as with a changed password.
    pub fn new(identity: Identity, password: &str, fault: Option<Fault>) -> Firmware {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (identity.index as u64).wrapping_mul(0x2545_f491);
        let salt = salt8(&mut rng);
        let actual = if fault == Some(Fault::RefusesAuth) {
            format!("{password}, changed by the owner")
        } else {
            password.to_string()
        };
        let passwd_md5 = crypto::md5crypt_hash(&actual, &salt);
        Firmware {
            key: crypto::aes_key(&passwd_md5),
            identity,
            salt,
            passwd_md5,
            tokens: VecDeque::new(),
            rng,
        }
    }

    /// Answers one request at `t` (since the fleet started), `unix` being the wall-clock
    /// second it reports as `When`.
    pub fn answer(&mut self, miner: &mut Miner, request: &[u8], t: Duration, unix: i64) -> Answer {
        let Ok(req) = serde_json::from_slice::<Value>(trim(request)) else {
            return Answer::Reply(status(unix, "E", code::INVALID_JSON).to_string());
        };
        if req.get("enc").is_some() {
            return self.privileged(miner, &req, t, unix);
        }
        let Some(command) = req.get("command").and_then(Value::as_str) else {
            return Answer::Reply(status(unix, "E", code::INVALID_CMD).to_string());
        };
        if command.contains('+') {
            let mut joined = serde_json::Map::new();
            for part in command.split('+') {
                joined.insert(part.to_string(), json!([self.read(miner, part, t, unix)]));
            }
            joined.insert("id".into(), json!(1));
            return Answer::Reply(Value::Object(joined).to_string());
        }
        Answer::Reply(self.read(miner, command, t, unix).to_string())
    }

    /// A command sent in the clear.
    fn read(&mut self, miner: &Miner, command: &str, t: Duration, unix: i64) -> Value {
        let r = miner.reading(t);
        let ctx = replies::Context {
            miner,
            reading: &r,
            identity: &self.identity,
            unix,
        };
        match command {
            "get_token" => self.token(t, unix),
            "version" => replies::version(&ctx),
            "devdetails" => replies::devdetails(&ctx),
            "get_version" => replies::get_version(&ctx),
            "summary" => replies::summary(&ctx),
            "devs" | "edevs" => replies::devs(&ctx),
            "pools" => replies::pools(&ctx),
            "status" => replies::status(&ctx),
            "get_psu" => replies::get_psu(&ctx),
            "get_miner_info" => replies::get_miner_info(&ctx),
            "get_error_code" => replies::get_error_code(&ctx),
            c if PRIVILEGED.contains(&c) => status(unix, "E", code::PERMISSION_DENIED),
            _ => status(unix, "E", code::INVALID_CMD),
        }
    }

    fn token(&mut self, t: Duration, unix: i64) -> Value {
        let time = format!("{:04}", unix.rem_euclid(10_000));
        let newsalt = salt8(&mut self.rng);
        let sign = crypto::md5crypt_hash(&format!("{}{time}", self.passwd_md5), &newsalt);
        self.tokens.push_back(Token { sign, issued: t });
        while self.tokens.len() > MAX_TOKENS {
            self.tokens.pop_front();
        }
        json!({
            "STATUS": "S", "When": unix, "Code": code::TOKEN,
            "Msg": {"time": time, "salt": self.salt, "newsalt": newsalt},
            "Description": "",
        })
    }

    fn token_valid(&mut self, sign: &str, t: Duration, ttl: Duration) -> bool {
        self.tokens.retain(|k| t.saturating_sub(k.issued) < ttl);
        self.tokens.iter().any(|k| k.sign == sign)
    }

    fn privileged(&mut self, miner: &mut Miner, req: &Value, t: Duration, unix: i64) -> Answer {
        let refused = || Answer::Reply(status(unix, "E", code::CHECK_TOKEN).to_string());
        let Some(data) = req.get("data").and_then(Value::as_str) else {
            return refused();
        };
        let Some(plain) = crypto::decrypt(&self.key, data) else {
            return refused();
        };
        let Ok(inner) = serde_json::from_slice::<Value>(trim(&plain)) else {
            return refused();
        };
        let sign = inner.get("token").and_then(Value::as_str).unwrap_or("");
        if !self.token_valid(sign, t, miner.dynamics.token_ttl) {
            return refused();
        }
        let name = inner
            .get("cmd")
            .or_else(|| inner.get("command"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let command = match name {
            "power_off" => Some(Command::PowerOff),
            "power_on" => Some(Command::PowerOn),
            "set_low_power" => Some(Command::PowerMode(PowerMode::Low)),
            "set_normal_power" => Some(Command::PowerMode(PowerMode::Normal)),
            "set_high_power" => Some(Command::PowerMode(PowerMode::High)),
            "adjust_power_limit" => match watts(inner.get("power_limit")) {
                Some(w) => Some(Command::PowerLimit(w)),
                None => {
                    let msg = "power_limit missing or not a number";
                    return self.sealed(&status(unix, "E", (code::COMMAND_ERROR, msg)));
                }
            },
            _ => None,
        };
        let Some(command) = command else {
            return self.sealed(&status(unix, "E", code::INVALID_CMD));
        };
        let outcome = miner.apply(t, command);
        // `respbefore: "false"`: the miner powers off first and never answers.
        let respond_before = inner
            .get("respbefore")
            .map(|v| v.as_str() != Some("false") && v.as_bool() != Some(false))
            .unwrap_or(true);
        if command == Command::PowerOff && !respond_before {
            return Answer::Drop;
        }
        match outcome {
            Outcome::Applied | Outcome::Ignored => self.sealed(&status(unix, "S", code::OK)),
            Outcome::Refused(msg) => {
                self.sealed(&status(unix, "E", (code::COMMAND_ERROR, msg.as_str())))
            }
        }
    }

    /// An answer to a privileged command, encrypted under the password's key.
    fn sealed(&self, answer: &Value) -> Answer {
        Answer::Reply(json!({"enc": crypto::encrypt(&self.key, &answer.to_string())}).to_string())
    }
}

/// A power limit as clients send it: a string of watts (both clients) or a number.
fn watts(v: Option<&Value>) -> Option<Watts> {
    let w = match v? {
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        Value::Number(n) => n.as_f64()?,
        _ => return None,
    };
    w.is_finite().then_some(Watts(w))
}

/// A btminer status object (the flat form btminer's own commands answer with).
fn status(unix: i64, s: &str, (code, msg): (u32, &str)) -> Value {
    json!({"STATUS": s, "When": unix, "Code": code, "Msg": msg, "Description": ""})
}

/// The request without the terminators clients may add (`\0`, newline).
fn trim(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !matches!(c, 0 | b'\n' | b'\r' | b' '))
        .map_or(0, |i| i + 1);
    &b[..end]
}

/// Eight salt characters from md5crypt's alphabet.
fn salt8(rng: &mut u64) -> String {
    const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    super::firmware::random_chars(rng, ALPHABET, 8)
}

#[cfg(test)]
mod tests;
