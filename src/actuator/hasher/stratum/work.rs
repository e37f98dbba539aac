//! A pool job as hashable work: coinbase and merkle root assembly for each extranonce2,
//! BIP 310 version rolling, and the submit parameters of a found share.
//!
//! Role: from `mining.notify` + session state to headers, and from a share back to what
//! the pool needs to rebuild the same header. Must not do I/O.

use serde_json::{json, Value};

use super::message::Notify;
use crate::actuator::hasher::job::{sha256d, BlockHeader, HeaderSource, JobError, Target};
use crate::actuator::hasher::pool::Share;

/// Most version bits we roll (BIP 320 gives 16; more only if the pool grants them).
const MAX_ROLL_BITS: u32 = 16;

/// Everything needed to build the headers of one job for this session.
#[derive(Debug, Clone)]
pub struct StratumJob {
    pub notify: Notify,
    pub extranonce1: Vec<u8>,
    pub extranonce2_size: usize,
    /// Version bits we may roll (BIP 310), zero if none.
    pub version_mask: u32,
    pub difficulty: f64,
    pub target: Target,
}

/// Scatters the low bits of `value` into the set bits of `mask`, lowest first.
fn deposit(mut value: u32, mask: u32) -> u32 {
    let mut out = 0;
    let mut m = mask;
    while m != 0 && value != 0 {
        let bit = m & m.wrapping_neg();
        if value & 1 != 0 {
            out |= bit;
        }
        value >>= 1;
        m &= m - 1;
    }
    out
}

impl StratumJob {
    pub fn new(
        notify: Notify,
        extranonce1: Vec<u8>,
        extranonce2_size: usize,
        version_mask: u32,
        difficulty: f64,
    ) -> Result<StratumJob, JobError> {
        Ok(StratumJob {
            target: Target::from_difficulty(difficulty)?,
            notify,
            extranonce1,
            extranonce2_size,
            version_mask,
            difficulty,
        })
    }

    /// Version bits in use: the granted mask, limited to its lowest `MAX_ROLL_BITS`.
    fn roll_mask(&self) -> u32 {
        let mut m = self.version_mask;
        while m.count_ones() > MAX_ROLL_BITS {
            m &= m - 1;
        }
        m
    }

    /// Which (extranonce2, version) a roll means. With version rolling, the low bits of
    /// the roll pick version bits (offset by one, so that even the first header rolls)
    /// and the rest count extranonce2; without, the roll is the extranonce2.
    pub fn roll_parts(&self, roll: u64) -> (Vec<u8>, u32) {
        let mask = self.roll_mask();
        let k = mask.count_ones();
        let (v, en2) = if k == 0 {
            (0, roll)
        } else {
            let span = 1u64 << k;
            (((roll + 1) % span) as u32, roll >> k)
        };
        let version = (self.notify.version & !mask) | deposit(v, mask);
        let en2_bytes = en2.to_le_bytes()[..self.extranonce2_size.min(8)].to_vec();
        (en2_bytes, version)
    }

    /// The merkle root for one extranonce2: double SHA-256 of the coinbase, folded with
    /// each branch.
    pub fn merkle_root(&self, extranonce2: &[u8]) -> [u8; 32] {
        let n = &self.notify;
        let mut coinbase = Vec::with_capacity(
            n.coinbase1.len() + self.extranonce1.len() + extranonce2.len() + n.coinbase2.len(),
        );
        coinbase.extend_from_slice(&n.coinbase1);
        coinbase.extend_from_slice(&self.extranonce1);
        coinbase.extend_from_slice(extranonce2);
        coinbase.extend_from_slice(&n.coinbase2);
        let mut root = sha256d(&coinbase);
        let mut pair = [0u8; 64];
        for branch in &n.merkle_branches {
            pair[..32].copy_from_slice(&root);
            pair[32..].copy_from_slice(branch);
            root = sha256d(&pair);
        }
        root
    }

    pub fn header_for(&self, extranonce2: &[u8], version: u32) -> BlockHeader {
        let n = &self.notify;
        let mut h = [0u8; 80];
        h[0..4].copy_from_slice(&version.to_le_bytes());
        h[4..36].copy_from_slice(&n.prev_hash);
        h[36..68].copy_from_slice(&self.merkle_root(extranonce2));
        h[68..72].copy_from_slice(&n.ntime.to_le_bytes());
        h[72..76].copy_from_slice(&n.nbits.to_le_bytes());
        BlockHeader(h)
    }

    /// `mining.submit` params for a share of this job:
    /// `[user, job_id, extranonce2, ntime, nonce(, version_bits)]`.
    pub fn submit_params(&self, user: &str, share: &Share) -> Value {
        let (en2, version) = self.roll_parts(share.roll);
        let mut p = vec![
            json!(user),
            json!(self.notify.job_id),
            json!(hex::encode(en2)),
            json!(format!("{:08x}", share.header.time())),
            json!(format!("{:08x}", share.header.nonce())),
        ];
        if self.roll_mask() != 0 {
            // BIP 310: the pool takes the masked bits and keeps the rest of its version.
            p.push(json!(format!("{:08x}", version & self.version_mask)));
        }
        Value::Array(p)
    }
}

impl HeaderSource for StratumJob {
    fn header(&self, roll: u64) -> BlockHeader {
        let (en2, version) = self.roll_parts(roll);
        self.header_for(&en2, version)
    }
    fn target(&self) -> Target {
        self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuator::hasher::stratum::message::{parse, Incoming};

    /// The header is version | previous hash | merkle root (coinbase1 + extranonce1 +
    /// extranonce2 + coinbase2, double-hashed, folded with each branch) | ntime | nbits.
    #[test]
    fn headers_rebuild_from_notify() {
        let notify = Notify {
            job_id: "1".into(),
            prev_hash: [7; 32],
            coinbase1: b"coinbase-part-1".to_vec(),
            coinbase2: b"part-2".to_vec(),
            merkle_branches: vec![[1; 32], [2; 32]],
            version: 0x2000_0000,
            nbits: 0x1d00ffff,
            ntime: 0x504e86b9,
            clean_jobs: true,
        };
        let job = StratumJob::new(notify, vec![0xaa, 0xbb], 4, 0, 1.0).unwrap();
        let (en2, version) = job.roll_parts(0x0102_0304);
        assert_eq!(en2, vec![4, 3, 2, 1]);
        assert_eq!(version, 0x2000_0000);
        let h = job.header(0x0102_0304);
        let mut coinbase = b"coinbase-part-1".to_vec();
        coinbase.extend([0xaa, 0xbb, 4, 3, 2, 1]);
        coinbase.extend(b"part-2");
        let mut root = sha256d(&coinbase);
        for b in [[1u8; 32], [2; 32]] {
            root = sha256d(&[root, b].concat());
        }
        assert_eq!(&h.0[36..68], &root);
        assert_eq!(h.version(), 0x2000_0000);
        assert_eq!(h.bits(), 0x1d00ffff);
        assert_eq!(h.time(), 0x504e86b9);
        assert_eq!(&h.0[4..36], &[7; 32]);
    }

    #[test]
    fn version_rolling_stays_in_the_mask_and_every_roll_differs() {
        let Incoming::Notify(n) = parse(r#"{"id":null,"method":"mining.notify","params":["j","00000000000000000000000000000000000000000000000000000000000000ff","01","02",[],"20000000","1d00ffff","504e86b9",true]}"#).unwrap() else { panic!() };
        let job = StratumJob::new(n, vec![1], 2, 0x1fffe000, 1.0).unwrap();
        let mut seen = std::collections::HashSet::new();
        for roll in 0..70_000u64 {
            let (en2, v) = job.roll_parts(roll);
            assert_eq!(v & !0x1fffe000, 0x2000_0000);
            assert!(seen.insert((en2, v)), "roll {roll} repeats");
        }
        // Even the first header rolls version bits, and the submitted bits are masked.
        assert_ne!(job.roll_parts(0).1, 0x2000_0000);
        assert_eq!(deposit(0b101, 0x1fffe000), 0x2000 | 0x8000);
    }
}
