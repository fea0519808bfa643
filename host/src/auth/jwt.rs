//! JSON Web Tokens, HS256 only: the control plane signs and checks its own session tokens, so
//! no other algorithm is accepted (a token saying `none` or `RS256` is refused).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Mac, SimpleHmac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::Role;

/// Access tokens live this long.
pub const ACCESS_TTL_SECS: u64 = 15 * 60;
/// Refresh tokens live this long.
pub const REFRESH_TTL_SECS: u64 = 7 * 24 * 3600;

/// Which kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

/// What a session token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    pub role: Role,
    /// The session (logout revokes it).
    pub sid: String,
    pub typ: TokenType,
    pub iat: u64,
    pub exp: u64,
}

/// Why a token was refused. Deliberately coarse: the client learns only that it must log in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("bad token signature")]
    Signature,
    #[error("token expired")]
    Expired,
}

type HmacSha256 = SimpleHmac<Sha256>;

/// Signs and checks tokens with one key.
#[derive(Clone)]
pub struct Signer {
    key: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(key hidden)")
    }
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

impl Signer {
    pub fn new(key: &[u8]) -> Signer {
        Signer {
            key: zeroize::Zeroizing::new(key.to_vec()),
        }
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC accepts keys of any length")
    }

    /// The token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = B64.encode(HEADER);
        let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// The claims of a token signed by this key, unexpired at `now` (seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: serde_json::Value = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(JwtError::Malformed);
        }
        let sig = B64.decode(s).map_err(|_| JwtError::Malformed)?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig).map_err(|_| JwtError::Signature)?;
        let claims: Claims = B64
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Malformed)?;
        if claims.exp <= now {
            return Err(JwtError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "ada".into(),
            role: Role::Viewer,
            sid: "s1".into(),
            typ: TokenType::Access,
            iat: 100,
            exp,
        }
    }

    #[test]
    fn tokens_verify_with_their_key_until_they_expire() {
        let s = Signer::new(b"k1");
        let t = s.sign(&claims(200));
        assert_eq!(s.verify(&t, 150).unwrap(), claims(200));
        assert_eq!(s.verify(&t, 200), Err(JwtError::Expired));
        assert_eq!(Signer::new(b"k2").verify(&t, 150), Err(JwtError::Signature));
    }

    #[test]
    fn tampered_or_unsigned_tokens_are_refused() {
        let s = Signer::new(b"k1");
        let t = s.sign(&claims(200));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(
            br#"{"sub":"ada","role":"admin","sid":"s1","typ":"access","iat":100,"exp":200}"#,
        );
        parts[1] = &forged;
        assert_eq!(s.verify(&parts.join("."), 150), Err(JwtError::Signature));
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), forged);
        assert_eq!(s.verify(&none, 150), Err(JwtError::Malformed));
        assert_eq!(s.verify("abc", 150), Err(JwtError::Malformed));
    }
}
