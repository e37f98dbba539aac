//! What every emulated firmware shares: the miner's identity, the answer to one
//! request, and which firmware a miner runs.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::model::Miner;
use super::{luxos, whatsminer};

/// What the connection does after a request.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Send this, then close.
    Reply(String),
    /// Close without a word (the miner powered off before answering, `respbefore=false`).
    Drop,
}

/// The miner's identity as its firmware reports it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub index: usize,
    pub addr: Ipv4Addr,
}

impl Identity {
    pub fn mac(&self) -> String {
        let i = self.index as u32;
        format!(
            "C4:11:0B:{:02X}:{:02X}:{:02X}",
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff
        )
    }
    pub fn serial(&self) -> String {
        format!("HEM{:08}", self.index)
    }
}

/// The firmware a miner runs, by its model's family.
pub(super) enum Firmware {
    Whatsminer(whatsminer::Firmware),
    LuxOs(luxos::Firmware),
}

impl Firmware {
    pub(super) fn answer(
        &mut self,
        miner: &mut Miner,
        request: &[u8],
        t: Duration,
        unix: i64,
    ) -> Answer {
        match self {
            Firmware::Whatsminer(f) => f.answer(miner, request, t, unix),
            Firmware::LuxOs(f) => f.answer(miner, request, t, unix),
        }
    }
}

/// `n` characters from `alphabet`, from a xorshift generator: salts and session ids
/// that look random to a client and are the same in every run.
pub(super) fn random_chars(rng: &mut u64, alphabet: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            alphabet[(*rng % alphabet.len() as u64) as usize] as char
        })
        .collect()
}
