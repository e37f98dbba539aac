//! The hop between rumqttc and the broker that drops messages over the packet limit, so
//! that no message, retained or not, can take the daemon's connection down.
//!
//! Why a hop: rumqttc 0.25 speaks MQTT 3.1.1, and its codec, given a packet longer than
//! `max_incoming_packet_size`, returns `PayloadSizeLimitExceeded` and the connection ends
//! (tokio-util's `Framed` yields nothing after a decoder error, and the codec cannot be
//! replaced). A retained message over the limit comes again at every subscribe, so the
//! connection failed at every reconnect for as long as the message stayed retained, and
//! operator commands behind it never arrived (issue 9, hole 3). MQTT 3.1.1 cannot tell
//! the broker a maximum size (MQTT 5's Maximum Packet Size can; rumqttc's v5 client is a
//! different API and rumqttd's v5 listener a different server), so the limit is enforced
//! on our side of the socket: rumqttc talks to this relay over a Unix socket in a private
//! directory, and the relay to the broker (TCP, TLS when configured).
//!
//! From the broker, the relay reads each packet's fixed header and passes the packet on,
//! or, for a PUBLISH over the limit, discards its bytes as they arrive (never holding more
//! than one read of them) and counts it. Our subscriptions are QoS 0, so a dropped
//! message needs no acknowledgement. Towards the broker, bytes are copied as they are.
//! The relay knows nothing else of MQTT: logins, refusals and pings pass through.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::tokio_rustls::{rustls, TlsConnector};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::{MqttError, MqttStats};

/// How long the relay tries to reach the broker for one connection of rumqttc: less than
/// rumqttc's own deadline for the whole connect, CONNACK included (5 s), so that the
/// relay's reason is there when rumqttc reports the failure.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(4);

/// MQTT control packet type of PUBLISH (the high nibble of the first byte).
const PUBLISH: u8 = 3;

/// Of a dropped PUBLISH, this many bytes after the fixed header are kept to name its
/// topic in the log (a longer topic is shown cut).
const HEAD_KEPT: usize = 2 + 512;

/// How to reach the broker.
pub(super) struct Upstream {
    pub host: String,
    pub port: u16,
    /// TLS with this config; `None` is plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A TLS client config that trusts the certificates of `ca_pem` (as rumqttc's `Simple`
/// configuration does), without client certificates.
pub(super) fn tls_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, MqttError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| MqttError::Tls(e.to_string()))?;
        roots.add(cert).map_err(|e| MqttError::Tls(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Upstream {
    async fn connect(&self) -> Result<Box<dyn Stream>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connecting to {}:{}: {e}", self.host, self.port))?;
        // No Nagle delay: see `super::network_options`.
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| format!("TLS server name {:?}: {e}", self.host))?;
        let stream = TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {}:{}: {e}", self.host, self.port))?;
        Ok(Box::new(stream))
    }
}

/// A directory only this user can enter, removed on drop: the relay's socket lives in
/// it, so no other local user can connect through the relay.
#[derive(Debug)]
struct PrivateDir(PathBuf);

/// The name of the relay directories: `{PREFIX}{pid}-{n}-{nanos}`.
const PREFIX: &str = "gridminer-mqtt-";

impl PrivateDir {
    fn new() -> io::Result<PrivateDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        sweep_stale(&std::env::temp_dir());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut tries = 0;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("{PREFIX}{}-{n}-{nanos:x}", std::process::id()));
            // `create`, not `create_all`: a directory that exists already (someone else's)
            // is never used.
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(PrivateDir(dir)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 100 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Removes the relay directories of processes that are gone (killed, so their `Drop` never
/// ran): a crash loop must not fill the temporary directory. Only where `/proc` tells
/// which processes live; another user's directories cannot be removed (sticky `/tmp`)
/// and are left alone.
fn sweep_stale(tmp: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The relay: bound at construction (no runtime needed), served by `run`.
pub(super) struct Relay {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    dir: PrivateDir,
    sessions: Sessions,
}

/// What each connection through the relay needs.
struct Sessions {
    upstream: Upstream,
    limit: usize,
    stats: Arc<MqttStats>,
    upstream_error: Arc<Mutex<Option<String>>>,
}

impl Relay {
    /// Binds the relay's socket. `limit` is the largest remaining length (the packet
    /// without its fixed header) of a PUBLISH passed on.
    pub fn bind(
        upstream: Upstream,
        limit: usize,
        stats: Arc<MqttStats>,
    ) -> Result<Relay, MqttError> {
        let fail = |e: io::Error| MqttError::Relay(e.to_string());
        let dir = PrivateDir::new().map_err(fail)?;
        let path = dir.0.join("broker.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        Ok(Relay {
            listener,
            path,
            dir,
            sessions: Sessions {
                upstream,
                limit,
                stats,
                upstream_error: Arc::default(),
            },
        })
    }

    /// Where rumqttc connects.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the last attempt to reach the broker failed, for the connection's log: rumqttc
    /// only sees its socket to the relay close. Taken (reset) by the reader.
    pub fn upstream_error(&self) -> Arc<Mutex<Option<String>>> {
        self.sessions.upstream_error.clone()
    }

    /// Serves rumqttc's connections, one at a time (it keeps one), until `stop`. A
    /// connection in progress when `stop` comes is served until rumqttc closes it, so its
    /// goodbye (availability `offline`, DISCONNECT) reaches the broker.
    pub async fn run(self, stop: CancellationToken) -> Result<(), MqttError> {
        // The directory (and so the socket) lives until the relay stops.
        let Relay {
            listener,
            dir: _dir,
            sessions,
            ..
        } = self;
        let listener =
            UnixListener::from_std(listener).map_err(|e| MqttError::Relay(e.to_string()))?;
        loop {
            let client = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = listener.accept() => match r {
                    Ok((client, _)) => client,
                    Err(e) => return Err(MqttError::Relay(e.to_string())),
                },
            };
            sessions.serve(client).await;
        }
    }
}

impl Sessions {
    async fn serve(&self, client: UnixStream) {
        let upstream = match tokio::time::timeout(UPSTREAM_TIMEOUT, self.upstream.connect()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return self.upstream_failed(e),
            Err(_) => {
                return self.upstream_failed(format!(
                    "connecting to {}:{}: no answer within {UPSTREAM_TIMEOUT:?}",
                    self.upstream.host, self.upstream.port
                ))
            }
        };
        let (mut from_client, to_client) = client.into_split();
        let (from_broker, mut to_broker) = tokio::io::split(upstream);
        let up = async {
            let _ = tokio::io::copy(&mut from_client, &mut to_broker).await;
            // TLS close_notify, TCP FIN: the broker sees a clean end after DISCONNECT.
            let _ = to_broker.shutdown().await;
        };
        let mut warned = Warned::default();
        let down = pass_down(from_broker, to_client, self.limit, |d| {
            self.stats.oversized.fetch_add(1, Ordering::Relaxed);
            warned.log(&d, self.limit);
        });
        // Either side ending ends both: rumqttc sees its socket close and reconnects.
        tokio::select! {
            _ = up => {}
            r = down => if let Err(error) = r {
                tracing::debug!(%error, "MQTT relay: the broker's side ended");
            },
        }
    }

    fn upstream_failed(&self, error: String) {
        if let Ok(mut slot) = self.upstream_error.lock() {
            *slot = Some(error);
        }
    }
}

/// Topics already warned about (on one connection of the relay, or for the whole run
/// of a direct connection): one warning per topic, the rest at debug (the counter has
/// them all), so a flood cannot flood the log.
#[derive(Default)]
pub(super) struct Warned(Vec<String>);

impl Warned {
    const MAX: usize = 64;

    pub fn log(&mut self, d: &Dropped, limit: usize) {
        if self.0.len() < Self::MAX && !self.0.contains(&d.topic) {
            tracing::warn!(
                topic = ?d.topic,
                bytes = d.bytes,
                limit,
                "Dropped an MQTT message over mqtt.max_packet_size (the connection stays up)"
            );
            self.0.push(d.topic.clone());
        } else {
            tracing::debug!(topic = ?d.topic, bytes = d.bytes, "Dropped an oversized MQTT message");
        }
    }
}

/// Copies the broker's packets to rumqttc, dropping oversized PUBLISH packets, until
/// either side ends.
async fn pass_down<R, W>(
    mut from: R,
    mut to: W,
    limit: usize,
    mut dropped: impl FnMut(Dropped),
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut splitter = Splitter::new(limit);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(buf.len());
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        out.clear();
        for d in splitter.feed(&buf[..n], &mut out)? {
            dropped(d);
        }
        if !out.is_empty() {
            to.write_all(&out).await?;
            to.flush().await?;
        }
    }
}

/// A PUBLISH the relay dropped.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Dropped {
    /// Its topic, as far as it could be read (cut after `HEAD_KEPT` bytes).
    pub topic: String,
    /// Its remaining length (the packet after its fixed header), the size the limit is
    /// about.
    pub bytes: usize,
}

/// Where the splitter is in the broker's byte stream.
#[derive(Debug)]
enum At {
    /// Reading a fixed header: the bytes so far (type and flags, then 1 to 4 bytes of
    /// remaining length).
    Header { bytes: [u8; 5], len: usize },
    /// Passing on the rest of a packet.
    Pass { left: usize },
    /// Discarding the rest of an oversized PUBLISH, its first bytes kept for the topic.
    Skip {
        left: usize,
        bytes: usize,
        head: Vec<u8>,
    },
}

impl At {
    fn header() -> At {
        At::Header {
            bytes: [0; 5],
            len: 0,
        }
    }
}

/// Splits the broker's byte stream at packet boundaries and drops oversized PUBLISH
/// packets. Pure, so it is tested on bytes; `pass_down` feeds it from the socket.
#[derive(Debug)]
pub(super) struct Splitter {
    limit: usize,
    at: At,
}

impl Splitter {
    pub fn new(limit: usize) -> Splitter {
        Splitter {
            limit,
            at: At::header(),
        }
    }

    /// Appends to `out` what of `input` goes on to rumqttc, and returns the packets that
    /// were dropped in it. A remaining length that is not MQTT (a fifth length byte) is
    /// an error: the stream cannot be split any more, and the connection must end.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<Vec<Dropped>> {
        let mut dropped = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            match &mut self.at {
                At::Header { bytes, len } => {
                    bytes[*len] = input[pos];
                    *len += 1;
                    pos += 1;
                    let Some(remaining) = remaining_length(&bytes[..*len])? else {
                        continue;
                    };
                    let header = &bytes[..*len];
                    if header[0] >> 4 == PUBLISH && remaining > self.limit {
                        self.at = At::Skip {
                            left: remaining,
                            bytes: remaining,
                            head: Vec::new(),
                        };
                    } else {
                        out.extend_from_slice(header);
                        self.at = if remaining == 0 {
                            At::header()
                        } else {
                            At::Pass { left: remaining }
                        };
                    }
                }
                At::Pass { left } => {
                    let n = (*left).min(input.len() - pos);
                    out.extend_from_slice(&input[pos..pos + n]);
                    pos += n;
                    *left -= n;
                    if *left == 0 {
                        self.at = At::header();
                    }
                }
                At::Skip { left, bytes, head } => {
                    let n = (*left).min(input.len() - pos);
                    let keep = n.min(HEAD_KEPT.saturating_sub(head.len()));
                    head.extend_from_slice(&input[pos..pos + keep]);
                    pos += n;
                    *left -= n;
                    if *left == 0 {
                        dropped.push(Dropped {
                            topic: topic_of(head),
                            bytes: *bytes,
                        });
                        self.at = At::header();
                    }
                }
            }
        }
        Ok(dropped)
    }
}

/// The remaining length of a fixed header, `None` while more bytes are needed.
fn remaining_length(header: &[u8]) -> io::Result<Option<usize>> {
    let mut value = 0usize;
    for (i, &b) in header.iter().enumerate().skip(1) {
        value |= usize::from(b & 0x7f) << (7 * (i - 1));
        if b & 0x80 == 0 {
            return Ok(Some(value));
        }
        if i == 4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "MQTT remaining length longer than 4 bytes",
            ));
        }
    }
    Ok(None)
}

/// The topic of a PUBLISH from the first bytes of its variable header (a 2-byte length,
/// then UTF-8).
fn topic_of(head: &[u8]) -> String {
    match head {
        [hi, lo, rest @ ..] => {
            let n = usize::from(u16::from_be_bytes([*hi, *lo]));
            String::from_utf8_lossy(&rest[..n.min(rest.len())]).into_owned()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PUBLISH packet (QoS 0) of `topic` with `payload`.
    fn publish(topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = (topic.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(payload);
        let mut p = vec![0x31]; // PUBLISH, retained
        let mut n = body.len();
        loop {
            let b = (n % 128) as u8;
            n /= 128;
            p.push(if n > 0 { b | 0x80 } else { b });
            if n == 0 {
                break;
            }
        }
        p.extend(body);
        p
    }

    const PINGRESP: [u8; 2] = [0xd0, 0x00];
    const SUBACK: [u8; 5] = [0x90, 0x03, 0x00, 0x01, 0x00];

    /// Feeds `stream` in pieces of `chunk` bytes.
    fn split(limit: usize, stream: &[u8], chunk: usize) -> (Vec<u8>, Vec<Dropped>) {
        let mut s = Splitter::new(limit);
        let (mut out, mut dropped) = (Vec::new(), Vec::new());
        for piece in stream.chunks(chunk) {
            dropped.extend(s.feed(piece, &mut out).unwrap());
        }
        (out, dropped)
    }

    #[test]
    fn oversized_publishes_are_cut_out_and_everything_else_passes_byte_for_byte() {
        let small = publish("site/pv", b"1500");
        let big = publish("site/price", &vec![b'9'; 1 << 20]);
        let at_limit = publish("site/load", &vec![b'1'; 1000 - 2 - 9]);
        assert_eq!(at_limit.len(), 1000 + 3);
        let over_limit = publish("site/load", &vec![b'1'; 1001 - 2 - 9]);
        let stream = [
            &SUBACK[..],
            &big,
            &small,
            &PINGRESP,
            &at_limit,
            &over_limit,
            &small,
        ]
        .concat();
        let want = [&SUBACK[..], &small, &PINGRESP, &at_limit, &small].concat();
        for chunk in [1, 2, 3, 7, 1000, 65536, stream.len()] {
            let (out, dropped) = split(1000, &stream, chunk);
            assert!(out == want, "chunk {chunk}: {} bytes out", out.len());
            assert_eq!(
                dropped,
                [
                    Dropped {
                        topic: "site/price".into(),
                        bytes: big.len() - 4
                    },
                    Dropped {
                        topic: "site/load".into(),
                        bytes: 1001
                    },
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_fifth_length_byte_is_an_error() {
        let mut s = Splitter::new(1000);
        let r = s.feed(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], &mut Vec::new());
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_largest_remaining_length_is_read() {
        assert_eq!(
            remaining_length(&[0x30, 0xff, 0xff, 0xff, 0x7f]).unwrap(),
            Some(268_435_455)
        );
        assert_eq!(remaining_length(&[0x30, 0xff]).unwrap(), None);
    }

    #[test]
    fn directories_of_dead_processes_are_swept_and_live_ones_kept() {
        let tmp = std::env::temp_dir().join(format!("relay-sweep-test-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        // No process has pid 4294967295 (Linux caps pids at 2^22).
        let dead = tmp.join(format!("{PREFIX}4294967295-0-1"));
        let live = tmp.join(format!("{PREFIX}{}-0-1", std::process::id()));
        let other = tmp.join("gridminer-other-1");
        for d in [&dead, &live, &other] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("broker.sock"), "").unwrap();
        }
        sweep_stale(&tmp);
        let exists = [&dead, &live, &other].map(|d| d.exists());
        std::fs::remove_dir_all(&tmp).unwrap();
        if Path::new("/proc/self").exists() {
            assert_eq!(exists, [false, true, true]);
        }
    }

    #[test]
    fn a_topic_cut_short_is_shown_as_far_as_kept() {
        assert_eq!(topic_of(&[0, 5, b'a', b'b']), "ab");
        assert_eq!(topic_of(&[0]), "");
    }
}
