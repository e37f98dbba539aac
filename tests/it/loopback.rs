//! Loopback address blocks for tests that serve on a fixed port.
//!
//! Miner clients detect on the firmware's port only (4028 for btminer and cgminer), so a
//! simulated fleet cannot bind port 0; instead every test takes its own addresses. Linux
//! routes all of 127.0.0.0/8 to `lo`. The ranges: unit tests in `src/` use 127.2.x.x;
//! integration tests take blocks from here, 127.3.0.0 and up. **Every test that starts a
//! fleet (the emulator's, the asic-rs driver's, the bench's) takes its block here**, so
//! tests that run in parallel in this process never share an address.
//!
//! Another process (a second worktree's test run) may hold the same block: the counter
//! starts at a place picked from the process id, and [`start_fleet`] moves on to the next
//! block when an address is in use.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use gridminer::emulator::{Fleet, FleetOptions};

/// 127.3.0.0: the first address integration tests use.
const BASE: u32 = 0x7f03_0000;
/// Up to 127.127.255.255: far from 127.0.0.1 and everything else on `lo`.
const SPAN: u32 = 0x007d_0000;

fn next() -> &'static AtomicU32 {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    // Blocks of 4096 addresses per process id, wrapping within the span.
    NEXT.get_or_init(|| AtomicU32::new((std::process::id() % (SPAN >> 12)) << 12))
}

/// `n` consecutive loopback addresses no other test of this process has; the first is
/// returned. Blocks never straddle a `.0` or `.255` last octet.
pub fn block(n: u32) -> Ipv4Addr {
    assert!((1..=254).contains(&n), "a block is 1 to 254 addresses");
    // Each block starts at x.y.z.1 of its own /24.
    let slot = next().fetch_add(256, Ordering::Relaxed) % SPAN;
    Ipv4Addr::from(BASE + slot + 1)
}

/// Starts a fleet on a fresh block (`opts.first` is overwritten), moving to another
/// block while an address is held by someone else.
pub async fn start_fleet(mut opts: FleetOptions) -> Fleet {
    for _ in 0..32 {
        opts.first = block(opts.miners as u32);
        match Fleet::start(opts.clone()).await {
            Ok(f) => return f,
            Err(e) if e.is_addr_in_use() => continue,
            Err(e) => panic!("the fleet does not start: {e}"),
        }
    }
    panic!("32 loopback blocks in a row were in use");
}

#[test]
fn blocks_are_distinct_and_loopback() {
    let a = block(10);
    let b = block(10);
    assert_ne!(a, b);
    for ip in [a, b] {
        assert!(
            ip.is_loopback() && ip.octets()[3] == 1 && ip.octets()[1] >= 3,
            "{ip}"
        );
    }
}
