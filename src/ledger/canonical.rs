//! Canonical JSON (RFC 8785, JCS): one byte string per value, so an entry's hash is a
//! property of what it says rather than of how a serialiser happened to space it.
//!
//! Objects' keys sorted (by UTF-16 code units; the same as bytes for the ASCII keys the
//! ledger writes), no whitespace, strings with only the escapes JSON requires, and
//! numbers as ECMAScript prints them: an integral value with no fraction (`2`, not
//! `2.0`), an exponent with its sign (`1e+21`). Python's `json.dumps(v, sort_keys=True,
//! separators=(',', ':'), ensure_ascii=False)` writes the same bytes for the values the
//! ledger holds, which the independent verifier checks. Reading one back needs a parser
//! that rounds correctly: serde_json's `float_roundtrip` (its default fast path can be an
//! ULP off on long numbers, and the entry would then not read back as itself).

use serde_json::Value;

/// `v` in canonical form. Non-finite numbers cannot occur: `serde_json` holds none.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(v, &mut out);
    out
}

/// Whether `bytes` is a JSON value in exactly its canonical form.
pub fn is_canonical(bytes: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if to_vec(&v) != bytes {
        return Err("JSON, but not in canonical form (RFC 8785)".into());
    }
    Ok(v)
}

fn write(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                number(n.as_f64().unwrap_or(0.0), out);
            }
        }
        Value::String(s) => string(s, out),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(x, out);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                write(&m[k.as_str()], out);
            }
            out.push(b'}');
        }
    }
}

/// ECMAScript's Number::toString: the shortest digits that read back exactly (what
/// `ryu` finds), placed as ES places them.
fn number(x: f64, out: &mut Vec<u8>) {
    if x == 0.0 {
        out.push(b'0');
        return;
    }
    // `{:e}` gives the shortest round-trip digits as `d.ddde±x` without the `+`.
    let e = format!("{:e}", x.abs());
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exp + 1; // the decimal point's position after the digits' first
    if x < 0.0 {
        out.push(b'-');
    }
    let s = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let sign = if n - 1 >= 0 { "+" } else { "-" };
        let tail = if k == 1 {
            String::new()
        } else {
            format!(".{}", &digits[1..])
        };
        format!("{}{tail}e{sign}{}", &digits[..1], (n - 1).abs())
    };
    out.extend_from_slice(s.as_bytes());
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// r15: the bytes RFC 8785 prescribes, numbers as ECMAScript prints them (its
    /// appendix's examples among them), keys sorted, no whitespace.
    #[test]
    fn r15_canonical_json_is_rfc_8785() {
        let v = json!({"b": [1, 2.5, -0.0, 1e21, 1e-7, 123456789.125, 1e300], "a": "é\n\"", "c": null, "A": true});
        assert_eq!(
            String::from_utf8(to_vec(&v)).unwrap(),
            r#"{"A":true,"a":"é\n\"","b":[1,2.5,0,1e+21,1e-7,123456789.125,1e+300],"c":null}"#
        );
        for (x, s) in [
            (2.0, "2"),
            (0.000001, "0.000001"),
            (1.5e-7, "1.5e-7"),
            (4.5e20, "450000000000000000000"),
            (3.6e21, "3.6e+21"),
            (-12.25, "-12.25"),
            (333333333.3333333, "333333333.3333333"),
            // Shortest digits, then zeros: not the float's exact expansion
            // (50972044623992807424).
            (5.0972044623992807424e19, "50972044623992810000"),
        ] {
            assert_eq!(String::from_utf8(to_vec(&json!(x))).unwrap(), s, "{x}");
        }
        assert!(is_canonical(br#"{"a":1,"b":2}"#).is_ok());
        assert!(is_canonical(br#"{"b":2,"a":1}"#).is_err());
        assert!(is_canonical(br#"{"a": 1}"#).is_err());
        assert!(is_canonical(br#"{"a":1.0}"#).is_err());
    }
}
