//! The thin tokio layer: each miner's listener, one request per connection, the answer,
//! then close (clients read to EOF: asic-rs `read_stream_response`, pyasic
//! `reader.read()`). All behaviour is in `model` and `whatsminer`; this only frames
//! bytes, stamps the time, and drops connections for `drops-connection`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::firmware::Answer;
use super::model::Fault;
use super::Station;
use crate::clock::{Clock, SystemClock};

/// A request larger than this is not one btminer would take; the connection closes.
const MAX_REQUEST: usize = 64 * 1024;

/// How long a client may take to send its request (btminer's own is about this).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn serve(
    station: Arc<Station>,
    listener: TcpListener,
    epoch: Instant,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((socket, _)) => {
                let station = station.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = connection(&station, socket, epoch) => {}
                    }
                });
            }
            Err(error) => {
                // Out of descriptors, most likely: say so and let the backlog wait a
                // moment instead of spinning on the error.
                tracing::warn!(%error, miner = %station.addr, "Emulated miner cannot accept");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

async fn connection(station: &Station, mut socket: TcpStream, epoch: Instant) {
    let n = {
        let mut st = station
            .state
            .lock()
            .expect("no panic while the miner is locked");
        st.connections += 1;
        if st.unpowered {
            // No power at the outlet: as good as no miner; the socket closes unanswered.
            return;
        }
        st.connections
    };
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    if station.fault == Some(Fault::DropsConnection) {
        let every = {
            let st = station
                .state
                .lock()
                .expect("no panic while the miner is locked");
            u64::from(st.miner.dynamics.drop_every.max(1))
        };
        // One in `every` on average, spread by a fixed hash of the connection's number
        // as a flaky link spreads them: a strict every-other pattern would lock onto a
        // client's fixed sequence of requests (asic-rs's discovery makes an even number)
        // and fail it every time, which no real link does.
        if scatter(n) % every == 0 {
            return;
        }
    }
    let answer = {
        let mut st = station
            .state
            .lock()
            .expect("no panic while the miner is locked");
        let st = &mut *st;
        let unix = SystemClock.now().0.div_euclid(1000);
        st.firmware
            .answer(&mut st.miner, &request, epoch.elapsed(), unix)
    };
    if let Answer::Reply(text) = answer {
        if socket.write_all(text.as_bytes()).await.is_ok() {
            let _ = socket.shutdown().await;
        }
    }
}

/// SplitMix64's finaliser: a fixed, well-spread hash of `n`.
fn scatter(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Reads until the bytes form one JSON value (clients send no terminator and wait), the
/// client closes its side, or the limits run out (`None`: close without answering).
async fn read_request(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return (!buf.is_empty()).then_some(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if complete(&buf) {
            return Some(buf);
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
    }
}

/// Whether `buf` holds a whole JSON value (an invalid one counts: the firmware answers it
/// with an error rather than waiting for more).
fn complete(buf: &[u8]) -> bool {
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<serde::de::IgnoredAny>();
    match it.next() {
        Some(Ok(_)) => true,
        Some(Err(e)) => !e.is_eof(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::complete;

    #[test]
    fn a_request_is_complete_when_its_json_is() {
        assert!(complete(br#"{"command":"summary"}"#));
        assert!(complete(b"{\"command\":\"summary\"}\n"));
        assert!(!complete(br#"{"command":"sum"#));
        assert!(!complete(b"  "));
        assert!(complete(b"}garbage"));
    }
}
