//! Opaque random tokens (refresh, mail, MFA), their SHA-256 storage form, and the server secret.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// Prefix of refresh tokens, so a leaked one is recognisable by secret scanners.
pub const REFRESH_PREFIX: &str = "crt_";

/// A random token and the SHA-256 that is the only form ever stored.
#[derive(Clone, PartialEq, Eq)]
pub struct OpaqueToken {
    /// The secret, handed to the client once.
    pub value: String,
    /// SHA-256 of `value`, for storage and lookup.
    pub hash: [u8; 32],
}

impl std::fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpaqueToken(<redacted>)")
    }
}

fn random_256() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A refresh token: `crt_` and 43 base64url characters (256 random bits).
pub fn refresh_token() -> OpaqueToken {
    let value = format!("{REFRESH_PREFIX}{}", random_256());
    let hash = hash_token(&value);
    OpaqueToken { value, hash }
}

/// A mail or MFA token: 256 random bits, 43 base64url characters.
pub fn opaque_token() -> OpaqueToken {
    let value = random_256();
    let hash = hash_token(&value);
    OpaqueToken { value, hash }
}

/// SHA-256 of a presented token, to look it up by its stored hash. A plain hash is enough:
/// the tokens carry 256 random bits, so there is nothing to brute-force.
pub fn hash_token(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Why `AUTH_SECRET_KEY` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretKeyError {
    /// Not standard base64.
    #[error("AUTH_SECRET_KEY is not valid base64")]
    Base64,
    /// Decodes to something other than 32 bytes.
    #[error("AUTH_SECRET_KEY must decode to 32 bytes, not {0}")]
    Length(usize),
}

/// The 32-byte server secret (`AUTH_SECRET_KEY`): encrypts TOTP secrets, keys fake credential ids.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// Parses standard base64 (surrounding whitespace ignored, as a file's newline).
    pub fn from_base64(text: &str) -> Result<Self, SecretKeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SecretKeyError::Base64)?;
        let len = bytes.len();
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretKeyError::Length(len))?;
        Ok(Self(key))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self(key)
    }

    /// The key as standard base64, the form `AUTH_SECRET_KEY` takes.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::str::FromStr for SecretKey {
    type Err = SecretKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_base64(s)
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_base64url(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn refresh_token_has_the_contract_format() {
        let token = refresh_token();
        let rest = token.value.strip_prefix("crt_").expect("crt_ prefix");
        assert_eq!(rest.len(), 43);
        assert!(is_base64url(rest), "{rest}");
        assert_eq!(URL_SAFE_NO_PAD.decode(rest).expect("base64url").len(), 32);
        assert_eq!(token.hash, hash_token(&token.value));
        assert_ne!(refresh_token().value, token.value);
    }

    #[test]
    fn opaque_token_is_256_bits_base64url() {
        let token = opaque_token();
        assert_eq!(token.value.len(), 43);
        assert!(is_base64url(&token.value));
        assert_eq!(token.hash, hash_token(&token.value));
        assert_ne!(opaque_token().value, token.value);
    }

    #[test]
    fn hash_token_is_sha256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hex: String = hash_token("abc")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn debug_redacts_secrets() {
        let token = refresh_token();
        assert!(!format!("{token:?}").contains(&token.value));
        let key = SecretKey::generate();
        assert!(!format!("{key:?}").contains(&key.to_base64()));
        assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
    }

    #[test]
    fn secret_key_parses_32_bytes_of_base64_only() {
        let key = SecretKey::generate();
        let text = format!("{}\n", key.to_base64());
        assert_eq!(SecretKey::from_base64(&text), Ok(key.clone()));
        assert_eq!(text.parse::<SecretKey>(), Ok(key));
        assert_eq!(
            SecretKey::from_base64("not base64!"),
            Err(SecretKeyError::Base64)
        );
        assert_eq!(
            SecretKey::from_base64(&STANDARD.encode([0u8; 16])),
            Err(SecretKeyError::Length(16))
        );
    }
}
