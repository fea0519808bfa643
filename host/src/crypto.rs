//! The cryptography of the secret store: Argon2id turns the master key and a salt into an
//! AES-256-GCM key; every value is sealed with a fresh nonce and bound (as associated data) to
//! what it is, so a ciphertext moved to another row does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

/// Bytes of an Argon2id salt.
pub const SALT_LEN: usize = 16;
/// Bytes of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Argon2id memory cost in KiB (DESIGN: m=19456 KiB, t=2, p=1).
pub const ARGON2_M_KIB: u32 = 19_456;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;
/// Shortest master key accepted, in bytes.
pub const MIN_MASTER_KEY_LEN: usize = 16;

/// A 256-bit key, wiped from memory when dropped.
pub type Key = Zeroizing<[u8; 32]>;

/// What went wrong. Never carries key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext does not open under this key (wrong master key, or tampered data).
    #[error("the data does not decrypt with this master key (wrong key or tampered data)")]
    Mismatch,
    /// A stored salt or nonce has the wrong length.
    #[error("malformed ciphertext record: {0}")]
    Malformed(&'static str),
    #[error("key derivation failed: {0}")]
    Derive(String),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// The master key an operator supplies (`IRONHOST_MASTER_KEY`).
pub struct MasterKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(hidden)")
    }
}

impl MasterKey {
    /// A master key from its text; refuses keys too short to be one.
    pub fn new(text: &str) -> Result<MasterKey, String> {
        let trimmed = text.trim();
        if trimmed.len() < MIN_MASTER_KEY_LEN {
            return Err(format!(
                "the master key must be at least {MIN_MASTER_KEY_LEN} characters (it has {})",
                trimmed.len()
            ));
        }
        Ok(MasterKey(Zeroizing::new(trimmed.as_bytes().to_vec())))
    }

    /// The AES-256 key for `salt`: Argon2id with the design's parameters.
    pub fn derive(&self, salt: &[u8]) -> Result<Key, CryptoError> {
        if salt.len() != SALT_LEN {
            return Err(CryptoError::Malformed("salt must be 16 bytes"));
        }
        let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(32))
            .map_err(|e| CryptoError::Derive(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(&self.0, salt, &mut key[..])
            .map_err(|e| CryptoError::Derive(e.to_string()))?;
        Ok(key)
    }
}

/// `n` random bytes from the operating system.
pub fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(out)
}

/// Encrypt `plaintext` under `key` with a fresh nonce; `aad` is bound to the ciphertext.
/// Returns (nonce, ciphertext with tag).
pub fn seal(
    key: &Key,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<([u8; NONCE_LEN], Vec<u8>), CryptoError> {
    let nonce = random::<NONCE_LEN>()?;
    let cipher = Aes256Gcm::new_from_slice(&key[..]).map_err(|_| CryptoError::Malformed("key"))?;
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
    Ok((nonce, ct))
}

/// Decrypt what [`seal`] made; fails with [`CryptoError::Mismatch`] on a wrong key, other
/// associated data, or any change to the bytes.
pub fn open(
    key: &Key,
    nonce: &[u8],
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if nonce.len() != NONCE_LEN {
        return Err(CryptoError::Malformed("nonce must be 12 bytes"));
    }
    let cipher = Aes256Gcm::new_from_slice(&key[..]).map_err(|_| CryptoError::Malformed("key"))?;
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Mismatch)
}

/// A secret value shown to a viewer: a recognisable prefix (`sk-proj-`, up to the last dash in
/// the first 8 characters), then the first and last two characters of the rest, only when the
/// rest is long enough (12+) that four characters give nothing useful away; otherwise stars,
/// always 8, so the mask does not even tell the length.
pub fn mask(value: &str) -> String {
    const STARS: &str = "********";
    let chars: Vec<char> = value.chars().collect();
    let head: String = chars.iter().take(8).collect();
    let prefix_len = head.rfind('-').map_or(0, |i| head[..=i].chars().count());
    let rest = &chars[prefix_len..];
    if rest.len() < 12 {
        return STARS.to_owned();
    }
    let prefix: String = chars[..prefix_len].iter().collect();
    let start: String = rest[..2].iter().collect();
    let end: String = rest[rest.len() - 2..].iter().collect();
    format!("{prefix}{start}...{end}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let master = MasterKey::new("correct horse battery staple").unwrap();
        let salt = random::<SALT_LEN>().unwrap();
        let key = master.derive(&salt).unwrap();
        let (nonce, ct) = seal(&key, b"sk-proj-secret", b"dev:openai").unwrap();
        assert!(!ct.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            &open(&key, &nonce, &ct, b"dev:openai").unwrap()[..],
            b"sk-proj-secret"
        );
        assert_eq!(
            open(&key, &nonce, &ct, b"production:openai"),
            Err(CryptoError::Mismatch)
        );
        let wrong = MasterKey::new("incorrect horse battery")
            .unwrap()
            .derive(&salt)
            .unwrap();
        assert_eq!(
            open(&wrong, &nonce, &ct, b"dev:openai"),
            Err(CryptoError::Mismatch)
        );
        let mut tampered = ct.clone();
        tampered[0] ^= 1;
        assert_eq!(
            open(&key, &nonce, &tampered, b"dev:openai"),
            Err(CryptoError::Mismatch)
        );
        // Fresh nonce each time.
        let (nonce2, ct2) = seal(&key, b"sk-proj-secret", b"dev:openai").unwrap();
        assert_ne!((nonce, ct), (nonce2, ct2));
    }

    #[test]
    fn derivation_depends_on_salt_and_refuses_short_keys() {
        let master = MasterKey::new("0123456789abcdef").unwrap();
        let a = master.derive(&[1; SALT_LEN]).unwrap();
        let b = master.derive(&[2; SALT_LEN]).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, master.derive(&[1; SALT_LEN]).unwrap());
        assert!(MasterKey::new("short").unwrap_err().contains("at least 16"));
        assert!(master.derive(&[1; 8]).is_err());
    }

    #[test]
    fn masks_keep_prefix_and_ends_only() {
        assert_eq!(mask("sk-proj-abcdefghijklmnopyz"), "sk-proj-ab...yz");
        assert_eq!(mask("ghp_1234567890abcdef"), "gh...ef");
        for short in [
            "hunter2",
            "ab",
            "sk-proj-abcd",
            "hunter2-abcd",
            "sk-proj-abcdefghijk",
        ] {
            assert_eq!(mask(short), "********", "{short}");
        }
        // Whatever the value, at most four characters past the prefix show.
        for len in 0..40 {
            let value: String = "sk-proj-"
                .chars()
                .chain((0..len).map(|i| char::from(b'a' + (i % 26) as u8)))
                .collect();
            let m = mask(&value);
            assert_ne!(m, value);
            let shown = m
                .trim_start_matches("sk-proj-")
                .replace("...", "")
                .replace('*', "");
            assert!(shown.len() <= 4, "{value} -> {m}");
        }
    }
}
