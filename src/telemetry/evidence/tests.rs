//! Issue 11: the evidence book, pure: triggers, sample timing, supersession, verdicts,
//! the file and what is printed.

use std::time::Duration;

use super::file::EventsFile;
use super::*;
use crate::actuator::status::Operation;
use crate::actuator::{ActuatorError, Commanded};
use crate::decision::LoadTarget;
use crate::signal::{Issuer, OperatorAction};
use crate::state::Reading;

const T: i64 = 1_750_000_000_000;

fn at(ms: i64) -> Timestamp {
    Timestamp(T + ms)
}

fn target(w: f64) -> LoadTarget {
    LoadTarget {
        units_on: u32::from(w > 0.0),
        power: Watts(w),
    }
}

fn decision(reason: Reason, limit: Option<f64>, w: f64, ms: i64) -> Decision {
    Decision {
        at: at(ms),
        loads: vec![target(w)],
        reason,
        limit: limit.map(Watts),
        held_on: 0,
        blocked_starts: 0,
        memory: Default::default(),
    }
}

/// A 10 W load with read-back (or without), told 10 W long ago and drawing it.
fn mining(readback: bool) -> LoadStatus {
    let mut s = LoadStatus::new(Watts(10.0), readback);
    s.sending(target(10.0), at(-60_000));
    s.commanded(Commanded {
        target: target(10.0),
        at: at(-60_000),
    });
    s.observed(Reading {
        value: Watts(10.0),
        at: at(-100),
    });
    s
}

/// The follower's part: `OFF` sent at `sent`, acknowledged at `acked`.
fn shed(s: &mut LoadStatus, sent: i64, acked: i64) {
    s.sending(LoadTarget::OFF, at(sent));
    s.commanded(Commanded {
        target: LoadTarget::OFF,
        at: at(acked),
    });
}

fn reads(s: &mut LoadStatus, w: f64, ms: i64) {
    s.observed(Reading {
        value: Watts(w),
        at: at(ms),
    });
}

fn view<'a>(s: &'a LoadStatus, since: Timestamp) -> Vec<LoadView<'a>> {
    vec![LoadView {
        name: "cpu",
        status: s,
        timings: UnitTiming::of_load("cpu", s, since).into_iter().collect(),
    }]
}

fn state_at(hz: f64) -> SiteState {
    let mut state = SiteState::new(&[]);
    state.frequency = Some(Reading {
        value: Hertz(hz),
        at: at(0),
    });
    state
}

/// r11: a record opens when the reason turns `under_frequency` or `operator_curtail` from
/// something else, or a curtailment tightens; staying in the same reason, loosening, or
/// any other reason opens none. A curtailment is named by its operator's latest `jti`.
#[test]
fn r11_triggers_are_the_reasons_turning_and_a_curtail_tightening() {
    let mut book = Evidence::new("s1");
    let s = mining(true);
    let v = view(&s, at(0));
    let mut state = state_at(49.7);
    let tso = Issuer {
        id: "tso".into(),
        priority: 10,
    };
    book.accepted("tso", "c-1");
    book.accepted("other", "x-9");
    book.accepted("tso", "c-2");
    state
        .commands
        .apply(
            tso,
            OperatorAction::CurtailTo(Watts(5.0)),
            None,
            at(0),
            Watts(10.0),
        )
        .unwrap();
    use Reason::*;
    let steps: [(Reason, Option<f64>, Option<TriggerKind>); 11] = [
        (Surplus, None, None),
        (UnderFrequency, Some(0.0), Some(TriggerKind::UnderFrequency)),
        (UnderFrequency, Some(0.0), None),
        (Surplus, None, None),
        (
            OperatorCurtail,
            Some(5.0),
            Some(TriggerKind::OperatorCurtail),
        ),
        (OperatorCurtail, Some(5.0), None),
        (
            OperatorCurtail,
            Some(2.0),
            Some(TriggerKind::OperatorCurtail),
        ),
        (OperatorCurtail, Some(4.0), None),
        (OverFrequency, None, None),
        (Failsafe, Some(0.0), None),
        (
            OperatorCurtail,
            Some(4.0),
            Some(TriggerKind::OperatorCurtail),
        ),
    ];
    let mut opened = 0;
    for (i, (reason, limit, expect)) in steps.into_iter().enumerate() {
        let d = decision(reason, limit, 0.0, i as i64 * 100);
        let got = book.decided(&d, &state, &v);
        assert_eq!(got.opened, expect, "step {i}: {}", reason.as_str());
        // Each record after the first closes the one before it.
        assert_eq!(
            got.superseded.is_some(),
            expect.is_some() && opened > 0,
            "step {i}"
        );
        opened += usize::from(expect.is_some());
        if let Some(kind) = expect {
            let r = &book.records()[0];
            assert_eq!(r.trigger.kind, kind);
            assert_eq!(r.trigger.at, at(i as i64 * 100));
            assert_eq!(r.cap, limit.map(Watts));
            assert_eq!(r.mining_before, Some(Watts(10.0)));
            match kind {
                TriggerKind::UnderFrequency => {
                    assert_eq!(r.trigger.frequency, Some(Hertz(49.7)));
                    assert_eq!(r.trigger.jti, None);
                }
                TriggerKind::OperatorCurtail => {
                    assert_eq!(r.trigger.frequency, None);
                    assert_eq!(r.trigger.operator.as_deref(), Some("tso"));
                    assert_eq!(r.trigger.jti.as_deref(), Some("c-2"));
                }
            }
        }
    }
    let records = book.records();
    assert_eq!(records.len(), opened, "the open one and every closed one");
    assert!(records[0].closed.is_none());
    assert!(records[1..]
        .iter()
        .all(|r| r.closed.map(|c| c.why) == Some(Closure::Superseded)));
}

/// r11: samples are due at each offset from the trigger, each takes the loads as they are
/// then with every reading's age (one measured before the trigger is marked so); after the
/// last the record is final, with the command's sent, acked and confirmed times and the
/// verdicts against the 0.25 s window.
#[test]
fn r11_samples_at_each_offset_then_final() {
    let mut book = Evidence::new("s1");
    let mut s = mining(true);
    assert_eq!(book.next_due(), None);
    let d = decision(Reason::UnderFrequency, Some(0.0), 0.0, 0);
    let opened = book.decided(&d, &state_at(49.7), &view(&s, at(0)));
    assert_eq!(opened.opened, Some(TriggerKind::UnderFrequency));
    let r = &book.records()[0];
    assert!(r.loads[0].command_due);
    assert_eq!(r.response.commands, Verdict::Pending);
    assert_eq!(book.next_due(), Some(OFFSETS[0]));

    shed(&mut s, 1, 3);
    // At 250 ms the last reading is still the one from before the trigger.
    assert_eq!(book.sample(at(250), &view(&s, at(0))), None);
    let r = &book.records()[0];
    let first = &r.samples[0];
    assert_eq!(first.offset, Duration::from_millis(250));
    assert_eq!(first.mining, Some(Watts(10.0)));
    assert_eq!(first.oldest_age, Some(Duration::from_millis(350)));
    assert!(!first.loads[0].after_trigger && !first.all_after_trigger);
    assert_eq!(r.response.commands, Verdict::Met);
    assert_eq!(r.response.last_acked, Some(Duration::from_millis(3)));
    assert_eq!(
        r.response.drop,
        Verdict::Missed,
        "unconfirmed when the window closed"
    );

    reads(&mut s, 0.0, 400);
    let mut done = None;
    for (i, o) in OFFSETS.iter().enumerate().skip(1) {
        assert_eq!(book.next_due(), Some(*o));
        let now = at(o.as_millis() as i64 + 2);
        done = book.sample(now, &view(&s, at(0)));
        assert_eq!(
            done.is_some(),
            i == OFFSETS.len() - 1,
            "final after the last"
        );
    }
    let r = done.unwrap();
    assert_eq!(book.next_due(), None);
    assert_eq!(r.closed.map(|c| c.why), Some(Closure::Complete));
    let offsets: Vec<Duration> = r.samples.iter().map(|s| s.offset).collect();
    assert_eq!(offsets, OFFSETS);
    let one = &r.samples[1];
    assert_eq!(one.mining, Some(Watts(0.0)));
    assert!(one.all_after_trigger);
    assert_eq!(one.at, at(1002), "stamped when taken, not when due");
    let u = &r.loads[0].units[0];
    assert_eq!(
        (
            u.unit.as_str(),
            u.command.as_str(),
            u.sent,
            u.acked,
            u.confirmed
        ),
        ("cpu", "0 W", at(1), Some(at(3)), Some(at(400)))
    );
    assert_eq!(r.response.last_confirmed, Some(Duration::from_millis(400)));
    assert_eq!(r.response.drop, Verdict::Missed);
    assert_eq!(book.records()[0], r, "kept for the state");
}

/// r11: a newer trigger closes the open record early, saying so, with the samples it
/// took and none of the rest; the daemon stopping closes it as `shutdown`.
#[test]
fn r11_a_newer_trigger_supersedes_the_open_record() {
    let mut book = Evidence::new("s1");
    let mut s = mining(true);
    let state = state_at(49.7);
    book.decided(
        &decision(Reason::UnderFrequency, Some(0.0), 0.0, 0),
        &state,
        &view(&s, at(0)),
    );
    shed(&mut s, 1, 2);
    reads(&mut s, 0.0, 100);
    book.sample(at(250), &view(&s, at(0)));
    book.sample(at(1000), &view(&s, at(0)));
    book.decided(
        &decision(Reason::Idle, None, 0.0, 1500),
        &state,
        &view(&s, at(0)),
    );
    let again = book.decided(
        &decision(Reason::UnderFrequency, Some(0.0), 0.0, 2000),
        &state,
        &view(&s, at(0)),
    );
    let old = again.superseded.expect("the first record, closed");
    assert_eq!(
        old.closed,
        Some(Closed {
            at: at(2000),
            why: Closure::Superseded
        })
    );
    assert_eq!(old.samples.len(), 2);
    assert_eq!(
        (old.response.commands, old.response.drop),
        (Verdict::Met, Verdict::Met)
    );
    // The new one starts over: nothing due to be told (the load is off already).
    assert_eq!(book.next_due(), Some(OFFSETS[0]));
    let new = &book.records()[0];
    assert!(!new.loads[0].command_due);
    assert_eq!(new.response.commands, Verdict::NoCommand);
    let closed = book.close(at(2100), Closure::Shutdown, &view(&s, at(2000)));
    assert_eq!(closed.unwrap().closed.unwrap().why, Closure::Shutdown);
    assert_eq!(book.next_due(), None);
    assert_eq!(book.close(at(2200), Closure::Shutdown, &[]), None);
}

/// r11: what each verdict means: a late acknowledgement or a failed write misses the
/// window; a load without read-back cannot show its drop (`unknown`, not `met`); a load
/// that had to be told but shows no command by the window's end missed it.
#[test]
fn r11_verdicts_say_what_the_timings_show() {
    let state = state_at(49.7);
    let open = |s: &LoadStatus| {
        let mut book = Evidence::new("s1");
        book.decided(
            &decision(Reason::UnderFrequency, Some(0.0), 0.0, 0),
            &state,
            &view(s, at(0)),
        );
        book
    };
    let verdicts = |book: &Evidence| {
        let r = &book.records()[0];
        (r.response.commands, r.response.drop)
    };

    // Acknowledged after 300 ms, confirmed at once: both missed.
    let mut s = mining(true);
    let mut book = open(&s);
    shed(&mut s, 1, 300);
    reads(&mut s, 0.0, 300);
    book.sample(at(300), &view(&s, at(0)));
    assert_eq!(verdicts(&book), (Verdict::Missed, Verdict::Missed));

    // Without read-back: commands met, the drop unknown (only a setpoint stands in).
    let mut s = mining(false);
    let mut book = open(&s);
    shed(&mut s, 1, 2);
    book.sample(at(250), &view(&s, at(0)));
    assert_eq!(verdicts(&book), (Verdict::Met, Verdict::Unknown));
    let r = &book.records()[0];
    assert!(r.samples[0].loads[0].estimated && !r.samples[0].all_after_trigger);
    assert_eq!(r.response.last_confirmed, None);

    // The write failed: its error is the unit's, both missed.
    let mut s = mining(true);
    let mut book = open(&s);
    s.sending(LoadTarget::OFF, at(1));
    s.failed(
        Operation::Set,
        ActuatorError::Transport("no broker".into()),
        at(5),
    );
    book.sample(at(250), &view(&s, at(0)));
    let r = &book.records()[0];
    assert_eq!(
        r.loads[0].units[0].error.as_deref(),
        Some("set: transport: no broker")
    );
    assert_eq!(verdicts(&book), (Verdict::Missed, Verdict::Missed));
    // Its retry got through: the error goes, the late ack stands as a miss.
    shed(&mut s, 600, 601);
    book.sample(at(1000), &view(&s, at(0)));
    let r = &book.records()[0];
    let u = &r.loads[0].units[0];
    assert_eq!(
        (u.sent, u.acked, u.error.as_ref()),
        (at(1), Some(at(601)), None)
    );
    assert_eq!(r.response.commands, Verdict::Missed);

    // Nothing sent at all by the end of the window.
    let s = mining(true);
    let mut book = open(&s);
    book.sample(at(250), &view(&s, at(0)));
    assert_eq!(verdicts(&book), (Verdict::Missed, Verdict::Missed));

    // A later decision's command to the same unit is not this event's.
    let mut s = mining(true);
    let mut book = open(&s);
    shed(&mut s, 1, 2);
    book.sample(at(250), &view(&s, at(0)));
    s.sending(target(10.0), at(800));
    book.sample(at(1000), &view(&s, at(0)));
    let units = &book.records()[0].loads[0].units;
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].command, "0 W");
}

fn complete_record() -> Record {
    let mut book = Evidence::new("s1");
    let mut s = mining(true);
    book.accepted("tso", "c-7");
    let mut state = state_at(50.0);
    let tso = Issuer {
        id: "tso".into(),
        priority: 1,
    };
    state
        .commands
        .apply(
            tso,
            OperatorAction::CurtailTo(Watts(0.0)),
            None,
            at(0),
            Watts(10.0),
        )
        .unwrap();
    book.decided(
        &decision(Reason::OperatorCurtail, Some(0.0), 0.0, 0),
        &state,
        &view(&s, at(0)),
    );
    shed(&mut s, 1, 2);
    reads(&mut s, 0.0, 120);
    let mut last = None;
    for o in OFFSETS {
        last = book.sample(at(o.as_millis() as i64), &view(&s, at(0)));
    }
    last.unwrap()
}

/// r11: the events file keeps every record as one line (what is read back is what was
/// written), stays within its bound by compacting to the newest, keeps and reports a
/// line that is not a record rather than losing it or the rest, and after a torn last
/// line (a power cut mid-append) starts the next record on a line of its own.
#[test]
fn r11_the_events_file_round_trips_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let r = complete_record();
    let line = serde_json::to_string(&r).unwrap().len() as u64 + 1;
    let file = EventsFile::new(dir.path().join("sub/events.jsonl"), line * 4);
    assert!(file.read().unwrap().records.is_empty(), "no file yet");
    let written: Vec<Record> = (0..6)
        .map(|i| {
            let mut r = r.clone();
            r.trigger.at = at(i * 100_000);
            r
        })
        .collect();
    let append = |i: usize| {
        file.append(&written[i]).unwrap();
        file.read().unwrap().records
    };
    for i in 0..4 {
        assert_eq!(append(i).len(), i + 1, "appended");
    }
    // The fifth would pass 4 lines: compacted to the newest 3 (three quarters).
    assert_eq!(append(4), written[2..5]);
    assert_eq!(append(5), written[2..], "appended again");
    let back = file.read().unwrap();
    assert!(back.bad_lines.is_empty());

    let text = std::fs::read_to_string(file.path()).unwrap();
    let torn = &text[..text.len() - 40];
    std::fs::write(file.path(), format!("not json\n{torn}")).unwrap();
    let back = file.read().unwrap();
    assert_eq!(back.records, written[2..5]);
    assert_eq!(
        back.bad_lines.iter().map(|b| b.0).collect::<Vec<_>>(),
        [1, 5],
        "the hand-written line and the torn one, by number"
    );
    let mut newest = r.clone();
    newest.trigger.at = at(900_000);
    // Appended (a larger bound: no compaction), after the torn line, not glued to it.
    let roomy = EventsFile::new(file.path(), line * 10);
    roomy.append(&newest).unwrap();
    let back = roomy.read().unwrap();
    assert_eq!(back.records.last(), Some(&newest));
    assert_eq!(back.bad_lines.len(), 2, "both kept as they were");
}

/// r11: what people see: the trigger with its jti and operator, both verdicts with their
/// latencies, the unit's times after the trigger, and every sample or why it is missing.
#[test]
fn r11_what_is_printed() {
    let r = complete_record();
    let text = show::text(std::slice::from_ref(&r));
    for want in [
        "operator_curtail",
        "jti c-7 from tso",
        "mining before 10.0 W, cap 0.0 W",
        "record complete",
        "commands met (last ack +2 ms)",
        "drop met (last confirmation +120 ms)",
        "+1 ms",
        "250 ms",
        "60 s",
        "cpu 0.0 W, 0.130 s old",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let mut cut = r.clone();
    cut.samples.truncate(2);
    cut.closed = Some(Closed {
        at: at(2000),
        why: Closure::Superseded,
    });
    let text = show::text(&[cut]);
    assert!(text.contains("record superseded at +2.00 s"), "{text}");
    assert_eq!(text.matches("not taken").count(), 3, "{text}");

    let v = r.state_json();
    assert_eq!(v["final"], true);
    assert_eq!(v["trigger"]["jti"], "c-7");
    assert_eq!(v["loads"][0]["units_more"], 0);
    assert_eq!(v["samples"][0]["offset_s"], 0.25);
    assert_eq!(v["response"]["drop"], "met");
}
