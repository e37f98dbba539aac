//! Stratum V1 messages: typed parsing of what the pool sends, and the requests we send.
//!
//! Role: the protocol's vocabulary and its validation. Every field is checked (type, hex,
//! length) before anything else sees it; a bad message becomes
//! [`StratumError::Malformed`] with the reason, never a panic. Must not do I/O.

use serde_json::{json, Value};

use super::error::StratumError;

/// Method names, in one table.
pub mod method {
    pub const CONFIGURE: &str = "mining.configure";
    pub const SUBSCRIBE: &str = "mining.subscribe";
    pub const AUTHORIZE: &str = "mining.authorize";
    pub const SUBMIT: &str = "mining.submit";
    pub const NOTIFY: &str = "mining.notify";
    pub const SET_DIFFICULTY: &str = "mining.set_difficulty";
    pub const SET_VERSION_MASK: &str = "mining.set_version_mask";
}

/// Limits on what a pool may send; beyond them a message is hostile.
const MAX_JOB_ID: usize = 128;
const MAX_BRANCHES: usize = 32;
const MAX_COINBASE_PART: usize = 16 * 1024;
/// Lowest share difficulty accepted: one share per ~430,000 hashes. Below it a pool
/// would have every few hashes sent back as a share, flooding both ends.
pub const MIN_DIFFICULTY: f64 = 1e-4;

/// A `mining.notify`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    pub job_id: String,
    /// Previous block hash in header byte order (Stratum's word-swapped hex undone).
    pub prev_hash: [u8; 32],
    pub coinbase1: Vec<u8>,
    pub coinbase2: Vec<u8>,
    pub merkle_branches: Vec<[u8; 32]>,
    pub version: u32,
    pub nbits: u32,
    pub ntime: u32,
    pub clean_jobs: bool,
}

/// An error object from the pool: `[code, message, traceback]` or `{code, message}`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolError {
    pub code: Option<i64>,
    pub message: String,
}

/// Anything the pool can send.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Response {
        id: u64,
        result: Value,
        error: Option<PoolError>,
    },
    Notify(Notify),
    SetDifficulty(f64),
    SetVersionMask(u32),
    /// A well-formed notification we do not act on (e.g. `client.show_message`).
    Other(String),
}

fn bad(msg: impl Into<String>) -> StratumError {
    StratumError::Malformed(msg.into())
}

fn hex_bytes(v: &Value, what: &str, max: usize) -> Result<Vec<u8>, StratumError> {
    let s = v
        .as_str()
        .ok_or_else(|| bad(format!("{what} is not a string")))?;
    if s.len() > 2 * max {
        return Err(bad(format!("{what} is longer than {max} bytes")));
    }
    hex::decode(s).map_err(|e| bad(format!("{what} is not hex: {e}")))
}

fn hex32(v: &Value, what: &str) -> Result<[u8; 32], StratumError> {
    hex_bytes(v, what, 32)?
        .try_into()
        .map_err(|_| bad(format!("{what} is not 32 bytes")))
}

/// A big-endian u32 written as 8 hex digits (version, nbits, ntime).
fn hex_u32(v: &Value, what: &str) -> Result<u32, StratumError> {
    let b: [u8; 4] = hex_bytes(v, what, 4)?
        .try_into()
        .map_err(|_| bad(format!("{what} is not 4 bytes")))?;
    Ok(u32::from_be_bytes(b))
}

fn pool_error(v: &Value) -> Option<PoolError> {
    match v {
        Value::Null => None,
        Value::Array(a) => Some(PoolError {
            code: a.first().and_then(Value::as_i64),
            message: a
                .get(1)
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_owned(),
        }),
        Value::Object(o) => Some(PoolError {
            code: o.get("code").and_then(Value::as_i64),
            message: o
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_owned(),
        }),
        // Some pools send `false` for "no error".
        Value::Bool(false) => None,
        other => Some(PoolError {
            code: None,
            message: other.to_string(),
        }),
    }
}

impl Notify {
    fn parse(params: &[Value]) -> Result<Notify, StratumError> {
        if params.len() < 9 {
            return Err(bad(format!("notify has {} params, needs 9", params.len())));
        }
        let job_id = params[0]
            .as_str()
            .filter(|s| !s.is_empty() && s.len() <= MAX_JOB_ID)
            .ok_or_else(|| bad("notify job_id is not a short string"))?
            .to_owned();
        // Stratum sends the previous hash as eight 4-byte words, each byte-reversed
        // relative to the header.
        let mut prev_hash = hex32(&params[1], "prev_hash")?;
        for word in prev_hash.chunks_exact_mut(4) {
            word.reverse();
        }
        let branches = params[4]
            .as_array()
            .ok_or_else(|| bad("merkle_branch is not a list"))?;
        if branches.len() > MAX_BRANCHES {
            return Err(bad(format!("{} merkle branches", branches.len())));
        }
        Ok(Notify {
            job_id,
            prev_hash,
            coinbase1: hex_bytes(&params[2], "coinb1", MAX_COINBASE_PART)?,
            coinbase2: hex_bytes(&params[3], "coinb2", MAX_COINBASE_PART)?,
            merkle_branches: branches
                .iter()
                .map(|b| hex32(b, "merkle branch"))
                .collect::<Result<_, _>>()?,
            version: hex_u32(&params[5], "version")?,
            nbits: hex_u32(&params[6], "nbits")?,
            ntime: hex_u32(&params[7], "ntime")?,
            clean_jobs: params[8]
                .as_bool()
                .ok_or_else(|| bad("clean_jobs is not a boolean"))?,
        })
    }
}

/// Parses one line from the pool.
pub fn parse(line: &str) -> Result<Incoming, StratumError> {
    let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let method = obj.get("method").and_then(Value::as_str);
    let Some(method) = method else {
        // A response: needs a numeric id we could have sent.
        let id = obj
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("response without a numeric id"))?;
        return Ok(Incoming::Response {
            id,
            result: obj.get("result").cloned().unwrap_or(Value::Null),
            error: obj.get("error").and_then(pool_error),
        });
    };
    let empty = Vec::new();
    let params = match obj.get("params") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => &empty,
        Some(_) => return Err(bad(format!("{method} params is not a list"))),
    };
    match method {
        method::NOTIFY => Ok(Incoming::Notify(Notify::parse(params)?)),
        method::SET_DIFFICULTY => {
            let d = params
                .first()
                .and_then(Value::as_f64)
                .filter(|d| d.is_finite() && *d >= MIN_DIFFICULTY)
                .ok_or_else(|| {
                    bad(format!(
                        "set_difficulty needs one finite number >= {MIN_DIFFICULTY}"
                    ))
                })?;
            Ok(Incoming::SetDifficulty(d))
        }
        method::SET_VERSION_MASK => {
            let m = params
                .first()
                .ok_or_else(|| bad("set_version_mask without a mask"))?;
            Ok(Incoming::SetVersionMask(hex_u32(m, "version mask")?))
        }
        other => Ok(Incoming::Other(other.to_owned())),
    }
}

/// What a `mining.subscribe` result carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub extranonce1: Vec<u8>,
    pub extranonce2_size: usize,
}

impl Subscription {
    pub fn parse(result: &Value) -> Result<Subscription, StratumError> {
        let a = result
            .as_array()
            .filter(|a| a.len() >= 3)
            .ok_or_else(|| bad("subscribe result is not [subscriptions, extranonce1, size]"))?;
        let extranonce1 = hex_bytes(&a[1], "extranonce1", 32)?;
        let size = a[2]
            .as_u64()
            .filter(|s| (1..=8).contains(s))
            .ok_or_else(|| bad("extranonce2_size is not 1..=8"))?;
        Ok(Subscription {
            extranonce1,
            extranonce2_size: size as usize,
        })
    }
}

/// The version-rolling mask a `mining.configure` result grants, if any.
pub fn granted_version_mask(result: &Value) -> Result<Option<u32>, StratumError> {
    let Some(obj) = result.as_object() else {
        return Err(bad("configure result is not an object"));
    };
    if obj.get("version-rolling").and_then(Value::as_bool) != Some(true) {
        return Ok(None);
    }
    let mask = obj
        .get("version-rolling.mask")
        .ok_or_else(|| bad("version rolling granted without a mask"))?;
    hex_u32(mask, "version-rolling.mask").map(Some)
}

/// Requests, as JSON lines (with the trailing newline).
pub fn request(id: u64, method: &str, params: Value) -> String {
    let mut s = json!({ "id": id, "method": method, "params": params }).to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTIFY: &str = r#"{"id":null,"method":"mining.notify","params":["bf","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008","072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",[],"00000002","1c2ac4af","504e86b9",false]}"#;

    #[test]
    fn a_real_notify_parses() {
        let Incoming::Notify(n) = parse(NOTIFY).unwrap() else {
            panic!("not a notify")
        };
        assert_eq!(n.job_id, "bf");
        assert_eq!(n.version, 2);
        assert_eq!(n.nbits, 0x1c2ac4af);
        assert_eq!(n.ntime, 0x504e86b9);
        assert!(!n.clean_jobs);
        // First stratum word 4d16b6f8 becomes f8b6164d in header order.
        assert_eq!(&n.prev_hash[..4], &[0xf8, 0xb6, 0x16, 0x4d]);
    }

    #[test]
    fn hostile_messages_are_rejected_not_panicked_on() {
        let long_id = format!(
            r#"{{"method":"mining.notify","params":["{}","00","","",[],"","","",true]}}"#,
            "j".repeat(500)
        );
        for line in [
            "",
            "not json",
            "[1,2,3]",
            "{}",
            r#"{"id":"x","result":true}"#,
            r#"{"id":-1,"result":true}"#,
            r#"{"method":"mining.notify","params":{}}"#,
            r#"{"method":"mining.notify","params":["a"]}"#,
            r#"{"method":"mining.notify","params":["a","zz","","",[],"00000002","1c2ac4af","504e86b9",false]}"#,
            r#"{"method":"mining.notify","params":["a","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","","",["00"],"00000002","1c2ac4af","504e86b9",false]}"#,
            r#"{"method":"mining.notify","params":["a","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","","",[],"0002","1c2ac4af","504e86b9",false]}"#,
            r#"{"method":"mining.notify","params":["a","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","","",[],"00000002","1c2ac4af","504e86b9","yes"]}"#,
            &long_id,
            r#"{"method":"mining.set_difficulty","params":[-1]}"#,
            r#"{"method":"mining.set_difficulty","params":[1e-9]}"#,
            r#"{"method":"mining.set_difficulty","params":["1"]}"#,
            r#"{"method":"mining.set_difficulty","params":[]}"#,
            r#"{"method":"mining.set_version_mask","params":[12]}"#,
        ] {
            assert!(
                matches!(parse(line), Err(StratumError::Malformed(_))),
                "{line}"
            );
        }
        assert_eq!(
            parse(r#"{"id":null,"method":"client.show_message","params":["hi"]}"#).unwrap(),
            Incoming::Other("client.show_message".into())
        );
    }

    #[test]
    fn responses_carry_pool_errors() {
        let r =
            parse(r#"{"id":4,"result":null,"error":[23,"Low difficulty share",null]}"#).unwrap();
        assert_eq!(
            r,
            Incoming::Response {
                id: 4,
                result: Value::Null,
                error: Some(PoolError {
                    code: Some(23),
                    message: "Low difficulty share".into()
                })
            }
        );
        let ok = parse(r#"{"id":5,"result":true,"error":null}"#).unwrap();
        assert!(matches!(ok, Incoming::Response { error: None, .. }));
    }

    #[test]
    fn subscription_and_configure_results() {
        let s = Subscription::parse(&json!([[["mining.notify", "ae68"]], "08000002", 4])).unwrap();
        assert_eq!(s.extranonce1, vec![8, 0, 0, 2]);
        assert_eq!(s.extranonce2_size, 4);
        assert!(Subscription::parse(&json!([[], "08000002", 0])).is_err());
        assert!(Subscription::parse(&json!([[], "0800000", 4])).is_err());
        assert_eq!(
            granted_version_mask(
                &json!({"version-rolling": true, "version-rolling.mask": "1fffe000"})
            )
            .unwrap(),
            Some(0x1fffe000)
        );
        assert_eq!(
            granted_version_mask(&json!({"version-rolling": false})).unwrap(),
            None
        );
    }
}
