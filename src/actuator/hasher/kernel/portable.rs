//! Portable kernel: sha2's `compress256` (which itself picks SHA-NI, ARMv8 SHA2 or plain
//! code at run time) driven with a midstate, one nonce at a time.
//!
//! Role: the kernel for CPUs without a hand-written one (aarch64 edge boxes, old x86) and
//! the baseline the fast kernel is measured against. Must not allocate in the loop.

use sha2::block_api::compress256;

use super::super::job::{ScanJob, SHA256_IV};

pub fn scan<F: FnMut(u32)>(job: &ScanJob, start: u32, count: u32, mut on_candidate: F) {
    // Second block of the header: merkle tail, time, bits, nonce, then SHA padding for an
    // 80-byte message (0x80, zeros, bit length 640).
    let mut block1 = [0u8; 64];
    for (i, w) in job.tail.iter().enumerate() {
        block1[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
    }
    block1[16] = 0x80;
    block1[62..64].copy_from_slice(&640u16.to_be_bytes());
    // The second hash's only block: 32 bytes of hash, padding, bit length 256.
    let mut block2 = [0u8; 64];
    block2[32] = 0x80;
    block2[62..64].copy_from_slice(&256u16.to_be_bytes());
    let top = job.target.top_word();

    let end = start as u64 + count as u64;
    let mut n = start as u64;
    while n < end {
        let nonce = n as u32;
        block1[12..16].copy_from_slice(&nonce.to_le_bytes());
        let mut s = job.midstate;
        compress256(&mut s, std::slice::from_ref(&block1));
        for (i, w) in s.iter().enumerate() {
            block2[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
        }
        let mut h = SHA256_IV;
        compress256(&mut h, std::slice::from_ref(&block2));
        // The hash's most significant limb, read little-endian, is the byte-swapped last
        // state word.
        if h[7].swap_bytes() <= top {
            on_candidate(nonce);
        }
        n += 1;
    }
}
