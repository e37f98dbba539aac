//! The Whatsminer API v2 privileged-command crypto, the firmware's side of it.
//!
//! `get_token` hands out `salt` (fixed: the salt of the stored password), `newsalt` (new
//! per token) and `time` (the last four digits of the Unix time). The client proves it
//! knows the password by sending `sign = md5crypt(md5crypt(password, salt) + time,
//! newsalt)` (each time the hash part after the third `$`) inside a request encrypted
//! with AES-256-ECB under `sha256(md5crypt(password, salt))`, zero-padded, base64; the
//! answer comes back encrypted the same way as `{"enc": "..."}`. That is what both
//! clients compute (asic-rs `backends/v2/rpc.rs`, pyasic `rpc/btminer.py`).

use aes::cipher::block_padding::ZeroPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit};
use aes::Aes256;
use base64::prelude::*;
use sha2::{Digest, Sha256};

type Enc = ecb::Encryptor<Aes256>;
type Dec = ecb::Decryptor<Aes256>;

/// The hash part of an md5crypt string (`$1$salt$HASH`).
pub fn md5crypt_hash(word: &str, salt: &str) -> String {
    let full = md5crypt::md5crypt(word.as_bytes(), salt.as_bytes());
    String::from_utf8_lossy(&full)
        .split('$')
        .nth(3)
        .unwrap_or_default()
        .to_string()
}

/// The AES-256 key both sides derive from the password hash.
pub fn aes_key(passwd_md5: &str) -> [u8; 32] {
    Sha256::digest(passwd_md5.as_bytes()).into()
}

/// Encrypts `plain` for the client: zero-padded to the block, base64.
pub fn encrypt(key: &[u8; 32], plain: &str) -> String {
    let len = plain.len();
    let mut buf = plain.as_bytes().to_vec();
    buf.resize(len.div_ceil(16).max(1) * 16, 0);
    let enc = Enc::new(key.into())
        .encrypt_padded_mut::<ZeroPadding>(&mut buf, len)
        .expect("the buffer was padded to whole blocks");
    BASE64_STANDARD.encode(enc)
}

/// Decrypts a client's `data`; `None` when it is not base64 of whole blocks. Garbage
/// under a wrong key decrypts "fine" and fails later as JSON, as on the firmware.
pub fn decrypt(key: &[u8; 32], data: &str) -> Option<Vec<u8>> {
    let cleaned: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    let mut raw = BASE64_STANDARD.decode(cleaned).ok()?;
    if raw.is_empty() || raw.len() % 16 != 0 {
        return None;
    }
    let plain = Dec::new(key.into())
        .decrypt_padded_mut::<ZeroPadding>(&mut raw)
        .ok()?;
    Some(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5crypt_matches_the_reference() {
        // `openssl passwd -1 -salt BQ5hoXV9 admin`.
        assert_eq!(md5crypt_hash("admin", "BQ5hoXV9"), "RxmaDUO33TS7O26yeMHZ81");
    }

    #[test]
    fn encryption_round_trips_and_pads_to_blocks() {
        let key = aes_key("RxmaDUO33TS7O26yeMHZ81");
        for plain in [
            "{}",
            r#"{"cmd":"power_on","token":"abcdefghijklmnopqrstuv"}"#,
        ] {
            let enc = encrypt(&key, plain);
            let raw = BASE64_STANDARD.decode(&enc).unwrap();
            assert_eq!(raw.len() % 16, 0);
            assert_eq!(decrypt(&key, &enc).unwrap(), plain.as_bytes());
        }
        assert_eq!(decrypt(&key, "not base64!"), None);
        assert_eq!(decrypt(&key, &BASE64_STANDARD.encode([1u8; 15])), None);
    }
}
