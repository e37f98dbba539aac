//! `InfluxWriter`: the telemetry task. Points arrive on a bounded channel, are batched
//! by size and age, and written through the influxdb2 client (`/api/v2/write`, ms
//! precision). A batch that cannot be written goes to the on-disk `Buffer`, and buffered
//! batches are replayed, oldest first, before anything newer is written, so the server
//! receives points in the order they were made.
//!
//! Idle, the task waits on its channel with no timer armed: it costs nothing until a point
//! arrives. Timers run only while a batch is open or the buffer holds data.
//! Must not: block or slow the controller (`TelemetrySender` never waits), or lose a
//! point silently: every loss is counted in `Metrics` and logged.

use influxdb2::api::write::TimestampPrecision;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::buffer::Buffer;
use super::config::InfluxConfig;
use super::error::TelemetryError;
use super::metrics::{DropCause, Metrics};
use super::points::Point;

/// The controller's end: submits points without ever waiting.
#[derive(Debug, Clone)]
pub struct TelemetrySender {
    tx: mpsc::Sender<Point>,
    metrics: Metrics,
}

impl TelemetrySender {
    /// Queues a point for the writer. When the queue is full (the writer is behind) or
    /// the writer has stopped, the point is dropped and counted: the control loop never
    /// stalls for telemetry.
    pub fn send(&self, point: Point) {
        if self.tx.try_send(point).is_err() {
            self.metrics.count_dropped(DropCause::ChannelFull, 1);
        }
    }

    pub fn send_all(&self, points: impl IntoIterator<Item = Point>) {
        for p in points {
            self.send(p);
        }
    }
}

/// Makes the writer task and the sender that feeds it. Opens the buffer folder (and
/// indexes what a previous run left there), so a bad `buffer_dir` shows at startup.
pub fn writer(
    config: InfluxConfig,
    metrics: Metrics,
) -> Result<(TelemetrySender, InfluxWriter), TelemetryError> {
    let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
    let buffer = Buffer::open(&config.buffer_dir, config.buffer_max_bytes)?;
    metrics.buffer_level(buffer.points(), buffer.bytes());
    let client = influxdb2::ClientBuilder::new(&config.url, &config.org, &config.token.0)
        .build()
        .map_err(|e| TelemetryError::Client(e.to_string()))?;
    let sender = TelemetrySender {
        tx,
        metrics: metrics.clone(),
    };
    Ok((
        sender,
        InfluxWriter {
            config,
            rx,
            buffer,
            client,
            metrics,
        },
    ))
}

/// The telemetry task; see the module doc.
pub struct InfluxWriter {
    config: InfluxConfig,
    rx: mpsc::Receiver<Point>,
    buffer: Buffer,
    client: influxdb2::Client,
    metrics: Metrics,
}

impl std::fmt::Debug for InfluxWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxWriter")
            .field("config", &self.config)
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

/// A batch being gathered: line protocol and its point count.
#[derive(Debug, Default)]
struct Batch {
    text: String,
    points: u64,
    /// When the first point arrived: the batch is due `flush_interval` later.
    opened: Option<Instant>,
}

impl InfluxWriter {
    /// Runs until `shutdown` or until every sender is dropped. On the way out it drains
    /// the channel and makes one attempt (bounded by `timeout`) to deliver; what is not
    /// delivered stays on disk for the next run. Write and buffer failures are logged and
    /// counted, never fatal: telemetry must not take the controller down.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), TelemetryError> {
        let mut batch = Batch::default();
        let mut retry_wait = self.config.flush_interval;
        // Replay what a previous run left as soon as we start.
        let mut retry_at = (!self.buffer.is_empty()).then(Instant::now);
        loop {
            let due = match (batch.opened, retry_at) {
                (Some(o), Some(r)) => Some((o + self.config.flush_interval).max(r)),
                (Some(o), None) => Some(o + self.config.flush_interval),
                (None, r) => r,
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = sleep_until(due), if due.is_some() => {}
                p = self.rx.recv() => {
                    let Some(p) = p else { break };
                    if p.write_line(&mut batch.text) {
                        batch.points += 1;
                        batch.opened.get_or_insert_with(Instant::now);
                    }
                    if (batch.points as usize) < self.config.batch_size {
                        continue;
                    }
                    if retry_at.is_some() {
                        // The server is away: a full batch goes to disk now, so memory
                        // stays bounded, and the retry timer decides when to try again.
                        let text = std::mem::take(&mut batch.text);
                        let points = std::mem::take(&mut batch.points);
                        batch.opened = None;
                        let _ = self.to_buffer(&text, points);
                        self.metrics.buffer_level(self.buffer.points(), self.buffer.bytes());
                        continue;
                    }
                }
            }
            match self.flush(&mut batch).await {
                Ok(()) => {
                    retry_wait = self.config.flush_interval;
                    retry_at = None;
                }
                Err(error) => {
                    let buffered = self.buffer.points();
                    if retry_at.is_none() {
                        tracing::warn!(%error, buffered, retry_in = ?retry_wait, "InfluxDB write failed; points kept on disk");
                    } else {
                        tracing::debug!(%error, buffered, retry_in = ?retry_wait, "InfluxDB still unreachable");
                    }
                    retry_at = Some(Instant::now() + retry_wait);
                    retry_wait = (retry_wait * 2).min(self.config.retry_max);
                }
            }
        }
        // Shutdown: take what is queued, then one bounded attempt.
        while let Ok(p) = self.rx.try_recv() {
            if p.write_line(&mut batch.text) {
                batch.points += 1;
            }
        }
        if let Err(error) = self.flush(&mut batch).await {
            tracing::info!(%error, buffered = self.buffer.points(), "Telemetry kept on disk for the next run");
        }
        Ok(())
    }

    /// Delivers the buffer (oldest first) and then the batch. Whatever cannot be delivered
    /// ends up on disk and the batch is emptied. `Err` means the server is unreachable (or
    /// refusing for now); a buffer failure is counted as a loss and also returned.
    async fn flush(&mut self, batch: &mut Batch) -> Result<(), TelemetryError> {
        let text = std::mem::take(&mut batch.text);
        let points = std::mem::take(&mut batch.points);
        batch.opened = None;
        let result = self.deliver(text, points).await;
        self.metrics
            .buffer_level(self.buffer.points(), self.buffer.bytes());
        result
    }

    async fn deliver(&mut self, text: String, points: u64) -> Result<(), TelemetryError> {
        // Older points first: while the buffer holds data, the batch joins its end.
        if !self.buffer.is_empty() {
            self.to_buffer(&text, points)?;
            return self.replay().await;
        }
        if points == 0 {
            return Ok(());
        }
        match self.write(text.clone()).await {
            Ok(()) => {
                self.metrics.count_written(points);
                Ok(())
            }
            Err(e) if e.is_transient() => {
                self.to_buffer(&text, points)?;
                Err(e)
            }
            Err(error) => {
                self.refused(&error, points);
                Ok(())
            }
        }
    }

    /// Writes buffered segments, oldest first, deleting each once accepted.
    async fn replay(&mut self) -> Result<(), TelemetryError> {
        let mut delivered = 0;
        while let Some((text, points)) = self.buffer.oldest()? {
            match self.write(text).await {
                Ok(()) => {
                    self.metrics.count_written(points);
                    delivered += points;
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(error) => self.refused(&error, points),
            }
            self.buffer.pop_oldest()?;
        }
        if delivered > 0 {
            tracing::info!(
                points = delivered,
                "InfluxDB back; buffered telemetry delivered"
            );
        }
        Ok(())
    }

    fn refused(&self, error: &TelemetryError, points: u64) {
        // Retrying would block every later batch behind this one forever.
        self.metrics.count_dropped(DropCause::Refused, points);
        tracing::error!(%error, points, "InfluxDB refused a batch for good; dropped");
    }

    fn to_buffer(&mut self, text: &str, points: u64) -> Result<(), TelemetryError> {
        if points == 0 {
            return Ok(());
        }
        match self.buffer.append(text) {
            Ok(dropped) => {
                self.metrics.count_buffered(points);
                if dropped.points > 0 {
                    self.metrics
                        .count_dropped(DropCause::BufferFull, dropped.points);
                    tracing::warn!(
                        points = dropped.points,
                        bytes = dropped.bytes,
                        max_bytes = self.config.buffer_max_bytes,
                        "Telemetry buffer full; oldest points dropped"
                    );
                }
                Ok(())
            }
            Err(error) => {
                self.metrics.count_dropped(DropCause::BufferError, points);
                tracing::error!(%error, points, "Telemetry buffer write failed; points lost");
                Err(error)
            }
        }
    }

    async fn write(&self, text: String) -> Result<(), TelemetryError> {
        let write = self.client.write_line_protocol_with_precision(
            &self.config.org,
            &self.config.bucket,
            text,
            TimestampPrecision::Milliseconds,
        );
        match tokio::time::timeout(self.config.timeout, write).await {
            Ok(r) => r.map_err(TelemetryError::from),
            Err(_) => Err(TelemetryError::Unreachable(format!(
                "no answer within {:?}",
                self.config.timeout
            ))),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::Timestamp;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Accepts one HTTP request, answers it with `status`, and returns the request as sent.
    async fn capture_one(listener: TcpListener, status: &'static str) -> String {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed before a whole request");
            req.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&req).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let head = text[..end].to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                let chunked = head.contains("transfer-encoding: chunked");
                let body = &text[end + 4..];
                if (!chunked && body.len() >= len) || (chunked && body.ends_with("0\r\n\r\n")) {
                    break;
                }
            }
        }
        let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        s.write_all(reply.as_bytes()).await.unwrap();
        String::from_utf8(req).unwrap()
    }

    async fn one_write(token: &str, status: &'static str) -> (String, Metrics, tempfile::TempDir) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let mut config = InfluxConfig::new(&url, "site", "gm", dir.path());
        config.token = super::super::config::Token(token.into());
        config.batch_size = 1;
        let metrics = Metrics::new();
        let (tx, w) = writer(config, metrics.clone()).unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(w.run(shutdown.clone()));
        tx.send(Point::new("m", Timestamp(42)).float("v", 1.5));
        let req = tokio::time::timeout(Duration::from_secs(10), capture_one(listener, status))
            .await
            .expect("the writer sends within the deadline");
        // The write completes (and is counted) before the writer looks at its channel
        // again; dropping the sender then ends the task.
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        (req, metrics, dir)
    }

    #[tokio::test]
    async fn sends_the_token_header_and_ms_precision() {
        let (req, metrics, _dir) = one_write("s3cret", "204 No Content").await;
        let lower = req.to_ascii_lowercase();
        assert!(
            req.lines()
                .any(|l| l.eq_ignore_ascii_case("authorization: Token s3cret")),
            "{req}"
        );
        assert!(
            lower.starts_with("post /api/v2/write?bucket=gm&org=site&precision=ms "),
            "{req}"
        );
        assert!(req.contains("m v=1.5 42\n"), "{req}");
        assert_eq!(metrics.points_written(), 1);
    }

    #[tokio::test]
    async fn no_token_no_header() {
        let (req, _, _dir) = one_write("", "204 No Content").await;
        assert!(!req.to_ascii_lowercase().contains("authorization"), "{req}");
    }

    #[tokio::test]
    async fn a_refused_batch_is_dropped_and_counted_not_buffered() {
        let (_, metrics, dir) = one_write("t", "400 Bad Request").await;
        assert_eq!(metrics.points_dropped(DropCause::Refused), 1);
        assert_eq!(metrics.points_buffered(), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_full_channel_counts_a_drop_and_never_waits() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = InfluxConfig::new("http://127.0.0.1:9", "o", "b", dir.path());
        config.channel_capacity = 2;
        let metrics = Metrics::new();
        // The writer is not running: nothing drains the channel.
        let (tx, _w) = writer(config, metrics.clone()).unwrap();
        for i in 0..5 {
            tx.send(Point::new("m", Timestamp(i)).int("v", i));
        }
        assert_eq!(metrics.points_dropped(DropCause::ChannelFull), 3);
    }
}
