//! The firmware side against a client computed here from the md5crypt and AES crates
//! directly, as asic-rs and pyasic do it (the integration tests run the real clients).

use std::net::Ipv4Addr;

use super::*;
use crate::emulator::model::{self, Dynamics, Phase};

const UNIX: i64 = 1_764_000_123;

fn miner(fault: Option<Fault>) -> (Firmware, Miner) {
    let spec = model::model("M30S+").expect("a model");
    let id = Identity {
        index: 3,
        addr: Ipv4Addr::new(127, 2, 0, 4),
    };
    (
        Firmware::new(id, "admin", fault),
        Miner::new(
            spec,
            Dynamics {
                ripple: 0.0,
                ..Dynamics::default()
            },
            fault,
        ),
    )
}

fn ask(fw: &mut Firmware, m: &mut Miner, req: &str, t: f64) -> Value {
    match fw.answer(m, req.as_bytes(), Duration::from_secs_f64(t), UNIX) {
        Answer::Reply(s) => serde_json::from_str(&s).expect("the answer is JSON"),
        Answer::Drop => Value::Null,
    }
}

/// What a client does: token, key, sign, the encrypted request; the decrypted answer
/// (or the plain one, when the miner could not encrypt).
fn privileged(fw: &mut Firmware, m: &mut Miner, password: &str, cmd: Value, t: f64) -> Value {
    let tok = ask(fw, m, r#"{"command":"get_token"}"#, t);
    let msg = &tok["Msg"];
    let (salt, newsalt, time) = (
        msg["salt"].as_str().unwrap(),
        msg["newsalt"].as_str().unwrap(),
        msg["time"].as_str().unwrap(),
    );
    let pwd = String::from_utf8(md5crypt::md5crypt(password.as_bytes(), salt.as_bytes())).unwrap();
    let pwd = pwd.split('$').nth(3).unwrap().to_string();
    let sign = String::from_utf8(md5crypt::md5crypt(
        format!("{pwd}{time}").as_bytes(),
        newsalt.as_bytes(),
    ))
    .unwrap();
    let mut cmd = cmd;
    cmd["token"] = json!(sign.split('$').nth(3).unwrap());
    let key = crypto::aes_key(&pwd);
    let req = json!({"enc": 1, "data": crypto::encrypt(&key, &cmd.to_string())});
    let answer = ask(fw, m, &req.to_string(), t);
    match answer.get("enc").and_then(Value::as_str) {
        Some(enc) => {
            let plain = crypto::decrypt(&key, enc).expect("an answer under our key");
            serde_json::from_slice(&plain).unwrap()
        }
        None => answer,
    }
}

#[test]
fn detection_answers_name_the_firmware_and_the_model() {
    let (mut fw, mut m) = miner(None);
    let d = ask(&mut fw, &mut m, r#"{"command":"devdetails"}"#, 1.0);
    assert_eq!(d["DEVDETAILS"][0]["Model"], "M30S+_VE40");
    assert!(d.to_string().to_uppercase().contains("BITMICRO"));
    let v = ask(&mut fw, &mut m, r#"{"command":"version"}"#, 1.0);
    assert!(v.to_string().to_uppercase().contains("BTMINER"));
    let g = ask(&mut fw, &mut m, "{\"command\":\"get_version\"}\n", 1.0);
    assert_eq!(g["Msg"]["fw_ver"], FIRMWARE_VERSION);
}

#[test]
fn joined_commands_answer_each_part_cgminer_style() {
    let (mut fw, mut m) = miner(None);
    let j = ask(&mut fw, &mut m, r#"{"command":"summary+devs+pools"}"#, 1.0);
    assert_eq!(j["summary"][0]["SUMMARY"][0]["Power"], 3400);
    assert_eq!(j["devs"][0]["DEVS"].as_array().map(Vec::len), Some(3));
    assert_eq!(j["pools"][0]["POOLS"][0]["Status"], "Alive");
}

#[test]
fn bad_requests_get_the_firmware_errors() {
    let (mut fw, mut m) = miner(None);
    let e = ask(&mut fw, &mut m, "{not json", 1.0);
    assert_eq!(
        (e["STATUS"].as_str(), e["Code"].as_u64()),
        (Some("E"), Some(23))
    );
    let e = ask(&mut fw, &mut m, r#"{"command":"make_coffee"}"#, 1.0);
    assert_eq!(
        (e["Msg"].as_str(), e["Code"].as_u64()),
        (Some("invalid cmd"), Some(14))
    );
    let e = ask(&mut fw, &mut m, r#"{"command":"power_off"}"#, 1.0);
    assert_eq!(e["Code"], 45);
    assert_eq!(m.reading(Duration::from_secs(60)).phase, Phase::Mining);
    let e = ask(&mut fw, &mut m, r#"{"enc":1,"data":"AAAA"}"#, 1.0);
    assert_eq!(e["Msg"], "check token err");
}

#[test]
fn a_privileged_command_with_the_password_acts_and_answers_encrypted() {
    let (mut fw, mut m) = miner(None);
    let ok = privileged(
        &mut fw,
        &mut m,
        "admin",
        json!({"cmd": "power_off", "respbefore": "true"}),
        1.0,
    );
    assert_eq!(ok["Msg"], "API command OK");
    assert!(m.reading(Duration::from_secs(2)).mineroff);
    // asic-rs spells it `command`, with the limit as a string.
    let ok = privileged(
        &mut fw,
        &mut m,
        "admin",
        json!({"command": "adjust_power_limit", "power_limit": "2500"}),
        3.0,
    );
    assert_eq!(ok["STATUS"], "S");
    assert_eq!(m.limit(), Watts(2500.0));
    let bad = privileged(
        &mut fw,
        &mut m,
        "admin",
        json!({"cmd": "adjust_power_limit", "power_limit": "99999"}),
        4.0,
    );
    assert_eq!(
        (bad["STATUS"].as_str(), bad["Code"].as_u64()),
        (Some("E"), Some(132))
    );
    let unknown = privileged(&mut fw, &mut m, "admin", json!({"cmd": "make_coffee"}), 5.0);
    assert_eq!(unknown["Msg"], "invalid cmd");
    assert_eq!(m.received().len(), 3);
}

#[test]
fn power_off_without_respbefore_never_answers() {
    let (mut fw, mut m) = miner(None);
    let none = privileged(
        &mut fw,
        &mut m,
        "admin",
        json!({"cmd": "power_off", "respbefore": "false"}),
        1.0,
    );
    assert_eq!(none, Value::Null);
    assert!(m.reading(Duration::from_secs(2)).mineroff);
}

#[test]
fn r11_wrong_password_and_refuses_auth_are_refused_and_change_nothing() {
    let (mut fw, mut m) = miner(None);
    let e = privileged(&mut fw, &mut m, "root", json!({"cmd": "power_off"}), 1.0);
    assert_eq!(e["Msg"], "check token err");
    let (mut fw, mut m) = miner(Some(Fault::RefusesAuth));
    let e = privileged(&mut fw, &mut m, "admin", json!({"cmd": "power_off"}), 1.0);
    assert_eq!(
        (e["STATUS"].as_str(), e["Code"].as_u64()),
        (Some("E"), Some(135))
    );
    assert!(!m.reading(Duration::from_secs(30)).mineroff);
    assert_eq!(m.received().len(), 0);
}

#[test]
fn tokens_expire() {
    let (mut fw, mut m) = miner(None);
    // Take a token, then use it after its lifetime: build the request by hand.
    let ttl = m.dynamics.token_ttl.as_secs_f64();
    let tok = ask(&mut fw, &mut m, r#"{"command":"get_token"}"#, 0.0);
    let msg = &tok["Msg"];
    let pwd = crypto::md5crypt_hash("admin", msg["salt"].as_str().unwrap());
    let sign = crypto::md5crypt_hash(
        &format!("{pwd}{}", msg["time"].as_str().unwrap()),
        msg["newsalt"].as_str().unwrap(),
    );
    let key = crypto::aes_key(&pwd);
    let cmd = json!({"cmd": "power_off", "token": sign}).to_string();
    let req = json!({"enc": 1, "data": crypto::encrypt(&key, &cmd)}).to_string();
    let fresh = ask(&mut fw, &mut m, &req, ttl - 1.0);
    assert!(fresh.get("enc").is_some(), "{fresh}");
    let stale = ask(&mut fw, &mut m, &req, ttl + 1.0);
    assert_eq!(stale["Msg"], "check token err");
}
