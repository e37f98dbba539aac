//! x86_64 AVX-512 kernel: plain SHA-256 rounds on 16 nonces at once, one nonce per 32-bit
//! lane of a zmm register (`vprord` for the rotations, `vpternlogd` for Ch, Maj and the
//! three-way XORs), so the SHA unit that bounds the SHA-NI kernel is not used at all.
//!
//! Role: the fast path on x86_64 CPUs that report AVX-512F at run time. Must not be
//! called unless [`supported`] said yes, must not allocate, and keeps everything that
//! does not depend on the nonce out of the loop: the midstate, rounds 0-2 of the
//! header's second block (and all of round 3 but adding the nonce), message words 16-17
//! and most of 18-19 and 30-32 (padding), round 0 of the second hash but adding its first
//! word, and the second hash's padding words. The second hash stops after round 60: its
//! E is then what H becomes after round 63, the hash's most significant word, and rounds
//! 57-59 skip A, which nothing reads before the end.

use std::arch::x86_64::*;

use super::super::job::{ScanJob, SHA256_IV, SHA256_K as K};

/// Nonces per call of the hash: the 16 lanes of a zmm register.
pub const LANES: usize = 16;

/// Whether this CPU runs this kernel (checked at run time, never assumed at build time).
pub fn supported() -> bool {
    is_x86_feature_detected!("avx512f")
}

const fn bsig0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}
const fn bsig1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}
const fn ssig0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}
const fn ssig1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}

/// One scalar round with message word `w` (for the nonce-independent rounds).
fn round_scalar(s: &mut [u32; 8], t: usize, w: u32) {
    let [a, b, c, d, e, f, g, h] = *s;
    let t1 = h
        .wrapping_add(bsig1(e))
        .wrapping_add((e & f) ^ (!e & g))
        .wrapping_add(K[t])
        .wrapping_add(w);
    let t2 = bsig0(a).wrapping_add((a & b) ^ (a & c) ^ (b & c));
    *s = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
}

/// Message words 4-15 of the header's second block: padding for 80 bytes.
const PAD1: [u32; 16] = [0, 0, 0, 0, 0x8000_0000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 640];
/// Message words 8-15 of the second hash: padding for 32 bytes.
const PAD2: [u32; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0x8000_0000, 0, 0, 0, 0, 0, 0, 256];

/// Everything about one header that holds for all its nonces.
struct Pre {
    mid: [u32; 8],
    /// First hash after round 3 as if the nonce word W3 were 0: the nonce is then only
    /// added to A and E.
    r3: [u32; 8],
    /// W16, W17 (constant), and the constant parts of W18 = c + σ0(W3), W19 = c + W3,
    /// W31 = σ1(W29) + W24 + c, W32 = σ1(W30) + W25 + c.
    w16: u32,
    w17: u32,
    w18c: u32,
    w19c: u32,
    w31c: u32,
    w32c: u32,
    /// Second hash after round 0 as if its W0 were 0 (W0 is then added to A and E).
    h0: [u32; 8],
    /// The target's top word: a lane is a candidate if its byte-swapped H7 is at most this.
    top: u32,
}

fn prepare(job: &ScanJob) -> Pre {
    let [w0, w1, w2] = job.tail;
    let mut r3 = job.midstate;
    for (t, w) in [w0, w1, w2, 0].into_iter().enumerate() {
        round_scalar(&mut r3, t, w);
    }
    let w16 = ssig0(w1).wrapping_add(w0);
    let w17 = ssig1(640).wrapping_add(ssig0(w2)).wrapping_add(w1);
    let mut h0 = SHA256_IV;
    round_scalar(&mut h0, 0, 0);
    Pre {
        mid: job.midstate,
        r3,
        w16,
        w17,
        w18c: ssig1(w16).wrapping_add(w2),
        w19c: ssig1(w17).wrapping_add(ssig0(0x8000_0000)),
        w31c: ssig0(w16).wrapping_add(640),
        w32c: ssig0(w17).wrapping_add(w16),
        h0,
        top: job.target.top_word(),
    }
}

type V = __m512i;

// The helpers below are safe `#[target_feature]` functions: the compiler lets only code
// that has AVX-512F enabled call them without `unsafe`, so nothing here can reach an
// AVX-512 instruction except through `scan`. `#[inline(always)]` cannot be combined with
// `#[target_feature]` on stable; `#[inline]` is enough for LLVM to inline them into
// callers with the same features (`hash bench` measured no change).

#[inline]
#[target_feature(enable = "avx512f")]
fn splat(x: u32) -> V {
    _mm512_set1_epi32(x as i32)
}
/// A state (or message) of 8 words, broadcast to every lane.
#[inline]
#[target_feature(enable = "avx512f")]
fn splat8(x: &[u32; 8]) -> [V; 8] {
    let [a, b, c, d, e, f, g, h] = *x;
    [
        splat(a),
        splat(b),
        splat(c),
        splat(d),
        splat(e),
        splat(f),
        splat(g),
        splat(h),
    ]
}
#[inline]
#[target_feature(enable = "avx512f")]
fn add(a: V, b: V) -> V {
    _mm512_add_epi32(a, b)
}
#[inline]
#[target_feature(enable = "avx512f")]
fn xor3(a: V, b: V, c: V) -> V {
    _mm512_ternarylogic_epi32::<0x96>(a, b, c)
}
/// `a ? b : c` bitwise (Ch).
#[inline]
#[target_feature(enable = "avx512f")]
fn choose(a: V, b: V, c: V) -> V {
    _mm512_ternarylogic_epi32::<0xCA>(a, b, c)
}
#[inline]
#[target_feature(enable = "avx512f")]
fn maj(a: V, b: V, c: V) -> V {
    _mm512_ternarylogic_epi32::<0xE8>(a, b, c)
}
#[inline]
#[target_feature(enable = "avx512f")]
fn vbsig0(x: V) -> V {
    xor3(
        _mm512_ror_epi32::<2>(x),
        _mm512_ror_epi32::<13>(x),
        _mm512_ror_epi32::<22>(x),
    )
}
#[inline]
#[target_feature(enable = "avx512f")]
fn vbsig1(x: V) -> V {
    xor3(
        _mm512_ror_epi32::<6>(x),
        _mm512_ror_epi32::<11>(x),
        _mm512_ror_epi32::<25>(x),
    )
}
#[inline]
#[target_feature(enable = "avx512f")]
fn vssig0(x: V) -> V {
    xor3(
        _mm512_ror_epi32::<7>(x),
        _mm512_ror_epi32::<18>(x),
        _mm512_srli_epi32::<3>(x),
    )
}
#[inline]
#[target_feature(enable = "avx512f")]
fn vssig1(x: V) -> V {
    xor3(
        _mm512_ror_epi32::<17>(x),
        _mm512_ror_epi32::<19>(x),
        _mm512_srli_epi32::<10>(x),
    )
}
/// Each lane's 32-bit word byte-swapped (AVX-512F only: two rotations and a blend).
#[inline]
#[target_feature(enable = "avx512f")]
fn bswap(x: V) -> V {
    choose(
        splat(0xff00_ff00),
        _mm512_ror_epi32::<8>(x),
        _mm512_rol_epi32::<8>(x),
    )
}

/// T1 of a round: H + (K + W) first, so constant parts can be folded and hoisted.
#[inline]
#[target_feature(enable = "avx512f")]
fn t1(s: &[V; 8], kw: V) -> V {
    add(add(add(s[7], kw), vbsig1(s[4])), choose(s[4], s[5], s[6]))
}

/// One round on 16 lanes, `kw` = K + W.
#[inline]
#[target_feature(enable = "avx512f")]
fn round(s: [V; 8], kw: V) -> [V; 8] {
    let t1 = t1(&s, kw);
    let [a, b, c, d, e, f, g, _] = s;
    let t2 = add(vbsig0(a), maj(a, b, c));
    [add(t1, t2), a, b, c, add(d, t1), e, f, g]
}

/// A round whose new A is never read (the second hash's rounds 57-59: A reaches D only
/// after round 60). The old A stands in for it.
#[inline]
#[target_feature(enable = "avx512f")]
fn round_e(s: [V; 8], kw: V) -> [V; 8] {
    let t1 = t1(&s, kw);
    let [a, b, c, d, e, f, g, _] = s;
    [a, a, b, c, add(d, t1), e, f, g]
}

/// Rounds whose message word is padding: K + W is a constant.
macro_rules! pad_rounds {
    ($s:ident, $pad:ident, [$($t:literal),*]) => {
        $( $s = round($s, splat(K[$t].wrapping_add($pad[$t]))); )*
    };
}

/// Rounds with message words already in `$w`.
macro_rules! rounds {
    ($s:ident, $w:ident, [$($t:literal),*]) => {
        $( $s = round($s, add($w[$t], splat(K[$t]))); )*
    };
}

/// Message word t from the general schedule, then round t.
macro_rules! sched_rounds {
    ($s:ident, $w:ident, [$($t:literal),*]) => {
        $(
            $w[$t] = add(
                add(vssig1($w[$t - 2]), $w[$t - 7]),
                add(vssig0($w[$t - 15]), $w[$t - 16]),
            );
            $s = round($s, add($w[$t], splat(K[$t])));
        )*
    };
}

/// Double SHA-256 of nonces `nonce .. nonce + 16` (wrapping); bit l of the result is set
/// if lane l's hash passes the target's top word.
#[target_feature(enable = "avx512f")]
fn hash16(p: &Pre, nonce: u32) -> u16 {
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    // The nonce is the header's little-endian word; SHA reads W3 big-endian.
    let w3 = bswap(add(splat(nonce), lanes));
    let mut w = [_mm512_setzero_si512(); 64];

    // First hash, second block.
    let mut s = splat8(&p.r3);
    s[0] = add(s[0], w3);
    s[4] = add(s[4], w3);
    pad_rounds!(s, PAD1, [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    w[16] = splat(p.w16);
    w[17] = splat(p.w17);
    w[18] = add(splat(p.w18c), vssig0(w3));
    w[19] = add(splat(p.w19c), w3);
    w[20] = add(vssig1(w[18]), splat(PAD1[4]));
    w[21] = vssig1(w[19]);
    w[22] = add(vssig1(w[20]), splat(PAD1[15]));
    rounds!(s, w, [16, 17, 18, 19, 20, 21, 22]);
    w[23] = add(vssig1(w[21]), w[16]);
    w[24] = add(vssig1(w[22]), w[17]);
    w[25] = add(vssig1(w[23]), w[18]);
    w[26] = add(vssig1(w[24]), w[19]);
    w[27] = add(vssig1(w[25]), w[20]);
    w[28] = add(vssig1(w[26]), w[21]);
    w[29] = add(vssig1(w[27]), w[22]);
    w[30] = add(add(vssig1(w[28]), w[23]), splat(ssig0(PAD1[15])));
    w[31] = add(add(vssig1(w[29]), w[24]), splat(p.w31c));
    w[32] = add(add(vssig1(w[30]), w[25]), splat(p.w32c));
    rounds!(s, w, [23, 24, 25, 26, 27, 28, 29, 30, 31, 32]);
    sched_rounds!(
        s,
        w,
        [
            33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54,
            55, 56, 57, 58, 59, 60, 61, 62, 63
        ]
    );

    // Second hash: its message is the first hash's state plus the midstate.
    for i in 0..8 {
        w[i] = add(s[i], splat(p.mid[i]));
    }
    let mut s = splat8(&p.h0);
    s[0] = add(s[0], w[0]);
    s[4] = add(s[4], w[0]);
    rounds!(s, w, [1, 2, 3, 4, 5, 6, 7]);
    pad_rounds!(s, PAD2, [8, 9, 10, 11, 12, 13, 14, 15]);
    w[16] = add(vssig0(w[1]), w[0]);
    w[17] = add(add(vssig0(w[2]), w[1]), splat(ssig1(PAD2[15])));
    w[18] = add(add(vssig1(w[16]), w[2]), vssig0(w[3]));
    w[19] = add(add(vssig1(w[17]), w[3]), vssig0(w[4]));
    w[20] = add(add(vssig1(w[18]), w[4]), vssig0(w[5]));
    w[21] = add(add(vssig1(w[19]), w[5]), vssig0(w[6]));
    w[22] = add(add(vssig1(w[20]), w[6]), add(vssig0(w[7]), splat(PAD2[15])));
    w[23] = add(add(vssig1(w[21]), w[16]), add(w[7], splat(ssig0(PAD2[8]))));
    w[24] = add(add(vssig1(w[22]), w[17]), splat(PAD2[8]));
    rounds!(s, w, [16, 17, 18, 19, 20, 21, 22, 23, 24]);
    w[25] = add(vssig1(w[23]), w[18]);
    w[26] = add(vssig1(w[24]), w[19]);
    w[27] = add(vssig1(w[25]), w[20]);
    w[28] = add(vssig1(w[26]), w[21]);
    w[29] = add(vssig1(w[27]), w[22]);
    w[30] = add(add(vssig1(w[28]), w[23]), splat(ssig0(PAD2[15])));
    w[31] = add(
        add(vssig1(w[29]), w[24]),
        add(vssig0(w[16]), splat(PAD2[15])),
    );
    rounds!(s, w, [25, 26, 27, 28, 29, 30, 31]);
    sched_rounds!(
        s,
        w,
        [
            32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53,
            54, 55, 56
        ]
    );
    for t in 57..60 {
        w[t] = add(
            add(vssig1(w[t - 2]), w[t - 7]),
            add(vssig0(w[t - 15]), w[t - 16]),
        );
        s = round_e(s, add(w[t], splat(K[t])));
    }
    // Round 60, E only: after round 63 it is H, and H7 = IV7 + H.
    let w60 = add(add(vssig1(w[58]), w[53]), add(vssig0(w[45]), w[44]));
    let e60 = add(s[3], t1(&s, add(w60, splat(K[60]))));
    let h7 = add(e60, splat(SHA256_IV[7]));
    // The hash read as a little-endian number has the byte-swapped H7 on top.
    _mm512_cmple_epu32_mask(bswap(h7), splat(p.top))
}

/// See [`super::Kernel::scan`].
///
/// A `#[target_feature]` function: calling it from code without AVX-512F enabled takes
/// `unsafe`, and is sound only once [`supported`] said yes (the instructions would fault).
#[target_feature(enable = "avx512f")]
pub fn scan<F: FnMut(u32)>(job: &ScanJob, start: u32, count: u32, mut on_candidate: F) {
    let p = prepare(job);
    let end = start as u64 + count as u64;
    let mut n = start as u64;
    while n < end {
        let left = (end - n).min(LANES as u64) as u32;
        // A short tail hashes all 16 lanes (wrapping past 2^32 is harmless) and ignores
        // the spare ones.
        let mut hits = hash16(&p, n as u32) as u32 & (u32::MAX >> (32 - left));
        while hits != 0 {
            on_candidate(n as u32 + hits.trailing_zeros());
            hits &= hits - 1;
        }
        n += left as u64;
    }
}
