//! Compact JWS (RFC 7515) as JWTs carry it: split, decode, check the header, verify the
//! signature. Knows nothing of claims beyond handing their bytes on.
//!
//! The header's `alg` must be exactly the algorithm configured for the operator: the key
//! decides the algorithm, never the token. That refuses `alg: none` and alg confusion
//! (an HS256 token "signed" with an EdDSA operator's public key as the HMAC secret).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::error::RefusalReason;

/// Largest payload looked at, in bytes. A real command is a few hundred bytes; the cap
/// keeps a flood of huge messages from costing more than a length check.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Signs `claims` as an HS256 compact JWS with `secret`: what an operator's tooling does.
/// `bench live` and the integration tests sign their commands with it; the verifier is
/// also checked against an independent library (PyJWT).
pub fn sign_hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let head = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64(claims.to_string().as_bytes());
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", b64(&mac.finalize().into_bytes()))
}

/// Signs `claims` as an EdDSA (Ed25519, RFC 8037) compact JWS with `key`: what a grid
/// operator holding the private key does. `gridminer demo`'s simulated operator signs
/// with it; the verifier is checked against PyJWT's EdDSA tokens as well.
pub fn sign_eddsa(key: &ed25519_dalek::SigningKey, claims: &serde_json::Value) -> String {
    use ed25519_dalek::Signer as _;
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"EdDSA","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig.to_bytes()))
}

/// A signature algorithm an operator may be configured with (JOSE names, exact case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Ed25519 (RFC 8037): the operator holds the private key, the site the public one.
    EdDsa,
    /// HMAC-SHA256 with a shared secret.
    Hs256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Hs256 => "HS256",
        }
    }
    /// Exact JOSE name only: `eddsa` or `hs256` are not accepted.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "EdDSA" => Some(Algorithm::EdDsa),
            "HS256" => Some(Algorithm::Hs256),
            _ => None,
        }
    }
}

/// An HMAC secret. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacSecret(Vec<u8>);

impl HmacSecret {
    /// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
    pub const MIN_LEN: usize = 32;

    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < Self::MIN_LEN {
            return Err(format!(
                "HS256 secret is {} bytes; at least {} are required",
                bytes.len(),
                Self::MIN_LEN
            ));
        }
        Ok(HmacSecret(bytes))
    }
}

impl std::fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HmacSecret({} bytes, redacted)", self.0.len())
    }
}

/// What an operator's signatures are checked with. Its variant fixes the algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorKey {
    Ed25519(VerifyingKey),
    Hs256(HmacSecret),
}

impl OperatorKey {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            OperatorKey::Ed25519(_) => Algorithm::EdDsa,
            OperatorKey::Hs256(_) => Algorithm::Hs256,
        }
    }

    /// Whether `signature` signs `signing_input` under this key. Ed25519 uses
    /// `verify_strict` (no small-order keys or points, canonical `S`); HMAC compares in
    /// constant time (`Mac::verify_slice`).
    fn verifies(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match self {
            OperatorKey::Ed25519(key) => match Signature::from_slice(signature) {
                Ok(sig) => key.verify_strict(signing_input, &sig).is_ok(),
                Err(_) => false,
            },
            OperatorKey::Hs256(HmacSecret(secret)) => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                    return false;
                };
                mac.update(signing_input);
                mac.verify_slice(signature).is_ok()
            }
        }
    }
}

/// A compact JWS split and decoded, signature not yet checked.
#[derive(Debug)]
pub struct Compact<'a> {
    /// The header's `alg`, as written.
    pub alg: String,
    /// The decoded payload (JWT claims), not yet parsed.
    pub payload: Vec<u8>,
    signing_input: &'a [u8],
    signature: Vec<u8>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    /// Extensions we would have to understand (RFC 7515 §4.1.11); we understand none.
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Splits and decodes a compact JWS. Leading and trailing ASCII whitespace is ignored (a
/// newline from `mosquitto_pub -f` or `echo`); anything else out of place is refused.
pub fn parse(token: &[u8]) -> Result<Compact<'_>, RefusalReason> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(RefusalReason::TooLarge);
    }
    let text = std::str::from_utf8(token)
        .map_err(|_| RefusalReason::Malformed)?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    let mut parts = text.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RefusalReason::Malformed);
    };
    let header: Header =
        serde_json::from_slice(&b64url(h)?).map_err(|_| RefusalReason::Malformed)?;
    if header.alg.eq_ignore_ascii_case("none") || s.is_empty() {
        return Err(RefusalReason::Unsigned);
    }
    if header.crit.is_some() {
        return Err(RefusalReason::Malformed);
    }
    let payload = b64url(p)?;
    let signature = b64url(s)?;
    Ok(Compact {
        alg: header.alg,
        payload,
        signing_input: &text.as_bytes()[..h.len() + 1 + p.len()],
        signature,
    })
}

impl Compact<'_> {
    /// Checks the header's algorithm against the key's, then the signature.
    pub fn verify(&self, key: &OperatorKey) -> Result<(), RefusalReason> {
        if Algorithm::parse(&self.alg) != Some(key.algorithm()) {
            return Err(RefusalReason::WrongAlgorithm);
        }
        if key.verifies(self.signing_input, &self.signature) {
            Ok(())
        } else {
            Err(RefusalReason::BadSignature)
        }
    }
}

/// base64url without padding, canonical (no stray trailing bits), as RFC 7515 requires.
fn b64url(s: &str) -> Result<Vec<u8>, RefusalReason> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| RefusalReason::Malformed)
}

/// Reads an Ed25519 public key as PEM (`-----BEGIN PUBLIC KEY-----`), base64 of the SPKI
/// DER, or base64/base64url of the raw 32 bytes. Refuses small-order ("weak") keys.
pub fn parse_ed25519_public_key(text: &str) -> Result<VerifyingKey, String> {
    let t = text.trim();
    let key = if t.starts_with("-----BEGIN") {
        VerifyingKey::from_public_key_pem(t)
            .map_err(|e| format!("not an Ed25519 public key in PEM (SPKI): {e}"))?
    } else {
        let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(&compact).ok())
            .ok_or("neither PEM nor base64")?;
        match <[u8; 32]>::try_from(bytes.as_slice()) {
            Ok(raw) => VerifyingKey::from_bytes(&raw)
                .map_err(|_| "32 bytes that are not an Ed25519 point".to_string())?,
            Err(_) => VerifyingKey::from_public_key_der(&bytes).map_err(|e| {
                format!("not 32 raw bytes nor an Ed25519 SubjectPublicKeyInfo DER: {e}")
            })?,
        }
    };
    if key.is_weak() {
        return Err("a small-order (weak) Ed25519 key".into());
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn enc(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    fn ed_key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn ed_token(header: &str, payload: &str) -> String {
        let input = format!("{}.{}", enc(header.as_bytes()), enc(payload.as_bytes()));
        let sig = ed_key().sign(input.as_bytes());
        format!("{input}.{}", enc(&sig.to_bytes()))
    }

    fn hs_token(secret: &[u8], header: &str, payload: &str) -> String {
        let input = format!("{}.{}", enc(header.as_bytes()), enc(payload.as_bytes()));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", enc(&mac.finalize().into_bytes()))
    }

    fn verify(token: &str, key: &OperatorKey) -> Result<Vec<u8>, RefusalReason> {
        let c = parse(token.as_bytes())?;
        c.verify(key)?;
        Ok(c.payload)
    }

    #[test]
    fn an_eddsa_signed_token_verifies_under_its_key_only() {
        let claims = serde_json::json!({"iss": "demo-tso", "act": "heartbeat"});
        let token = sign_eddsa(&ed_key(), &claims);
        let payload = verify(&token, &OperatorKey::Ed25519(ed_key().verifying_key())).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&payload).unwrap(),
            claims
        );
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert_eq!(
            verify(&token, &OperatorKey::Ed25519(other)),
            Err(RefusalReason::BadSignature)
        );
    }

    #[test]
    fn table_of_tokens() {
        let ed = OperatorKey::Ed25519(ed_key().verifying_key());
        let secret = HmacSecret::new(vec![9; 32]).unwrap();
        let hs = OperatorKey::Hs256(secret.clone());
        let good_ed = ed_token(r#"{"alg":"EdDSA","typ":"JWT"}"#, "{}");
        let good_hs = hs_token(&[9; 32], r#"{"alg":"HS256"}"#, "{}");
        // Alg confusion: HS256 with the Ed25519 public key bytes as the HMAC secret.
        let confused = hs_token(
            ed_key().verifying_key().as_bytes(),
            r#"{"alg":"HS256"}"#,
            "{}",
        );
        let mut flipped = good_ed.clone().into_bytes();
        let n = flipped.len();
        flipped[n - 5] = if flipped[n - 5] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        let unsigned = format!("{}.{}.", enc(br#"{"alg":"none"}"#), enc(b"{}"));
        let none_with_sig = format!("{}.{}.AAAA", enc(br#"{"alg":"None"}"#), enc(b"{}"));
        let padded = format!("{}=", good_hs);
        let crit = ed_token(r#"{"alg":"EdDSA","crit":["b64"],"b64":false}"#, "{}");
        let lower = ed_token(r#"{"alg":"eddsa"}"#, "{}");
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        let with_newline = format!("{good_ed}\n");

        use RefusalReason::*;
        let cases: Vec<(&str, &str, &OperatorKey, Result<(), RefusalReason>)> = vec![
            ("EdDSA good", &good_ed, &ed, Ok(())),
            ("HS256 good", &good_hs, &hs, Ok(())),
            ("trailing newline", &with_newline, &ed, Ok(())),
            (
                "EdDSA token, HS256 operator",
                &good_ed,
                &hs,
                Err(WrongAlgorithm),
            ),
            (
                "HS256 token, EdDSA operator",
                &good_hs,
                &ed,
                Err(WrongAlgorithm),
            ),
            ("alg confusion", &confused, &ed, Err(WrongAlgorithm)),
            ("flipped signature", &flipped, &ed, Err(BadSignature)),
            ("alg none", &unsigned, &ed, Err(Unsigned)),
            (
                "alg None with a signature",
                &none_with_sig,
                &hs,
                Err(Unsigned),
            ),
            ("lowercase alg", &lower, &ed, Err(WrongAlgorithm)),
            ("padding", &padded, &hs, Err(Malformed)),
            ("crit header", &crit, &ed, Err(Malformed)),
            ("two segments", "a.b", &ed, Err(Malformed)),
            ("four segments", "a.b.c.d", &ed, Err(Malformed)),
            ("empty", "", &ed, Err(Malformed)),
            ("header not base64", "!!.e30.AAAA", &ed, Err(Malformed)),
            ("header not JSON", "YWJj.e30.AAAA", &ed, Err(Malformed)),
            (
                "header alg a number",
                "eyJhbGciOjF9.e30.AAAA",
                &ed,
                Err(Malformed),
            ),
            ("too large", &huge, &ed, Err(TooLarge)),
        ];
        for (name, token, key, want) in cases {
            assert_eq!(verify(token, key).map(|_| ()), want, "{name}");
        }
        // A short or long signature is a bad signature, not a panic.
        let input = format!("{}.{}", enc(br#"{"alg":"EdDSA"}"#), enc(b"{}"));
        for len in [1, 63, 65, 200] {
            let t = format!("{input}.{}", enc(&vec![1; len]));
            assert_eq!(verify(&t, &ed), Err(BadSignature), "{len} bytes");
        }
        assert_eq!(verify("\u{0}\u{ff}", &ed), Err(Malformed));
        assert_eq!(
            parse(&[0xff, 0xfe, b'.', b'.']).map(|_| ()).unwrap_err(),
            Malformed
        );
    }

    #[test]
    fn public_key_forms() {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let vk = ed_key().verifying_key();
        let pem = vk
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let der = vk.to_public_key_der().unwrap();
        for text in [
            pem.clone(),
            STANDARD.encode(der.as_bytes()),
            URL_SAFE_NO_PAD.encode(vk.as_bytes()),
            STANDARD.encode(vk.as_bytes()),
        ] {
            assert_eq!(parse_ed25519_public_key(&text), Ok(vk), "{text}");
        }
        assert!(parse_ed25519_public_key("not a key").is_err());
        assert!(parse_ed25519_public_key(&STANDARD.encode([1u8; 31])).is_err());
        // The identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(parse_ed25519_public_key(&STANDARD.encode(identity))
            .unwrap_err()
            .contains("weak"));
    }

    #[test]
    fn short_hmac_secrets_are_refused() {
        assert!(HmacSecret::new(vec![1; 31]).is_err());
        assert!(!format!("{:?}", HmacSecret::new(vec![1; 32]).unwrap()).contains('1'));
    }
}
