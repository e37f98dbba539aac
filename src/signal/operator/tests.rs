//! The pipeline end to end: tokens signed here, every refusal reason through `verify`,
//! acks, counters, and random bytes and mutations that must never panic.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use serde_json::{json, Value};
use sha2::Sha256;

use super::*;
use crate::signal::operator::CommandsInForce;
use crate::signal::OperatorAction;

fn tso() -> Issuer {
    Issuer {
        id: "tso".into(),
        priority: 100,
    }
}

const NOW: i64 = 1_700_000_000;
const SECRET: &[u8] = b"an-hs256-secret-of-at-least-32-bytes!";

fn ed_signer() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn operators() -> Vec<Operator> {
    vec![
        Operator {
            id: "tso".into(),
            key: OperatorKey::Ed25519(ed_signer().verifying_key()),
            max_lifetime: DEFAULT_MAX_LIFETIME,
            priority: 100,
        },
        Operator {
            id: "agg".into(),
            key: OperatorKey::Hs256(HmacSecret::new(SECRET.to_vec()).unwrap()),
            max_lifetime: DEFAULT_MAX_LIFETIME,
            priority: 10,
        },
    ]
}

fn verifier() -> CommandVerifier {
    CommandVerifier::new("site-a", operators(), DEFAULT_SKEW)
}

fn claims(changes: Value) -> Value {
    let mut v = json!({"iss": "tso", "aud": "site-a", "iat": NOW, "exp": NOW + 30,
                       "jti": "c-1", "act": "curtail", "limit_w": 250000.0});
    for (k, x) in changes.as_object().unwrap() {
        if x.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = x.clone();
        }
    }
    v
}

enum Sign<'a> {
    Ed(&'a SigningKey),
    Hs(&'a [u8]),
    Unsigned,
}

fn token(alg: &str, claims: &Value, sign: Sign) -> String {
    let header = json!({"alg": alg, "typ": "JWT"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = match sign {
        Sign::Ed(k) => k.sign(input.as_bytes()).to_bytes().to_vec(),
        Sign::Hs(secret) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Sign::Unsigned => Vec::new(),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn ed(changes: Value) -> String {
    token("EdDSA", &claims(changes), Sign::Ed(&ed_signer()))
}

fn hs(changes: Value) -> String {
    let mut c = claims(changes);
    c["iss"] = "agg".into();
    token("HS256", &c, Sign::Hs(SECRET))
}

fn at(s: i64) -> Timestamp {
    Timestamp::from_secs(s)
}

#[test]
fn every_action_through_the_verifier() {
    use OperatorAction::*;
    let cases = [
        (ed(json!({})), Order::Act(CurtailTo(Watts(250e3))), None),
        (
            hs(json!({"act": "setpoint", "limit_w": null, "setpoint_w": 1e6, "until": NOW + 900})),
            Order::Act(Setpoint(Watts(1e6))),
            Some(at(NOW + 900)),
        ),
        (
            ed(json!({"act": "release", "limit_w": null})),
            Order::Act(Release),
            None,
        ),
        (
            hs(json!({"act": "heartbeat", "limit_w": null})),
            Order::Heartbeat,
            None,
        ),
    ];
    for (t, order, until) in cases {
        let c = verifier().verify(t.as_bytes(), at(NOW)).expect(&t);
        assert_eq!((c.order, c.until, c.jti.as_str()), (order, until, "c-1"));
    }
}

#[test]
fn every_refusal_reason_through_the_verifier() {
    use RefusalReason::*;
    let other_key = SigningKey::from_bytes(&[1; 32]);
    let pubkey = ed_signer().verifying_key().to_bytes();
    let c = claims(json!({}));
    let cases: Vec<(&str, String, RefusalReason)> = vec![
        ("too large", "x".repeat(MAX_TOKEN_BYTES + 1), TooLarge),
        ("not a JWS", "hello".into(), Malformed),
        ("no iss", ed(json!({"iss": null})), Malformed),
        ("alg none", token("none", &c, Sign::Unsigned), Unsigned),
        (
            "EdDSA, empty signature",
            token("EdDSA", &c, Sign::Unsigned),
            Unsigned,
        ),
        (
            "alg confusion",
            token("HS256", &c, Sign::Hs(&pubkey)),
            WrongAlgorithm,
        ),
        (
            "other key",
            token("EdDSA", &c, Sign::Ed(&other_key)),
            BadSignature,
        ),
        (
            "unknown operator",
            ed(json!({"iss": "mallory"})),
            UnknownOperator,
        ),
        ("other site", ed(json!({"aud": "site-b"})), WrongAudience),
        (
            "expired",
            ed(json!({"iat": NOW - 50, "exp": NOW - 20})),
            Expired,
        ),
        (
            "from the future",
            ed(json!({"iat": NOW + 60, "exp": NOW + 90})),
            NotYetValid,
        ),
        (
            "lifetime too long",
            ed(json!({"exp": NOW + 3600})),
            LifetimeTooLong,
        ),
        ("bad action", ed(json!({"act": "boil"})), BadAction),
        ("until in the past", ed(json!({"until": NOW - 1})), BadUntil),
    ];
    for (name, t, want) in cases {
        let got = verifier().verify(t.as_bytes(), at(NOW));
        assert_eq!(got.map(|_| ()).map_err(|r| r.reason), Err(want), "{name}");
    }
    // A wrong HS256 secret.
    let mut c = claims(json!({}));
    c["iss"] = "agg".into();
    let t = token(
        "HS256",
        &c,
        Sign::Hs(b"another-secret-that-is-32-bytes-long"),
    );
    assert_eq!(
        verifier().verify(t.as_bytes(), at(NOW)).unwrap_err().reason,
        BadSignature
    );

    // Replay, and a refusal that echoes the claimed jti.
    let mut v = verifier();
    let t = ed(json!({}));
    assert!(v.verify(t.as_bytes(), at(NOW)).is_ok());
    let r = v.verify(t.as_bytes(), at(NOW + 1)).unwrap_err();
    assert_eq!(
        r,
        Refusal {
            jti: Some("c-1".into()),
            reason: Replayed
        }
    );
    // The same jti from another operator is another command.
    assert!(v.verify(hs(json!({})).as_bytes(), at(NOW + 1)).is_ok());

    // A full share of the replay cache refuses rather than forgets (a curtailment is
    // never refused for capacity: see the replay cache).
    let mut v = verifier().with_replay_cache(ReplayCache::new(1));
    let heartbeat = |jti| ed(json!({"jti": jti, "act": "heartbeat", "limit_w": null}));
    assert!(v.verify(heartbeat("a").as_bytes(), at(NOW)).is_ok());
    let r = v.verify(heartbeat("b").as_bytes(), at(NOW)).unwrap_err();
    assert_eq!(r.reason, RateLimited);
    assert!(v
        .verify(ed(json!({"jti": "c"})).as_bytes(), at(NOW))
        .is_ok());
}

#[test]
fn a_refused_token_does_not_use_up_its_jti() {
    let mut v = verifier();
    let early = ed(json!({"iat": NOW + 60, "exp": NOW + 90}));
    assert_eq!(
        v.verify(early.as_bytes(), at(NOW)).unwrap_err().reason,
        RefusalReason::NotYetValid
    );
    assert!(v.verify(early.as_bytes(), at(NOW + 60)).is_ok());
}

#[test]
fn ack_json_is_exactly_the_issue_s_shape() {
    let ok = verifier().verify(ed(json!({})).as_bytes(), at(NOW));
    let ack = Ack::new(&ok, Some(Watts(250e3)), Timestamp(NOW * 1000 + 250));
    let v: Value = serde_json::from_str(&ack.to_json()).unwrap();
    assert_eq!(
        v,
        json!({"jti": "c-1", "accepted": true, "reason": null, "effective_limit_w": 250000.0,
               "at": "2023-11-14T22:13:20.250Z"})
    );
    let refused = verifier().verify(ed(json!({"aud": "x", "jti": "z"})).as_bytes(), at(NOW));
    let v: Value = serde_json::from_str(&Ack::new(&refused, None, at(NOW)).to_json()).unwrap();
    assert_eq!(
        v,
        json!({"jti": "z", "accepted": false, "reason": "wrong_audience",
               "effective_limit_w": null, "at": "2023-11-14T22:13:20Z"})
    );
    let junk = verifier().verify(b"\xff", at(NOW));
    assert_eq!(Ack::new(&junk, Some(Watts(f64::NAN)), at(NOW)).jti, None);
    assert!(Ack::new(&junk, Some(Watts(f64::NAN)), at(NOW))
        .to_json()
        .contains("\"effective_limit_w\":null"));
}

#[test]
fn an_accepted_curtail_is_an_observation_at_once_and_counted() {
    let mut ch = channel();
    let none = CommandsInForce::default();
    let r = ch.receive(ed(json!({"until": NOW + 600})).as_bytes(), at(NOW), &none);
    assert_eq!(
        r.observations,
        [Observation::Operator {
            issuer: tso(),
            action: OperatorAction::CurtailTo(Watts(250e3)),
            until: Some(at(NOW + 600)),
            at: at(NOW),
        }]
    );
    let r = ch.receive(ed(json!({})).as_bytes(), at(NOW), &none);
    assert_eq!(r.observations, []);
    ch.receive(b"garbage", at(NOW), &none);
    let counters = ch.counters();
    assert_eq!(counters.accepted(), 1);
    assert_eq!(counters.refused(RefusalReason::Replayed), 1);
    assert_eq!(counters.refused(RefusalReason::Malformed), 1);
    assert_eq!(ch.tick(at(NOW + 10_000)), None, "no heartbeat configured");
}

fn heartbeat_channel() -> OperatorCommands {
    let config = OperatorConfig {
        operators: operators(),
        heartbeat: Some(HeartbeatConfig {
            timeout: Duration::from_secs(90),
            failsafe_limit: Watts(0.0),
            operators: Some(vec!["tso".into()]),
        }),
        clock_skew: DEFAULT_SKEW,
        replay_cache: None,
    };
    OperatorCommands::new("site-a", config)
}

fn hb(t: i64, jti: &str) -> String {
    ed(json!({"act": "heartbeat", "limit_w": null, "iat": t, "exp": t + 30, "jti": jti}))
}

#[test]
fn the_channel_holds_the_failsafe_when_heartbeats_stop() {
    let mut ch = heartbeat_channel();
    let none = CommandsInForce::default();
    ch.restore(
        Record {
            last_heartbeat: Some(at(NOW)),
            ..Record::default()
        },
        at(NOW),
    );
    assert_eq!(ch.tick(at(NOW + 89)), None);
    assert_eq!(
        ch.receive(hb(NOW + 60, "h1").as_bytes(), at(NOW + 60), &none)
            .observations,
        []
    );
    assert_eq!(ch.tick(at(NOW + 149)), None);
    let failsafe = ch.tick(at(NOW + 150));
    assert_eq!(
        failsafe,
        Some(Observation::Failsafe {
            limit: Some(Watts(0.0)),
            at: at(NOW + 150)
        })
    );
    assert!(ch.failsafe_engaged());
    assert_eq!(ch.counters().failsafe_engagements(), 1);
    // A refused heartbeat does not lift it.
    ch.receive(hb(NOW + 60, "h1").as_bytes(), at(NOW + 200), &none);
    assert!(ch.failsafe_engaged());
    let r = ch.receive(hb(NOW + 200, "h2").as_bytes(), at(NOW + 200), &none);
    assert_eq!(
        r.observations,
        [Observation::Failsafe {
            limit: None,
            at: at(NOW + 200)
        }]
    );
    assert!(!ch.failsafe_engaged());
}

/// Issue 9, hole 2: a daemon that starts without a heartbeat history starts in the
/// failsafe; one restarted with its record resumes the silence clock where it was.
#[test]
fn r9_no_heartbeat_history_starts_in_the_failsafe() {
    let mut fresh = heartbeat_channel();
    assert!(matches!(
        fresh.tick(at(NOW)),
        Some(Observation::Failsafe { limit: Some(_), .. })
    ));
    let mut before = heartbeat_channel();
    before.restore(
        Record {
            last_heartbeat: Some(at(NOW)),
            ..Record::default()
        },
        at(NOW),
    );
    let none = CommandsInForce::default();
    assert!(before
        .receive(hb(NOW + 50, "h1").as_bytes(), at(NOW + 50), &none)
        .outcome
        .is_ok());
    let record = before.record(&none);
    assert_eq!(record.last_heartbeat, Some(at(NOW + 50)));
    // Restarted at +100 (then +120, +139): not yet; at +140 the 90 s have passed.
    for (restart, engaged) in [(100, false), (120, false), (139, false), (140, true)] {
        let mut after = heartbeat_channel();
        after.restore(record.clone(), at(NOW + restart));
        assert_eq!(
            after.tick(at(NOW + restart)).is_some(),
            engaged,
            "restart at +{restart}"
        );
    }
}

/// Issue 9, hole 4: an aggregator's token released the TSO's 0 W curtail, overrode it
/// with a setpoint, or replaced it with a 1e30 W "curtail" (accepted as no limit).
#[test]
fn r9_an_aggregator_cannot_lift_the_tsos_curtailment() {
    let mut ch = channel().with_max_power(Watts(2e6));
    let mut state = CommandsInForce::default();
    let send = |ch: &mut OperatorCommands, token: String, t: i64, state: &mut CommandsInForce| {
        let r = ch.receive(token.as_bytes(), at(t), state);
        for obs in &r.observations {
            if let Observation::Operator {
                issuer,
                action,
                until,
                at,
            } = obs.clone()
            {
                state.apply(issuer, action, until, at, Watts(2e6)).unwrap();
            }
        }
        reason(&r)
    };
    assert_eq!(
        send(
            &mut ch,
            ed(json!({"limit_w": 0.0, "jti": "t1"})),
            NOW,
            &mut state
        ),
        None
    );
    let release = hs(json!({"act": "release", "limit_w": null, "jti": "a1"}));
    assert_eq!(
        send(&mut ch, release, NOW, &mut state),
        Some(RefusalReason::Outranked)
    );
    // Its setpoint is taken but acts only within the TSO's cap.
    let setpoint =
        hs(json!({"act": "setpoint", "limit_w": null, "setpoint_w": 1.5e6, "jti": "a2"}));
    assert_eq!(send(&mut ch, setpoint, NOW, &mut state), None);
    assert_eq!(state.curtail_cap(at(NOW)).map(|(w, _)| w), Some(Watts(0.0)));
    // A limit beyond what the loads can draw is refused, not taken as "no limit".
    let huge = hs(json!({"limit_w": 1e30, "jti": "a3"}));
    assert_eq!(
        send(&mut ch, huge, NOW, &mut state),
        Some(RefusalReason::OutOfRange)
    );
    // The aggregator's own release ends its own setpoint, never the TSO's curtail.
    let release = hs(json!({"act": "release", "limit_w": null, "jti": "a4"}));
    assert_eq!(send(&mut ch, release, NOW, &mut state), None);
    assert_eq!(state.setpoint(at(NOW)), None);
    assert_eq!(state.curtail_cap(at(NOW)).map(|(w, _)| w), Some(Watts(0.0)));
    // The TSO's release ends it.
    let release = ed(json!({"act": "release", "limit_w": null, "jti": "t2"}));
    assert_eq!(send(&mut ch, release, NOW, &mut state), None);
    assert!(state.is_empty());
    assert_eq!(ch.counters().refused(RefusalReason::Outranked), 1);
}

/// Issue 9, hole 5: 4,096 valid heartbeats from one operator filled the shared replay
/// cache and the TSO's next curtail was refused `rate_limited`.
#[test]
fn r9_one_operators_flood_cannot_lock_out_the_tso() {
    let mut ch = channel();
    let none = CommandsInForce::default();
    for i in 0..DEFAULT_CAPACITY + 10 {
        let t = hs(json!({"act": "heartbeat", "limit_w": null, "jti": format!("h{i}")}));
        ch.receive(t.as_bytes(), at(NOW), &none);
    }
    assert_eq!(ch.counters().refused(RefusalReason::RateLimited), 10);
    let r = ch.receive(
        ed(json!({"limit_w": 0.0, "jti": "t1"})).as_bytes(),
        at(NOW),
        &none,
    );
    assert_eq!(reason(&r), None, "the TSO's curtail is taken");
}

fn channel() -> OperatorCommands {
    let config = OperatorConfig {
        operators: operators(),
        heartbeat: None,
        clock_skew: DEFAULT_SKEW,
        replay_cache: None,
    };
    OperatorCommands::new("site-a", config)
}

fn reason(r: &Received) -> Option<RefusalReason> {
    r.outcome.as_ref().err().map(|e| e.reason)
}

#[test]
fn a_restarted_channel_given_the_saved_record_still_refuses_replays() {
    let mut before = channel();
    let token = ed(json!({"jti": "c-9"}));
    assert!(before
        .receive(token.as_bytes(), at(NOW), &CommandsInForce::default())
        .outcome
        .is_ok());
    let saved = before.record(&CommandsInForce::default());
    assert_eq!(saved.entries.len(), 1);
    assert_eq!(saved.entries[0].forget_at, at(NOW + 30) + DEFAULT_SKEW);

    let mut after = channel();
    assert_eq!(after.restore(saved, at(NOW + 10)).0, 1);
    let r = after.receive(token.as_bytes(), at(NOW + 10), &CommandsInForce::default());
    assert_eq!(reason(&r), Some(RefusalReason::Replayed));
    assert_eq!(r.observations, []);
}

#[test]
fn a_lost_record_refuses_tokens_issued_before_the_restart_only() {
    let start = NOW + 10;
    let mut ch = channel();
    let (fence, hold) = ch.record_lost(at(start));
    // A curtailment may have been in force: mining is held at 0 W until released.
    assert!(matches!(
        hold,
        Observation::Operator { action: OperatorAction::CurtailTo(Watts(w)), .. } if w == 0.0
    ));
    assert_eq!(fence, at(start) + DEFAULT_SKEW);
    // Signed before the start (it may have been accepted then), or by a clock up to the
    // skew ahead of ours: either could be a replay.
    for iat in [NOW, start, start + 4] {
        let t = ed(json!({"iat": iat, "exp": iat + 30, "jti": format!("old-{iat}")}));
        let r = ch.receive(t.as_bytes(), at(start + 5), &CommandsInForce::default());
        assert_eq!(
            reason(&r),
            Some(RefusalReason::IssuedBeforeRestart),
            "iat {iat}"
        );
    }
    // Signed after the fence: accepted, and remembered as ever.
    let fresh = ed(json!({"iat": start + 5, "exp": start + 35, "jti": "new"}));
    assert!(ch
        .receive(fresh.as_bytes(), at(start + 5), &CommandsInForce::default())
        .outcome
        .is_ok());
    let r = ch.receive(fresh.as_bytes(), at(start + 6), &CommandsInForce::default());
    assert_eq!(reason(&r), Some(RefusalReason::Replayed));
    assert_eq!(ch.counters().refused(RefusalReason::IssuedBeforeRestart), 3);
    // Other faults keep their own reasons.
    let expired = ed(json!({"iat": NOW - 100, "exp": NOW - 70, "jti": "e"}));
    let r = ch.receive(
        expired.as_bytes(),
        at(start + 6),
        &CommandsInForce::default(),
    );
    assert_eq!(reason(&r), Some(RefusalReason::Expired));
}

fn valid_token() -> String {
    ed(json!({"until": NOW + 600}))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_refused_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let r = verifier().verify(&bytes, at(NOW));
        prop_assert!(r.is_err());
    }

    #[test]
    fn random_jws_shaped_text_is_refused(parts in proptest::collection::vec("[A-Za-z0-9_=+/-]{0,80}", 0..5)) {
        let t = parts.join(".");
        prop_assert!(verifier().verify(t.as_bytes(), at(NOW)).is_err());
    }

    /// Flip, insert or delete bytes of a valid token: anything but the untouched token
    /// must be refused (a change to the signature's last character may decode to the
    /// same bytes only if base64 allowed non-canonical padding bits, which it must not).
    #[test]
    fn mutations_of_a_valid_token_are_refused(
        edits in proptest::collection::vec((0usize..400, any::<u8>(), 0u8..3), 1..4)
    ) {
        let mut t = valid_token().into_bytes();
        for (pos, byte, kind) in edits {
            let i = pos % (t.len() + 1);
            match kind {
                0 if i < t.len() => t[i] ^= byte | 1,
                1 => t.insert(i, byte),
                _ if i < t.len() => { t.remove(i); }
                _ => t.push(byte),
            }
        }
        let trimmed = t.trim_ascii();
        prop_assume!(trimmed != valid_token().as_bytes());
        prop_assert!(verifier().verify(&t, at(NOW)).is_err());
    }

    /// Signed tokens with arbitrary claims JSON: refused or accepted, never a panic, and
    /// accepted only with every required claim in place.
    #[test]
    fn signed_arbitrary_claims_never_panic(
        act in prop_oneof![Just("curtail".to_string()), Just("setpoint".to_string()), Just("release".to_string()), Just("heartbeat".to_string()), "[a-z]{0,8}"],
        limit in proptest::option::of(-1e12f64..1e12),
        iat in -100i64..100,
        life in -10i64..120,
        until in proptest::option::of(-100i64..10_000),
        aud in prop_oneof![Just(json!("site-a")), Just(json!(["site-a"])), Just(json!(5)), Just(json!(null))],
    ) {
        let mut c = json!({"iss": "tso", "aud": aud, "iat": NOW + iat, "exp": NOW + iat + life,
                           "jti": "p", "act": act});
        if let Some(l) = limit { c["limit_w"] = l.into(); }
        if let Some(u) = until { c["until"] = (NOW + u).into(); }
        let t = token("EdDSA", &c, Sign::Ed(&ed_signer()));
        if let Ok(cmd) = verifier().verify(t.as_bytes(), at(NOW)) {
            prop_assert!(life > 0 && life <= 60);
            if let Order::Act(OperatorAction::CurtailTo(w)) = cmd.order {
                prop_assert!(w.0 >= 0.0);
            }
        }
    }
}
