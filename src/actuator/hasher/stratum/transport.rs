//! Newline-delimited JSON over TCP, with a hard cap on line length.
//!
//! Role: bytes to lines. A line longer than the cap is skipped up to its newline and
//! reported, so a hostile pool cannot make us buffer without bound. Must not parse JSON.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::error::StratumError;

/// Longest line accepted. Real notify messages are a few kilobytes.
pub const MAX_LINE: usize = 64 * 1024;

/// One line read from the pool.
#[derive(Debug, PartialEq)]
pub enum Line {
    Text(String),
    /// A line over [`MAX_LINE`] bytes, dropped.
    TooLong,
    /// A line that is not UTF-8, dropped.
    NotUtf8,
}

pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Scanning position: no newline before it.
    scanned: usize,
    /// Inside an overlong line: drop bytes until the next newline.
    discarding: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(4096),
            scanned: 0,
            discarding: false,
        }
    }

    /// The next line, without its `\n` (and `\r`). Cancel-safe: no data is lost if the
    /// future is dropped, as all state lives in `self`.
    pub async fn next_line(&mut self) -> Result<Line, StratumError> {
        loop {
            if let Some(pos) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + pos;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                self.scanned = 0;
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if std::mem::take(&mut self.discarding) {
                    return Ok(Line::TooLong);
                }
                return Ok(match String::from_utf8(line) {
                    Ok(s) => Line::Text(s),
                    Err(_) => Line::NotUtf8,
                });
            }
            self.scanned = self.buf.len();
            if self.buf.len() > MAX_LINE {
                self.discarding = true;
                self.buf.clear();
                self.scanned = 0;
            }
            let mut chunk = [0u8; 4096];
            let n = self.inner.read(&mut chunk).await?;
            if n == 0 {
                return Err(StratumError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_split_and_overlong_ones_are_dropped() {
        let mut data = b"{\"a\":1}\r\nsecond\n".to_vec();
        data.extend(std::iter::repeat(b'x').take(MAX_LINE * 3));
        data.extend(b"\n\xff\xfe\nlast\n");
        let mut r = LineReader::new(&data[..]);
        assert_eq!(r.next_line().await.unwrap(), Line::Text("{\"a\":1}".into()));
        assert_eq!(r.next_line().await.unwrap(), Line::Text("second".into()));
        assert_eq!(r.next_line().await.unwrap(), Line::TooLong);
        assert_eq!(r.next_line().await.unwrap(), Line::NotUtf8);
        assert_eq!(r.next_line().await.unwrap(), Line::Text("last".into()));
        assert!(matches!(r.next_line().await, Err(StratumError::Closed)));
    }
}
