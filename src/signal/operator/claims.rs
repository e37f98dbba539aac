//! JWT claims of an operator command: parse them, check them against the site, the
//! clock and the operator's limits, and turn them into an `Order`. Pure: `now` is handed
//! in. Runs only on claims whose signature has already verified; `peek` alone reads
//! unverified claims, to find the issuer and to echo the `jti` in a refusal.

use std::time::Duration;

use serde::Deserialize;

use super::error::RefusalReason;
use crate::clock::Timestamp;
use crate::signal::OperatorAction;
use crate::units::Watts;

/// Longest `jti` accepted (and echoed), in bytes.
pub const MAX_JTI_LEN: usize = 128;

/// Latest NumericDate accepted: 9999-12-31T23:59:59Z, in seconds.
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// What an accepted command asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Order {
    /// `curtail`, `setpoint` or `release`.
    Act(OperatorAction),
    /// `heartbeat`: only says the operator is there.
    Heartbeat,
}

/// Claims that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub issuer: String,
    pub jti: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub order: Order,
    /// When the order's effect ends; `None` until released.
    pub until: Option<Timestamp>,
}

/// What the checks need besides the claims.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    pub site_id: &'a str,
    /// Most `exp - iat` may be for this operator.
    pub max_lifetime: Duration,
    /// How far the operator's clock may be off ours, either way.
    pub skew: Duration,
}

/// The issuer and `jti` of claims not yet verified, where they are strings.
#[derive(Debug, Default, PartialEq)]
pub struct Peek {
    pub issuer: Option<String>,
    pub jti: Option<String>,
}

/// Reads `iss` and `jti` from unverified claims. Never fails: what cannot be read is
/// `None`. A `jti` longer than `MAX_JTI_LEN` is not echoed.
pub fn peek(payload: &[u8]) -> Peek {
    #[derive(Deserialize)]
    struct Loose {
        iss: Option<serde_json::Value>,
        jti: Option<serde_json::Value>,
    }
    let Ok(l) = serde_json::from_slice::<Loose>(payload) else {
        return Peek::default();
    };
    let text = |v: Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    };
    Peek {
        issuer: text(l.iss),
        jti: text(l.jti).filter(|j| j.len() <= MAX_JTI_LEN),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims as sent. Unknown claims are allowed (JWT libraries add their own); a
/// claim given twice or with the wrong type makes the whole token malformed.
#[derive(Deserialize)]
struct Raw {
    iss: Option<String>,
    aud: Option<Audience>,
    iat: Option<f64>,
    exp: Option<f64>,
    nbf: Option<f64>,
    jti: Option<String>,
    act: Option<String>,
    limit_w: Option<f64>,
    setpoint_w: Option<f64>,
    until: Option<f64>,
}

/// Parses and checks verified claims. The order of checks decides which reason a token
/// with several faults gets: shape, audience, time, then the action.
pub fn check(payload: &[u8], limits: &Limits<'_>, now: Timestamp) -> Result<Claims, RefusalReason> {
    use RefusalReason::*;
    let raw: Raw = serde_json::from_slice(payload).map_err(|_| Malformed)?;
    let issuer = raw.iss.ok_or(Malformed)?;
    let jti = raw
        .jti
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
        .ok_or(Malformed)?;
    let issued_at = numeric_date(raw.iat.ok_or(Malformed)?)?;
    let expires_at = numeric_date(raw.exp.ok_or(Malformed)?)?;
    let not_before = raw.nbf.map(numeric_date).transpose()?;
    let until = raw.until.map(numeric_date).transpose()?;

    let for_us = match raw.aud.ok_or(Malformed)? {
        Audience::One(a) => a == limits.site_id,
        Audience::Many(all) => all.iter().any(|a| a == limits.site_id),
    };
    if !for_us {
        return Err(WrongAudience);
    }

    if expires_at <= issued_at {
        return Err(Malformed);
    }
    if now >= expires_at + limits.skew {
        return Err(Expired);
    }
    let latest_start = now + limits.skew;
    if issued_at > latest_start || not_before.is_some_and(|n| n > latest_start) {
        return Err(NotYetValid);
    }
    // Both ends come from the operator's clock: no skew allowance here.
    if expires_at.since(issued_at) > limits.max_lifetime {
        return Err(LifetimeTooLong);
    }

    let watts = |w: Option<f64>| match w {
        Some(w) if w.is_finite() && w >= 0.0 => Ok(Watts(w)),
        _ => Err(BadAction),
    };
    let order = match (raw.act.as_deref(), raw.limit_w, raw.setpoint_w) {
        (Some("curtail"), l, None) => Order::Act(OperatorAction::CurtailTo(watts(l)?)),
        (Some("setpoint"), None, s) => Order::Act(OperatorAction::Setpoint(watts(s)?)),
        (Some("release"), None, None) => Order::Act(OperatorAction::Release),
        (Some("heartbeat"), None, None) => Order::Heartbeat,
        _ => return Err(BadAction),
    };
    match (order, until) {
        (Order::Act(OperatorAction::Release) | Order::Heartbeat, Some(_)) => return Err(BadUntil),
        (_, Some(u)) if u <= now => return Err(BadUntil),
        _ => {}
    }
    Ok(Claims {
        issuer,
        jti,
        issued_at,
        expires_at,
        order,
        until,
    })
}

/// A JWT NumericDate (seconds since the epoch, fractions allowed) as a `Timestamp`.
fn numeric_date(secs: f64) -> Result<Timestamp, RefusalReason> {
    if secs.is_finite() && (0.0..=MAX_NUMERIC_DATE).contains(&secs) {
        Ok(Timestamp((secs * 1000.0).round() as i64))
    } else {
        Err(RefusalReason::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const NOW: i64 = 1_700_000_000;

    fn limits() -> Limits<'static> {
        Limits {
            site_id: "site-a",
            max_lifetime: Duration::from_secs(60),
            skew: Duration::from_secs(5),
        }
    }

    fn base() -> Value {
        json!({"iss": "tso", "aud": "site-a", "iat": NOW, "exp": NOW + 30, "jti": "j1",
               "act": "curtail", "limit_w": 1000.0})
    }

    fn with(changes: Value) -> Vec<u8> {
        let mut v = base();
        for (k, x) in changes.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn every_action() {
        use OperatorAction::*;
        let t = |s: i64| Some(Timestamp::from_secs(s));
        let cases = [
            (json!({}), Order::Act(CurtailTo(Watts(1000.0))), None),
            (
                json!({"limit_w": 0}),
                Order::Act(CurtailTo(Watts(0.0))),
                None,
            ),
            (
                json!({"until": NOW + 600}),
                Order::Act(CurtailTo(Watts(1000.0))),
                t(NOW + 600),
            ),
            (
                json!({"act": "setpoint", "limit_w": null, "setpoint_w": 2.5e6}),
                Order::Act(Setpoint(Watts(2.5e6))),
                None,
            ),
            (
                json!({"act": "release", "limit_w": null}),
                Order::Act(Release),
                None,
            ),
            (
                json!({"act": "heartbeat", "limit_w": null}),
                Order::Heartbeat,
                None,
            ),
        ];
        for (change, order, until) in cases {
            let c = check(&with(change.clone()), &limits(), Timestamp::from_secs(NOW)).unwrap();
            assert_eq!((c.order, c.until), (order, until), "{change}");
            assert_eq!((c.issuer.as_str(), c.jti.as_str()), ("tso", "j1"));
        }
    }

    #[test]
    fn every_refusal() {
        use RefusalReason::*;
        let cases = [
            (json!({"aud": "site-b"}), WrongAudience),
            (json!({"aud": ["x", "y"]}), WrongAudience),
            (json!({"aud": null}), Malformed),
            (json!({"aud": 5}), Malformed),
            (json!({"iss": null}), Malformed),
            (json!({"iss": 7}), Malformed),
            (json!({"jti": null}), Malformed),
            (json!({"jti": ""}), Malformed),
            (json!({"jti": "x".repeat(MAX_JTI_LEN + 1)}), Malformed),
            (json!({"iat": null}), Malformed),
            (json!({"iat": "yesterday"}), Malformed),
            (json!({"exp": -1}), Malformed),
            (json!({"exp": 1e300}), Malformed),
            (json!({"exp": NOW - 1}), Malformed),
            (json!({"iat": NOW - 60, "exp": NOW - 5}), Expired),
            (json!({"iat": NOW + 10, "exp": NOW + 40}), NotYetValid),
            (json!({"nbf": NOW + 10}), NotYetValid),
            (json!({"exp": NOW + 61}), LifetimeTooLong),
            (json!({"act": null}), BadAction),
            (json!({"act": "explode"}), BadAction),
            (json!({"act": 3}), Malformed),
            (json!({"limit_w": null}), BadAction),
            (json!({"limit_w": -1}), BadAction),
            (json!({"limit_w": "5 MW"}), Malformed),
            (json!({"setpoint_w": 5}), BadAction),
            (json!({"act": "setpoint", "limit_w": null}), BadAction),
            (json!({"act": "release"}), BadAction),
            (
                json!({"act": "release", "limit_w": null, "until": NOW + 60}),
                BadUntil,
            ),
            (
                json!({"act": "heartbeat", "limit_w": null, "until": NOW + 60}),
                BadUntil,
            ),
            (json!({"until": NOW - 1}), BadUntil),
        ];
        for (change, want) in cases {
            let got = check(&with(change.clone()), &limits(), Timestamp::from_secs(NOW));
            assert_eq!(got.map(|c| c.order), Err(want), "{change}");
        }
        for bad in [
            &b"not json"[..],
            b"[]",
            b"null",
            b"{\"iss\":\"a\",\"iss\":\"b\"}",
        ] {
            assert_eq!(
                check(bad, &limits(), Timestamp::from_secs(NOW)).map(|_| ()),
                Err(Malformed)
            );
        }
    }

    #[test]
    fn skew_bounds_are_exact() {
        use RefusalReason::*;
        let ms = |s: i64, extra: i64| Timestamp(s * 1000 + extra);
        let cases = [
            // exp at NOW+30: accepted until exp + 5 s, refused from then on.
            (ms(NOW + 35, -1), Ok(())),
            (ms(NOW + 35, 0), Err(Expired)),
            // iat at NOW: accepted from iat - 5 s.
            (ms(NOW - 5, 0), Ok(())),
            (ms(NOW - 5, -1), Err(NotYetValid)),
        ];
        for (now, want) in cases {
            assert_eq!(
                check(&with(json!({})), &limits(), now).map(|_| ()),
                want,
                "{now}"
            );
        }
        // An `aud` array that names the site is fine.
        assert!(check(
            &with(json!({"aud": ["other", "site-a"]})),
            &limits(),
            ms(NOW, 0)
        )
        .is_ok());
    }

    #[test]
    fn peek_reads_what_it_can() {
        assert_eq!(
            peek(br#"{"iss":"a","jti":"b"}"#),
            Peek {
                issuer: Some("a".into()),
                jti: Some("b".into())
            }
        );
        assert_eq!(peek(br#"{"iss":1,"jti":["b"]}"#), Peek::default());
        assert_eq!(peek(b"\xff"), Peek::default());
        let long = format!(r#"{{"jti":"{}"}}"#, "x".repeat(MAX_JTI_LEN + 1));
        assert_eq!(peek(long.as_bytes()).jti, None);
    }
}
