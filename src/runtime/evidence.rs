//! The daemon's side of the frequency-response evidence: feeds the pure book
//! ([`Evidence`]) every decision with the loads as the step saw them, runs one timer per
//! sample offset from the trigger (on the monotonic clock, from the instant of the
//! triggering step: never the tick), and writes out every record it closes: the events
//! file on a blocking thread of the daemon's tracker (so the control loop never waits on
//! a disk, and a stop waits for the write), InfluxDB points, Prometheus.
//!
//! No disk write starts inside a trigger's FFR window: a record closed by a newer trigger
//! waits for that trigger's first sample (250 ms) before it goes to the file, so its
//! flush cannot contend with the replay cache's fsync or the loads while the site sheds.
//!
//! Must not: decide anything, or hold the loop: everything here is a lock-free look at
//! the meters, a clone, or a hand-off.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::loads::Meter;
use crate::actuator::status::LoadStatus;
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::state::SiteState;
use crate::telemetry::evidence::file::EventsFile;
use crate::telemetry::evidence::{Closure, Evidence, LoadView, Record};
use crate::telemetry::{points, Metrics, TelemetrySender};

/// The evidence of one daemon, and where it goes.
pub(super) struct Recorder {
    book: Evidence,
    /// The open record's trigger on the monotonic clock: its samples are due from it.
    trigger: Option<Instant>,
    /// Locked by the blocking write: two records closed a moment apart are written one
    /// after the other, never read-modify-written over each other.
    file: Arc<Mutex<EventsFile>>,
    tracker: TaskTracker,
    metrics: Metrics,
    influx: Option<TelemetrySender>,
    /// The loads' names, in config order.
    names: Vec<String>,
    /// Closed records not yet handed to the file (see the module doc).
    unwritten: Vec<Record>,
    /// Closed records not yet taken into the ledger (`take_closed`).
    for_ledger: Vec<Record>,
    /// What the state shows, rebuilt only when a record changes (a step clones the
    /// `Arc`, not the records).
    shown: Arc<Vec<Record>>,
}

/// Each load with the timings of the commands sent to it since `since` (none without).
fn views<'a>(
    names: &'a [String],
    statuses: &'a [LoadStatus],
    meters: &[Meter],
    since: Option<Timestamp>,
) -> Vec<LoadView<'a>> {
    names
        .iter()
        .zip(statuses)
        .zip(meters)
        .map(|((name, status), meter)| LoadView {
            name,
            status,
            timings: since.map_or_else(Vec::new, |t| meter.timings(name, t)),
        })
        .collect()
}

impl Recorder {
    pub(super) fn new(
        site: &str,
        names: Vec<String>,
        file: EventsFile,
        tracker: TaskTracker,
        metrics: Metrics,
        influx: Option<TelemetrySender>,
    ) -> Self {
        tracing::info!(path = %file.path().display(), "Frequency-response evidence goes to the events file");
        Recorder {
            book: Evidence::new(site),
            trigger: None,
            file: Arc::new(Mutex::new(file)),
            tracker,
            metrics,
            influx,
            names,
            unwritten: Vec::new(),
            for_ledger: Vec::new(),
            shown: Arc::default(),
        }
    }

    /// An operator command was accepted: names the curtailment it may bring in.
    pub(super) fn accepted(&mut self, operator: &str, jti: &str) {
        self.book.accepted(operator, jti);
    }

    /// The records the state shows, newest first.
    pub(super) fn shown(&self) -> Arc<Vec<Record>> {
        self.shown.clone()
    }

    /// When the open record's next sample is due; `None` while none is open.
    pub(super) fn due(&self) -> Option<Instant> {
        Some(self.trigger? + self.book.next_due()?)
    }

    /// Books decision `d`, made on `state` with the loads at `statuses` (as the step read
    /// them, before it).
    pub(super) fn decided(
        &mut self,
        d: &Decision,
        state: &SiteState,
        statuses: &[LoadStatus],
        meters: &[Meter],
    ) {
        let views = views(&self.names, statuses, meters, self.book.since());
        let decided = self.book.decided(d, state, &views);
        let Some(kind) = decided.opened else { return };
        self.trigger = Some(Instant::now());
        self.metrics.response_opened(kind);
        // Info, not warn: a frequency flapping at the threshold opens one a second; the
        // metrics count them and the record tells the rest.
        tracing::info!(
            trigger = kind.as_str(),
            cap_w = d.limit.map(|w| w.0),
            "Frequency response: shedding mining load; evidence record opened"
        );
        if let Some(old) = decided.superseded {
            self.closed(old);
        }
        self.shown = Arc::new(self.book.records());
    }

    /// Takes the sample that is due, with the loads as they are `now`.
    pub(super) fn sample(&mut self, now: Timestamp, statuses: &[LoadStatus], meters: &[Meter]) {
        let views = views(&self.names, statuses, meters, self.book.since());
        let done = self.book.sample(now, &views);
        if let (Some(sender), Some(r)) = (&self.influx, self.book.records().first()) {
            // The sample just taken is the last of the record it belongs to, open or just
            // closed (then it is the newest closed one, first in the list).
            if let Some(s) = r.samples.last() {
                sender.send(points::response_sample_point(&r.trigger, s));
            }
        }
        if let Some(r) = done {
            self.trigger = None;
            self.closed(r);
        }
        // Every sample comes at or after the window: the disk may have its turn.
        self.write_out();
        self.shown = Arc::new(self.book.records());
    }

    /// Closes the open record (the daemon stops), with the loads as they are `now`.
    pub(super) fn close(&mut self, now: Timestamp, statuses: &[LoadStatus], meters: &[Meter]) {
        let views = views(&self.names, statuses, meters, self.book.since());
        if let Some(r) = self.book.close(now, Closure::Shutdown, &views) {
            self.trigger = None;
            self.closed(r);
            self.shown = Arc::new(self.book.records());
        }
        self.write_out();
    }

    /// Writes out a closed record: InfluxDB and metrics now, the file at the next
    /// [`Recorder::write_out`].
    fn closed(&mut self, record: Record) {
        self.metrics.response_closed(&record);
        if let Some(sender) = &self.influx {
            sender.send(points::response_event_point(&record));
        }
        tracing::info!(
            trigger = record.trigger.kind.as_str(),
            closed = record.closed.map_or("open", |c| c.why.as_str()),
            commands = record.response.commands.as_str(),
            drop = record.response.drop.as_str(),
            last_ack_ms = record.response.last_acked.map(|d| d.as_millis() as u64),
            last_confirm_ms = record.response.last_confirmed.map(|d| d.as_millis() as u64),
            "Frequency response evidence record closed"
        );
        self.for_ledger.push(record.clone());
        self.unwritten.push(record);
    }

    /// The records closed since the last call (for the ledger).
    pub(super) fn take_closed(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.for_ledger)
    }

    /// Hands the closed records to a blocking thread that appends them, in order.
    fn write_out(&mut self) {
        if self.unwritten.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.unwritten);
        let file = self.file.clone();
        let metrics = self.metrics.clone();
        self.tracker.spawn_blocking(move || {
            // A poisoned lock guards a path and a bound only: nothing half-changed.
            let file = file.lock().unwrap_or_else(|p| p.into_inner());
            for record in &records {
                if let Err(error) = file.append(record) {
                    metrics.events_file_error();
                    tracing::error!(%error, "Could not write the evidence record to the events file; the state and InfluxDB still have it");
                }
            }
        });
    }
}

/// Resolves at `due`; never while `None`.
pub(super) async fn until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
