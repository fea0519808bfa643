//! Who may do what: roles, password hashing, API tokens and the JWTs of login sessions.
//!
//! - Passwords: Argon2id PHC strings (m=19456 KiB, t=2, p=1).
//! - API tokens: `ih_` + 64 hex digits (256 random bits); only their SHA-256 is stored.
//! - Sessions: a login yields an access JWT (15 minutes) and a refresh JWT (7 days), both
//!   HS256 with the installation's signing key and both naming the session; logout revokes the
//!   session, and with it both tokens.

pub mod jwt;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

use crate::crypto;

/// A role. Every API route names the roles it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including revealing secrets and changing policies.
    Admin,
    /// Reads everything; secret values only masked.
    Viewer,
    /// A running agent or SDK: reads secrets in full (to use them), reports, reads its data.
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Agent => "agent",
        }
    }

    pub fn parse(text: &str) -> Result<Role, String> {
        match text {
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            "agent" => Ok(Role::Agent),
            other => Err(format!(
                "unknown role `{other}` (roles: admin, viewer, agent)"
            )),
        }
    }
}

/// Hash a password for storage (Argon2id, PHC string format).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = crypto::random::<16>().map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches a stored hash. A malformed hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Prefix of every API token, so leaked tokens are recognisable (and scannable).
pub const TOKEN_PREFIX: &str = "ih_";

/// A new API token: `ih_` and 256 random bits in hex.
pub fn new_api_token() -> Result<String, String> {
    let bytes = crypto::random::<32>().map_err(|e| e.to_string())?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// What is stored for a token: its SHA-256, hex.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A password for the first admin when the operator gave none: 24 characters from a
/// 56-character alphabet without look-alikes (~139 bits).
pub fn generate_password() -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let bytes = crypto::random::<24>().map_err(|e| e.to_string())?;
    // 256 % 56 != 0: reject the biased top values by re-drawing is overkill for a one-time
    // password; the bias is < 1% per character.
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("s3cret-pass").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret-pass", &h));
        assert!(!verify_password("s3cret-pasS", &h));
        assert!(!verify_password("s3cret-pass", "not a hash"));
    }

    #[test]
    fn api_tokens_are_256_bit_and_stored_as_digest() {
        let t = new_api_token().unwrap();
        assert_eq!(t.len(), 3 + 64);
        assert_ne!(t, new_api_token().unwrap());
        let d = token_digest(&t);
        assert_eq!(d.len(), 64);
        assert!(!d.contains(&t[3..]));
    }

    #[test]
    fn roles_round_trip_and_unknown_roles_are_named() {
        for r in [Role::Admin, Role::Viewer, Role::Agent] {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
        }
        assert!(Role::parse("root").unwrap_err().contains("`root`"));
        let p = generate_password().unwrap();
        assert_eq!(p.len(), 24);
    }
}
