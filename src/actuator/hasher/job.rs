//! Block-header work: the 80-byte header, its midstate, compact and pool targets, and the
//! reference double SHA-256 every kernel is checked against.
//!
//! Role: turn a header (or a pool job, via [`HeaderSource`]) into the few words a kernel
//! needs per nonce, and judge a finished hash against a target. It must not hash nonce
//! ranges itself (that is `kernel`) nor know about threads or the network.

use std::fmt;

use sha2::{Digest, Sha256};

/// The SHA-256 initial state (FIPS 180-4, 5.3.3).
pub const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The SHA-256 round constants (FIPS 180-4, 4.2.2), for the hand-written kernels.
pub const SHA256_K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// A header or target that could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error("header must be 80 bytes (160 hex digits), got {0} bytes")]
    HeaderLength(usize),
    #[error("not hex: {0}")]
    Hex(String),
    #[error("compact target {0:#010x} is negative, zero or overflows 256 bits")]
    Compact(u32),
    #[error("pool difficulty {0} is not a positive finite number")]
    Difficulty(f64),
}

/// An 80-byte Bitcoin block header exactly as serialised on the wire
/// (version, previous hash, merkle root, time, bits, nonce; integers little-endian).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader(pub [u8; 80]);

impl BlockHeader {
    pub fn from_hex(s: &str) -> Result<Self, JobError> {
        let bytes = hex::decode(s.trim()).map_err(|e| JobError::Hex(e.to_string()))?;
        let arr: [u8; 80] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| JobError::HeaderLength(bytes.len()))?;
        Ok(Self(arr))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn le_u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }

    pub fn version(&self) -> u32 {
        self.le_u32(0)
    }
    pub fn time(&self) -> u32 {
        self.le_u32(68)
    }
    /// The header's own compact target (`nBits`).
    pub fn bits(&self) -> u32 {
        self.le_u32(72)
    }
    pub fn nonce(&self) -> u32 {
        self.le_u32(76)
    }
    pub fn set_nonce(&mut self, nonce: u32) {
        self.0[76..80].copy_from_slice(&nonce.to_le_bytes());
    }
    pub fn set_version(&mut self, version: u32) {
        self.0[0..4].copy_from_slice(&version.to_le_bytes());
    }

    /// The header with `nonce` in place.
    pub fn with_nonce(mut self, nonce: u32) -> Self {
        self.set_nonce(nonce);
        self
    }

    /// Double SHA-256 by the book (sha2's `Digest`, twice): the reference every kernel is
    /// checked against, and the final word on every candidate a kernel reports.
    pub fn block_hash(&self) -> Hash256 {
        Hash256(sha256d(&self.0))
    }

    /// What a kernel needs to hash this header's nonce space.
    pub fn prepare(&self, target: Target) -> ScanJob {
        let mut midstate = SHA256_IV;
        let first: [u8; 64] = self.0[..64].try_into().expect("64 bytes");
        sha2::block_api::compress256(&mut midstate, &[first]);
        let be = |at: usize| u32::from_be_bytes(self.0[at..at + 4].try_into().expect("4 bytes"));
        ScanJob {
            midstate,
            tail: [be(64), be(68), be(72)],
            target,
        }
    }
}

impl fmt::Debug for BlockHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHeader({})", self.to_hex())
    }
}

/// Double SHA-256 of any byte string (coinbase transactions, merkle nodes, headers).
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(data)).into()
}

/// A 256-bit hash in internal byte order (as SHA-256 outputs it). Bitcoin reads it as a
/// little-endian number; [`fmt::Display`] prints it reversed, the way block explorers do.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hash256(pub [u8; 32]);

impl Hash256 {
    /// The hash as a 256-bit little-endian number, least significant 32-bit limb first.
    pub fn limbs(&self) -> [u32; 8] {
        std::array::from_fn(|i| {
            let limb = self.0[4 * i..4 * i + 4].try_into();
            u32::from_le_bytes(limb.expect("i < 8: four of the hash's 32 bytes"))
        })
    }
    /// Display order (byte-reversed) hex, e.g. `000000000019d668…` for the genesis block.
    pub fn display_hex(&self) -> String {
        let mut b = self.0;
        b.reverse();
        hex::encode(b)
    }
}

impl fmt::Display for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_hex())
    }
}
impl fmt::Debug for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash256({})", self.display_hex())
    }
}

/// A 256-bit target: a hash meets it when, read as a little-endian number, it is `<=`.
/// Stored as eight 32-bit limbs, least significant first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Target(pub [u32; 8]);

impl Target {
    pub const MAX: Target = Target([u32::MAX; 8]);

    /// Expands a compact `nBits` value (mantissa of 3 bytes, exponent in bytes).
    /// Zero, negative (sign bit set) and overflowing encodings are refused rather than
    /// read as something that every hash meets.
    pub fn from_compact(bits: u32) -> Result<Target, JobError> {
        let exponent = bits >> 24;
        let mantissa = bits & 0x007f_ffff;
        if bits & 0x0080_0000 != 0 || mantissa == 0 {
            return Err(JobError::Compact(bits));
        }
        // value = mantissa * 256^(exponent - 3)
        let shift_bits = 8 * (exponent as i64 - 3);
        let mut limbs = [0u32; 8];
        if shift_bits < 0 {
            let m = mantissa >> (-shift_bits) as u32;
            if m == 0 {
                return Err(JobError::Compact(bits));
            }
            limbs[0] = m;
        } else {
            let significant = 64 - (mantissa as u64).leading_zeros() as i64;
            if shift_bits + significant > 256 {
                return Err(JobError::Compact(bits));
            }
            add_shifted(&mut limbs, mantissa as u64, shift_bits as u32);
        }
        Ok(Target(limbs))
    }

    /// A pool share target for Stratum difficulty `d`: `floor(0xffff * 2^208 / d)`,
    /// computed in IEEE double as pools and the Python checker do, and clamped to the
    /// largest 256-bit number for difficulties below about 2^-32.
    pub fn from_difficulty(d: f64) -> Result<Target, JobError> {
        if !(d.is_finite() && d > 0.0) {
            return Err(JobError::Difficulty(d));
        }
        let t = 65535.0 * 2f64.powi(208) / d;
        if !t.is_finite() || t >= 2f64.powi(256) {
            return Ok(Target::MAX);
        }
        if t < 1.0 {
            return Ok(Target([0; 8]));
        }
        // t = mantissa * 2^exp exactly, with a 53-bit integer mantissa.
        let bits = t.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i64 - 1075;
        let mantissa = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
        let mut limbs = [0u32; 8];
        if exp < 0 {
            add_shifted(&mut limbs, mantissa >> (-exp) as u32, 0);
        } else {
            add_shifted(&mut limbs, mantissa, exp as u32);
        }
        Ok(Target(limbs))
    }

    /// The most significant 32 bits: kernels reject a nonce on this word alone before
    /// finishing the hash.
    pub fn top_word(&self) -> u32 {
        self.0[7]
    }

    pub fn is_met_by(&self, hash: &Hash256) -> bool {
        let h = hash.limbs();
        for i in (0..8).rev() {
            if h[i] != self.0[i] {
                return h[i] < self.0[i];
            }
        }
        true
    }

    /// Big-endian hex of the whole 256-bit number.
    pub fn to_hex(&self) -> String {
        self.0.iter().rev().map(|l| format!("{l:08x}")).collect()
    }
}

/// limbs += value << shift (value < 2^64, the result fits 256 bits by the caller's check).
fn add_shifted(limbs: &mut [u32; 8], value: u64, shift: u32) {
    let limb = (shift / 32) as usize;
    let off = shift % 32;
    let wide = (value as u128) << off;
    for k in 0..4 {
        if limb + k < 8 {
            limbs[limb + k] |= (wide >> (32 * k)) as u32;
        }
    }
}

/// Everything a kernel needs for one header, all of it independent of the nonce:
/// the state after the first 64 bytes and the three big-endian message words that
/// precede the nonce in the second block (merkle tail, time, bits).
#[derive(Clone, Copy, Debug)]
pub struct ScanJob {
    pub midstate: [u32; 8],
    pub tail: [u32; 3],
    pub target: Target,
}

/// A source of distinct headers: each `roll` gives a header with its own 2^32 nonces.
/// Stratum jobs roll extranonce2 or version bits; a fixed header rolls nothing useful and
/// is for scans and benchmarks.
pub trait HeaderSource: Send + Sync + 'static {
    /// The header for `roll` with nonce 0.
    fn header(&self, roll: u64) -> BlockHeader;
    /// The target a found nonce must meet to be reported.
    fn target(&self) -> Target;
    /// Where hashing of `roll` starts (the rest of its nonce space follows up to 2^32).
    /// Pool work starts at 0; a scan of a known range starts inside it.
    fn start_nonce(&self, _roll: u64) -> u32 {
        0
    }
}

/// One header hashed with the target it should meet (bench, scan, tests).
/// Rolls change the timestamp so that threads never hash the same nonce twice.
#[derive(Clone, Debug)]
pub struct FixedHeader {
    pub header: BlockHeader,
    pub target: Target,
}

impl HeaderSource for FixedHeader {
    fn header(&self, roll: u64) -> BlockHeader {
        let mut h = self.header;
        let t = h.time().wrapping_add(roll as u32);
        h.0[68..72].copy_from_slice(&t.to_le_bytes());
        h
    }
    fn target(&self) -> Target {
        self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENESIS: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";

    #[test]
    fn genesis_hash_and_target() {
        let h = BlockHeader::from_hex(GENESIS).unwrap();
        assert_eq!(h.nonce(), 2083236893);
        assert_eq!(h.bits(), 0x1d00ffff);
        let hash = h.block_hash();
        assert_eq!(
            hash.display_hex(),
            "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
        );
        let t = Target::from_compact(h.bits()).unwrap();
        assert_eq!(
            t.to_hex(),
            "00000000ffff0000000000000000000000000000000000000000000000000000"
        );
        assert!(t.is_met_by(&hash));
        assert!(!t.is_met_by(&h.with_nonce(0).block_hash()));
    }

    #[test]
    fn compact_targets_refuse_nonsense() {
        assert_eq!(
            Target::from_compact(0x1a44b9f2).unwrap().to_hex(),
            "00000000000044b9f20000000000000000000000000000000000000000000000"
        );
        assert_eq!(Target::from_compact(0x03123456).unwrap().0[0], 0x123456);
        assert_eq!(Target::from_compact(0x02123456).unwrap().0[0], 0x1234);
        for bad in [0x1d800000, 0x1d000000, 0xff00ffff, 0x01003456] {
            assert!(Target::from_compact(bad).is_err(), "{bad:#x}");
        }
    }

    #[test]
    fn difficulty_one_is_the_classic_target() {
        assert_eq!(
            Target::from_difficulty(1.0).unwrap(),
            Target::from_compact(0x1d00ffff).unwrap()
        );
        // Difficulty 2 halves it; tiny difficulties saturate instead of overflowing.
        assert_eq!(Target::from_difficulty(2.0).unwrap().0[6], 0x7fff8000);
        assert_eq!(Target::from_difficulty(1e-12).unwrap(), Target::MAX);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Target::from_difficulty(bad).is_err());
        }
    }

    #[test]
    fn header_length_is_checked() {
        assert_eq!(
            BlockHeader::from_hex("00ff").unwrap_err(),
            JobError::HeaderLength(2)
        );
        assert!(matches!(
            BlockHeader::from_hex("zz").unwrap_err(),
            JobError::Hex(_)
        ));
    }
}
