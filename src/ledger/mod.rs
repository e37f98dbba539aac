//! The tamper-evident ledger (issue 15): what the site did, in a log anyone can check
//! with standard tools.
//!
//! Entries (canonical JSON, versioned: [`entry`]) are hashed into an RFC 6962 / RFC 9162
//! Merkle tree stored as c2sp.org/tlog-tiles lays a log out ([`tiles`], [`log`]), with
//! checkpoints in the c2sp.org/tlog-checkpoint form inside c2sp.org/signed-note
//! envelopes, signed with the site's Ed25519 key ([`note`]). So the directory can be
//! served by any static web server and read by existing tlog clients, and
//! `gridminer ledger verify` ([`verify`]) or any other verifier needs only the site's
//! verifier key.
//!
//! The [`account::Accountant`] turns the controller's state, step by step, into the
//! entries: each interval's energy account, hourly certificates. It reads only the
//! state, so the same entries come from a live site and from a simulation of it.

pub mod account;
pub mod canonical;
pub mod config;
pub mod entry;
pub mod log;
pub mod note;
pub mod recorder;
pub mod tiles;
pub mod verify;

use std::path::Path;

/// The entry format's version; a reader refuses newer ones rather than guess.
pub const ENTRY_VERSION: u64 = 1;

/// Everything that can go wrong writing or reading a ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key {path}: {detail}")]
    Key { path: String, detail: String },
    #[error("{path}: {detail}")]
    Corrupt { path: String, detail: String },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("an entry of {0} bytes; a tlog-tiles bundle frames at most 65535")]
    EntryTooLong(usize),
    #[error("tree: {0}")]
    Tree(tlog_tiles::Error),
    #[error("{0}")]
    Usage(String),
    #[error("the ledger does not verify:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl LedgerError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        LedgerError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
