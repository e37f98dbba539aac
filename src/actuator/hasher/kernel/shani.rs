//! x86_64 SHA-NI kernel: `sha256rnds2` / `sha256msg1` / `sha256msg2` via `std::arch`,
//! several nonces interleaved so their independent round chains hide the instruction's
//! latency.
//!
//! Role: the fast path on x86_64 CPUs that report the SHA extensions at run time. Must not
//! be called unless [`supported`] said yes (the instructions would fault), must not
//! allocate, and keeps everything that does not depend on the nonce out of the loop:
//! the midstate, rounds 0-1 of the header's second block, the message words of rounds
//! 4-15 (padding), and rounds 8-15 of the second hash (padding again). The second hash
//! stops after round 62: the last state word is then final, and almost every nonce is
//! rejected on it.

use std::arch::x86_64::*;

use super::super::job::{ScanJob, SHA256_IV, SHA256_K as K};

/// Nonces hashed side by side. `sha256rnds2` has a latency of several cycles but can
/// start every cycle or two; interleaved independent chains fill those slots. Chosen by
/// measurement with `gridminer hash bench` (each lane needs 6 xmm registers of 16).
pub const LANES: usize = 2;

/// Whether this CPU runs this kernel (checked at run time, never assumed at build time).
pub fn supported() -> bool {
    is_x86_feature_detected!("sha")
        && is_x86_feature_detected!("sse2")
        && is_x86_feature_detected!("ssse3")
        && is_x86_feature_detected!("sse4.1")
}

// The helpers are safe `#[target_feature]` functions (rather than `#[inline(always)]`,
// which stable Rust does not combine with it): only code with the features enabled can
// call them without `unsafe`, so no SHA instruction is reachable except through `scan`.

/// Four message words W[i..i+4] (lane 0 = W[i]).
#[inline]
#[target_feature(enable = "sse2")]
fn words(w: [u32; 4]) -> __m128i {
    _mm_set_epi32(w[3] as i32, w[2] as i32, w[1] as i32, w[0] as i32)
}

/// (ABEF, CDGH): the register layout `sha256rnds2` works on.
#[inline]
#[target_feature(enable = "sse2")]
fn abef_cdgh(s: &[u32; 8]) -> (__m128i, __m128i) {
    let [a, b, c, d, e, f, g, h] = s.map(|x| x as i32);
    (_mm_set_epi32(a, b, e, f), _mm_set_epi32(c, d, g, h))
}

#[inline]
#[target_feature(enable = "sse2")]
fn kv(i: usize) -> __m128i {
    words([K[i], K[i + 1], K[i + 2], K[i + 3]])
}

/// Everything about one header that holds for all its nonces.
struct Pre {
    /// Midstate in ABEF/CDGH.
    mid0: __m128i,
    mid1: __m128i,
    /// State after rounds 0-1 of the second block (ABEF); CDGH is then `mid0`.
    r2_abef: __m128i,
    /// W2 + K2, and K3 to which the nonce is added.
    w2k2: u32,
    /// W0..W2 of the second block, for the message schedule.
    w012: [u32; 3],
    /// Rounds 4-15 of the second block: message (W+K) halves, lo and hi, constant.
    c_lo: [__m128i; 3],
    c_hi: [__m128i; 3],
    /// Constant message words W4..W15 of the second block.
    m1: __m128i,
    m2: __m128i,
    m3: __m128i,
    /// Second hash: IV in ABEF/CDGH, and rounds 8-15's constant W+K halves and words.
    iv0: __m128i,
    iv1: __m128i,
    d_lo: [__m128i; 2],
    d_hi: [__m128i; 2],
    p2: __m128i,
    p3: __m128i,
    /// `sha256msg1` results whose inputs are padding only: rounds 20 and 24 of the
    /// first hash, round 24 of the second. The SHA unit is the bottleneck, so each
    /// instruction taken off it counts.
    h1_msg1_20: __m128i,
    h1_msg1_24: __m128i,
    h2_msg1_24: __m128i,
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn prepare(job: &ScanJob) -> Pre {
    let (mid0, mid1) = abef_cdgh(&job.midstate);
    let [w0, w1, w2] = job.tail;
    let wk01 = words([w0.wrapping_add(K[0]), w1.wrapping_add(K[1]), 0, 0]);
    let r2_abef = _mm_sha256rnds2_epu32(mid1, mid0, wk01);
    let m1 = words([0x8000_0000, 0, 0, 0]);
    let m2 = words([0, 0, 0, 0]);
    let m3 = words([0, 0, 0, 640]);
    let split = |m: __m128i, k: usize| {
        let x = _mm_add_epi32(m, kv(k));
        (x, _mm_shuffle_epi32::<0x0E>(x))
    };
    let (a, b, c) = (split(m1, 4), split(m2, 8), split(m3, 12));
    let (iv0, iv1) = abef_cdgh(&SHA256_IV);
    let p2 = words([0x8000_0000, 0, 0, 0]);
    let p3 = words([0, 0, 0, 256]);
    let (d, e) = (split(p2, 8), split(p3, 12));
    Pre {
        mid0,
        mid1,
        r2_abef,
        w2k2: w2.wrapping_add(K[2]),
        w012: [w0, w1, w2],
        c_lo: [a.0, b.0, c.0],
        c_hi: [a.1, b.1, c.1],
        m1,
        m2,
        m3,
        iv0,
        iv1,
        d_lo: [d.0, e.0],
        d_hi: [d.1, e.1],
        p2,
        p3,
        h1_msg1_20: _mm_sha256msg1_epu32(m1, m2),
        h1_msg1_24: _mm_sha256msg1_epu32(m2, m3),
        h2_msg1_24: _mm_sha256msg1_epu32(p2, p3),
    }
}

/// Four rounds on every lane with message (W+K) `x[l]`.
macro_rules! quad {
    ($s0:ident, $s1:ident, $x:expr) => {
        for l in 0..LANES {
            let x = $x(l);
            $s1[l] = _mm_sha256rnds2_epu32($s1[l], $s0[l], x);
            $s0[l] = _mm_sha256rnds2_epu32($s0[l], $s1[l], _mm_shuffle_epi32::<0x0E>(x));
        }
    };
}

/// Next four message words into `$a` (W[t..t+4] from W[t-16..t]), then four rounds with them.
macro_rules! sched_quad {
    ($s0:ident, $s1:ident, $a:ident, $b:ident, $c:ident, $d:ident, $k:expr) => {
        for l in 0..LANES {
            let t = _mm_add_epi32(
                _mm_sha256msg1_epu32($a[l], $b[l]),
                _mm_alignr_epi8::<4>($d[l], $c[l]),
            );
            $a[l] = _mm_sha256msg2_epu32(t, $d[l]);
        }
        let k = kv($k);
        quad!($s0, $s1, |l: usize| _mm_add_epi32($a[l], k));
    };
}

/// As `sched_quad`, with `sha256msg1($a, $b)` already known (`$pre`).
macro_rules! sched_quad_pre {
    ($s0:ident, $s1:ident, $a:ident, $c:ident, $d:ident, $pre:expr, $k:expr) => {
        for l in 0..LANES {
            let t = _mm_add_epi32($pre, _mm_alignr_epi8::<4>($d[l], $c[l]));
            $a[l] = _mm_sha256msg2_epu32(t, $d[l]);
        }
        let k = kv($k);
        quad!($s0, $s1, |l: usize| _mm_add_epi32($a[l], k));
    };
}

/// Rounds 32..60 with the message schedule (16..32 are written out per hash, where
/// padding makes some of the schedule constant).
macro_rules! rounds_32_to_60 {
    ($s0:ident, $s1:ident, $m0:ident, $m1:ident, $m2:ident, $m3:ident) => {
        sched_quad!($s0, $s1, $m0, $m1, $m2, $m3, 32);
        sched_quad!($s0, $s1, $m1, $m2, $m3, $m0, 36);
        sched_quad!($s0, $s1, $m2, $m3, $m0, $m1, 40);
        sched_quad!($s0, $s1, $m3, $m0, $m1, $m2, 44);
        sched_quad!($s0, $s1, $m0, $m1, $m2, $m3, 48);
        sched_quad!($s0, $s1, $m1, $m2, $m3, $m0, 52);
        sched_quad!($s0, $s1, $m2, $m3, $m0, $m1, 56);
    };
}

/// Double SHA-256 of `LANES` nonces; returns each hash's most significant 32 bits
/// (little-endian reading), which is all the early rejection needs.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn hash_lanes(p: &Pre, nonces: [u32; LANES]) -> [u32; LANES] {
    // First hash, second block. The nonce is the 4th message word, read big-endian.
    let mut s1 = [p.r2_abef; LANES];
    let mut s0 = [p.mid0; LANES];
    let mut m0: [__m128i; LANES] = [_mm_setzero_si128(); LANES];
    for l in 0..LANES {
        let w3 = nonces[l].swap_bytes();
        m0[l] = words([p.w012[0], p.w012[1], p.w012[2], w3]);
        let x = words([p.w2k2, w3.wrapping_add(K[3]), 0, 0]);
        // Rounds 2-3: CDGH is the midstate's ABEF, ABEF is the precomputed r2 state.
        s0[l] = _mm_sha256rnds2_epu32(s0[l], s1[l], x);
    }
    for g in 0..3 {
        for l in 0..LANES {
            s1[l] = _mm_sha256rnds2_epu32(s1[l], s0[l], p.c_lo[g]);
            s0[l] = _mm_sha256rnds2_epu32(s0[l], s1[l], p.c_hi[g]);
        }
    }
    let mut m1 = [p.m1; LANES];
    let mut m2 = [p.m2; LANES];
    let mut m3 = [p.m3; LANES];
    sched_quad!(s0, s1, m0, m1, m2, m3, 16);
    sched_quad_pre!(s0, s1, m1, m3, m0, p.h1_msg1_20, 20);
    sched_quad_pre!(s0, s1, m2, m0, m1, p.h1_msg1_24, 24);
    sched_quad!(s0, s1, m3, m0, m1, m2, 28);
    rounds_32_to_60!(s0, s1, m0, m1, m2, m3);
    sched_quad!(s0, s1, m3, m0, m1, m2, 60);

    // Second hash: its message is the first hash's state, in word order A..H.
    let mut h0 = [p.iv0; LANES];
    let mut h1 = [p.iv1; LANES];
    for l in 0..LANES {
        let abef = _mm_add_epi32(s0[l], p.mid0);
        let cdgh = _mm_add_epi32(s1[l], p.mid1);
        let feba = _mm_shuffle_epi32::<0x1B>(abef);
        let dchg = _mm_shuffle_epi32::<0xB1>(cdgh);
        m0[l] = _mm_blend_epi16::<0xF0>(feba, dchg);
        m1[l] = _mm_alignr_epi8::<8>(dchg, feba);
    }
    let (k0, k4) = (kv(0), kv(4));
    quad!(h0, h1, |l: usize| _mm_add_epi32(m0[l], k0));
    quad!(h0, h1, |l: usize| _mm_add_epi32(m1[l], k4));
    for g in 0..2 {
        for l in 0..LANES {
            h1[l] = _mm_sha256rnds2_epu32(h1[l], h0[l], p.d_lo[g]);
            h0[l] = _mm_sha256rnds2_epu32(h0[l], h1[l], p.d_hi[g]);
        }
    }
    m2 = [p.p2; LANES];
    m3 = [p.p3; LANES];
    sched_quad!(h0, h1, m0, m1, m2, m3, 16);
    sched_quad!(h0, h1, m1, m2, m3, m0, 20);
    sched_quad_pre!(h0, h1, m2, m0, m1, p.h2_msg1_24, 24);
    sched_quad!(h0, h1, m3, m0, m1, m2, 28);
    rounds_32_to_60!(h0, h1, m0, m1, m2, m3);
    // Rounds 60-61 only: after round 62 the F word is what H becomes after round 64.
    let k60 = kv(60);
    let mut top = [0u32; LANES];
    for l in 0..LANES {
        let t = _mm_add_epi32(
            _mm_sha256msg1_epu32(m3[l], m0[l]),
            _mm_alignr_epi8::<4>(m2[l], m1[l]),
        );
        let w60 = _mm_sha256msg2_epu32(t, m2[l]);
        let abef = _mm_sha256rnds2_epu32(h1[l], h0[l], _mm_add_epi32(w60, k60));
        let h7 = (_mm_cvtsi128_si32(abef) as u32).wrapping_add(SHA256_IV[7]);
        top[l] = h7.swap_bytes();
    }
    top
}

/// See [`super::Kernel::scan`].
///
/// A `#[target_feature]` function: calling it from code without these features enabled
/// takes `unsafe`, and is sound only once [`supported`] said yes (SHA instructions would
/// fault on a CPU without them).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub fn scan<F: FnMut(u32)>(job: &ScanJob, start: u32, count: u32, mut on_candidate: F) {
    let p = prepare(job);
    let top = job.target.top_word();
    let end = start as u64 + count as u64;
    let mut n = start as u64;
    while n < end {
        let left = (end - n).min(LANES as u64) as usize;
        // A short tail repeats its last nonce in the spare lanes and ignores them.
        let nonces: [u32; LANES] = std::array::from_fn(|l| (n + l.min(left - 1) as u64) as u32);
        let tops = hash_lanes(&p, nonces);
        for l in 0..left {
            if tops[l] <= top {
                on_candidate(nonces[l]);
            }
        }
        n += left as u64;
    }
}
