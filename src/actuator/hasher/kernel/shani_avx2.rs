//! x86_64 SHA-NI rounds with the message schedule computed by AVX2 across 8 nonces.
//!
//! Why: on some SHA-NI CPUs (this project's Ice Lake Xeon among them) `sha256msg1` and
//! `sha256msg2` issue only every ~4.4 cycles, against ~2.4 for `sha256rnds2`, so the
//! schedule may bound the plain SHA-NI kernel. Measured here it did not pay off (the
//! plain kernel stays the default; `hash bench` races both), but it is kept as the
//! starting point for an AVX-512 schedule of 16 nonces. Here the schedule of 8
//! nonces is computed side by side in 256-bit vectors on the ordinary vector ALUs, stored
//! as (W+K) pairs in the layout `sha256rnds2` reads (one 64-bit load per two rounds, no
//! shuffles), and the SHA unit only does rounds. Same precomputation and early exit as
//! `shani.rs`. Must not run unless [`supported`] says so; must not allocate (the buffers
//! live on the stack).

use std::arch::x86_64::*;

use super::super::job::{ScanJob, SHA256_IV};
use super::shani::K;

/// Nonces per schedule batch (one 256-bit vector of 32-bit words).
const BATCH: usize = 8;
/// Nonces whose rounds are interleaved (2 xmm registers each).
const LANES: usize = 4;
/// Where nonce `n`'s (W_t, W_t+1) pair sits in the 16 words `unpacklo/hi_epi32` write.
const PAIR_AT: [usize; BATCH] = [0, 2, 8, 10, 4, 6, 12, 14];

pub fn supported() -> bool {
    super::shani::supported() && is_x86_feature_detected!("avx2")
}

/// (W+K) pairs for 64 rounds of 8 nonces: `[t / 2][PAIR_AT[n] ..][2]`.
#[repr(C, align(32))]
struct Pairs([[u32; 16]; 32]);

#[inline(always)]
unsafe fn sigma0(x: __m256i) -> __m256i {
    let a = _mm256_xor_si256(_mm256_srli_epi32::<7>(x), _mm256_slli_epi32::<25>(x));
    let b = _mm256_xor_si256(_mm256_srli_epi32::<18>(x), _mm256_slli_epi32::<14>(x));
    _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_srli_epi32::<3>(x))
}

#[inline(always)]
unsafe fn sigma1(x: __m256i) -> __m256i {
    let a = _mm256_xor_si256(_mm256_srli_epi32::<17>(x), _mm256_slli_epi32::<15>(x));
    let b = _mm256_xor_si256(_mm256_srli_epi32::<19>(x), _mm256_slli_epi32::<13>(x));
    _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_srli_epi32::<10>(x))
}

/// Extends `w[0..16]` to `w[0..upto]` and writes the (W+K) pairs from round `from`.
#[inline(always)]
unsafe fn schedule(w: &mut [__m256i; 64], upto: usize, from: usize, out: &mut Pairs) {
    for t in 16..upto {
        w[t] = _mm256_add_epi32(
            _mm256_add_epi32(sigma1(w[t - 2]), w[t - 7]),
            _mm256_add_epi32(sigma0(w[t - 15]), w[t - 16]),
        );
    }
    let mut t = from;
    while t + 1 < upto {
        let a = _mm256_add_epi32(w[t], _mm256_set1_epi32(K[t] as i32));
        let b = _mm256_add_epi32(w[t + 1], _mm256_set1_epi32(K[t + 1] as i32));
        let p = out.0[t / 2].as_mut_ptr() as *mut __m256i;
        _mm256_store_si256(p, _mm256_unpacklo_epi32(a, b));
        _mm256_store_si256(p.add(1), _mm256_unpackhi_epi32(a, b));
        t += 2;
    }
}

#[inline(always)]
unsafe fn pair(p: &Pairs, t: usize, n: usize) -> __m128i {
    _mm_loadl_epi64(p.0[t / 2].as_ptr().add(PAIR_AT[n]) as *const __m128i)
}

/// See [`super::Kernel::scan`].
///
/// # Safety
/// The CPU must support SHA, SSE4.1 and AVX2 ([`supported`]).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1,avx,avx2")]
pub unsafe fn scan<F: FnMut(u32)>(job: &ScanJob, start: u32, count: u32, mut on_candidate: F) {
    let top = job.target.top_word();
    let [a, b, c, d, e, f, g, h] = job.midstate.map(|x| x as i32);
    let mid0 = _mm_set_epi32(a, b, e, f);
    let mid1 = _mm_set_epi32(c, d, g, h);
    let [t0, t1, t2] = job.tail;
    // Rounds 0-1 of the header's second block do not depend on the nonce.
    let wk01 = _mm_set_epi32(
        0,
        0,
        t1.wrapping_add(K[1]) as i32,
        t0.wrapping_add(K[0]) as i32,
    );
    let r2_abef = _mm_sha256rnds2_epu32(mid1, mid0, wk01);
    let [ia, ib, ic, id, ie, iff, ig, ih] = SHA256_IV.map(|x| x as i32);
    let iv0 = _mm_set_epi32(ia, ib, ie, iff);
    let iv1 = _mm_set_epi32(ic, id, ig, ih);
    // Byte-reverse each 32-bit word: the nonce is read big-endian as message word 3.
    let bswap = _mm256_set_epi8(
        12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11, 4, 5,
        6, 7, 0, 1, 2, 3,
    );
    let lane_ids = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    let gather_idx = _mm256_set_epi32(56, 48, 40, 32, 24, 16, 8, 0);

    let mut w = [_mm256_setzero_si256(); 64];
    let mut p1 = Pairs([[0; 16]; 32]);
    let mut p2 = Pairs([[0; 16]; 32]);
    let mut h1 = [0u32; 64];

    let end = start as u64 + count as u64;
    let mut n0 = start as u64;
    while n0 < end {
        let left = (end - n0).min(BATCH as u64) as usize;
        // First hash: W0..2 from the header, W3 the nonce, then padding for 80 bytes.
        let nonces = _mm256_add_epi32(_mm256_set1_epi32(n0 as u32 as i32), lane_ids);
        w[0] = _mm256_set1_epi32(t0 as i32);
        w[1] = _mm256_set1_epi32(t1 as i32);
        w[2] = _mm256_set1_epi32(t2 as i32);
        w[3] = _mm256_shuffle_epi8(nonces, bswap);
        w[4] = _mm256_set1_epi32(0x8000_0000u32 as i32);
        for x in w.iter_mut().take(15).skip(5) {
            *x = _mm256_setzero_si256();
        }
        w[15] = _mm256_set1_epi32(640);
        schedule(&mut w, 64, 2, &mut p1);

        for base in (0..BATCH).step_by(LANES) {
            let mut s0 = [mid0; LANES];
            let mut s1 = [r2_abef; LANES];
            for l in 0..LANES {
                s0[l] = _mm_sha256rnds2_epu32(s0[l], s1[l], pair(&p1, 2, base + l));
            }
            let mut t = 4;
            while t < 64 {
                for l in 0..LANES {
                    s1[l] = _mm_sha256rnds2_epu32(s1[l], s0[l], pair(&p1, t, base + l));
                    s0[l] = _mm_sha256rnds2_epu32(s0[l], s1[l], pair(&p1, t + 2, base + l));
                }
                t += 4;
            }
            for l in 0..LANES {
                // State words A..H in order: the second hash's message.
                let abef = _mm_add_epi32(s0[l], mid0);
                let cdgh = _mm_add_epi32(s1[l], mid1);
                let feba = _mm_shuffle_epi32::<0x1B>(abef);
                let dchg = _mm_shuffle_epi32::<0xB1>(cdgh);
                let out = h1.as_mut_ptr().add(8 * (base + l)) as *mut __m128i;
                _mm_storeu_si128(out, _mm_blend_epi16::<0xF0>(feba, dchg));
                _mm_storeu_si128(out.add(1), _mm_alignr_epi8::<8>(dchg, feba));
            }
        }

        // Second hash: the 32-byte first hash, then padding for 32 bytes.
        for (j, x) in w.iter_mut().take(8).enumerate() {
            *x = _mm256_i32gather_epi32::<4>(h1.as_ptr().add(j) as *const i32, gather_idx);
        }
        w[8] = _mm256_set1_epi32(0x8000_0000u32 as i32);
        for x in w.iter_mut().take(15).skip(9) {
            *x = _mm256_setzero_si256();
        }
        w[15] = _mm256_set1_epi32(256);
        schedule(&mut w, 62, 0, &mut p2);

        let mut tops = [0u32; BATCH];
        for base in (0..BATCH).step_by(LANES) {
            let mut s0 = [iv0; LANES];
            let mut s1 = [iv1; LANES];
            let mut t = 0;
            while t < 60 {
                for l in 0..LANES {
                    s1[l] = _mm_sha256rnds2_epu32(s1[l], s0[l], pair(&p2, t, base + l));
                    s0[l] = _mm_sha256rnds2_epu32(s0[l], s1[l], pair(&p2, t + 2, base + l));
                }
                t += 4;
            }
            // Rounds 60-61 only: F is then what H is after round 64.
            for l in 0..LANES {
                let abef = _mm_sha256rnds2_epu32(s1[l], s0[l], pair(&p2, 60, base + l));
                let h7 = (_mm_cvtsi128_si32(abef) as u32).wrapping_add(SHA256_IV[7]);
                tops[base + l] = h7.swap_bytes();
            }
        }
        for (l, &t) in tops.iter().enumerate().take(left) {
            if t <= top {
                on_candidate((n0 + l as u64) as u32);
            }
        }
        n0 += left as u64;
    }
}
