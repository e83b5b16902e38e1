//! TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps from the Unix epoch, one step of skew
//! either side) through the `totp-rs` crate, and the sealing of TOTP secrets at rest with
//! AES-256-GCM under a key derived from `AUTH_SECRET_KEY`.
//!
//! Single use is not this module's job: it says which step a code matched, and the caller
//! stores the last accepted step and refuses any code whose step is not later.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;
use totp_rs::{Algorithm, Builder, Totp};

use crate::secret::SecretKey;

/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: u8 = 6;
/// Steps accepted either side of the server's current one.
pub const SKEW: u16 = 1;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
pub const SECRET_BYTES: usize = 20;
/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "Chronicle";

/// Why a secret or a sealed secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// The secret is shorter than RFC 4226 allows (128 bits).
    #[error("the TOTP secret is too short")]
    SecretTooShort,
    /// A sealed secret did not decrypt: another key, another account, or corruption.
    #[error("the sealed TOTP secret does not open with this key")]
    Unsealable,
}

/// A TOTP shared secret: raw bytes; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl TotpSecret {
    /// A fresh random 160-bit secret.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// A secret from its raw bytes (at least 16).
    ///
    /// # Errors
    ///
    /// [`TotpError::SecretTooShort`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, TotpError> {
        if bytes.len() < 16 {
            return Err(TotpError::SecretTooShort);
        }
        Ok(Self(bytes))
    }

    /// A secret from its base32 form (as shown to the user, padded or not).
    ///
    /// # Errors
    ///
    /// [`TotpError::SecretTooShort`] for anything that is not base32 of at least 16 bytes.
    pub fn from_base32(text: &str) -> Result<Self, TotpError> {
        let bytes = totp_rs::Secret::try_from_base32(text.trim().trim_end_matches('='))
            .map_err(|_| TotpError::SecretTooShort)?;
        Self::from_bytes(bytes.as_bytes().to_vec())
    }

    /// The raw bytes, to seal.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Unpadded RFC 4648 base32, as authenticator apps take it.
    pub fn base32(&self) -> String {
        totp_rs::Secret::from(self.0.clone())
            .to_base32()
            .trim_end_matches('=')
            .to_owned()
    }

    /// `otpauth://totp/Chronicle:<address>?secret=…&issuer=Chronicle&algorithm=SHA1&digits=6&period=30`.
    pub fn otpauth_uri(&self, address: &str) -> String {
        format!(
            "otpauth://totp/{ISSUER}:{}?secret={}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            percent_encode(address),
            self.base32()
        )
    }

    fn totp(&self, digits: u8) -> Totp {
        // Length was checked on construction and digits are 6 or 8: the RFC checks cannot
        // fail, so the non-checking build is the same value without an error path.
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(digits)
            .with_skew(SKEW)
            .with_step_duration(STEP_SECS)
            .with_secret(self.0.clone())
            .build_noncompliant()
    }

    /// The code of `step` (seconds since the epoch / 30).
    pub fn code_at_step(&self, step: u64) -> String {
        self.totp(DIGITS).generate(step * STEP_SECS).to_string()
    }

    /// The step of the first code in the window around `unix_seconds` that equals `code` and
    /// is later than `after` (the last step this account had accepted); `None` for a wrong,
    /// malformed, replayed or older code.
    pub fn matching_step(&self, code: &str, unix_seconds: u64, after: Option<u64>) -> Option<u64> {
        let code = code.trim();
        if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let totp = self.totp(DIGITS);
        let origin = unix_seconds / STEP_SECS;
        let first = origin.saturating_sub(u64::from(SKEW));
        let mut matched = None;
        // Every step of the window is computed, so the time taken does not tell which matched.
        for step in first..=origin + u64::from(SKEW) {
            let candidate = totp.generate(step * STEP_SECS).to_string();
            let equal = constant_time_eq(candidate.as_bytes(), code.as_bytes());
            if equal && after.is_none_or(|last| step > last) && matched.is_none() {
                matched = Some(step);
            }
        }
        matched
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The step of `unix_seconds`.
pub fn step_of(unix_seconds: u64) -> u64 {
    unix_seconds / STEP_SECS
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and `@`, which a label
/// may carry as it is).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Bytes of the random nonce prefixed to each sealed secret.
const NONCE_BYTES: usize = 12;

/// Seals TOTP secrets at rest: AES-256-GCM under a key derived from `AUTH_SECRET_KEY`, a random
/// 96-bit nonce per sealing, the account id as associated data (a sealed secret copied to
/// another account's row does not open).
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

impl SecretBox {
    /// The box of `key`. The AES key is HMAC-SHA256(`AUTH_SECRET_KEY`, purpose), so the same
    /// server secret can also key the fake WebAuthn credential ids without reusing one key for
    /// two algorithms.
    pub fn new(key: &SecretKey) -> Self {
        // HMAC takes a key of any length, so the error arm is never taken; it keeps the
        // server secret itself rather than inventing a panic.
        let derived: [u8; 32] = match <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()) {
            Ok(mac) => mac
                .chain_update(b"chronicle/totp-secret/v1")
                .finalize()
                .into_bytes()
                .into(),
            Err(_) => *key.as_bytes(),
        };
        Self {
            cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(derived)),
        }
    }

    /// Seals `secret` for `account`: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, secret: &TotpSecret, account: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self.cipher.encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: secret.as_bytes(),
                aad: account,
            },
        );
        let mut out = nonce.to_vec();
        // Encryption fails only for messages over 64 GiB; a secret is 20 bytes.
        out.extend(sealed.unwrap_or_default());
        out
    }

    /// Opens what [`Self::seal`] made for `account`.
    ///
    /// # Errors
    ///
    /// [`TotpError::Unsealable`] for another key or account, or altered bytes.
    pub fn open(&self, sealed: &[u8], account: &[u8]) -> Result<TotpSecret, TotpError> {
        if sealed.len() <= NONCE_BYTES {
            return Err(TotpError::Unsealable);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| TotpError::Unsealable)?;
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: account,
                },
            )
            .map_err(|_| TotpError::Unsealable)?;
        TotpSecret::from_bytes(plain).map_err(|_| TotpError::Unsealable)
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    /// RFC 6238 appendix B: the SHA-1 seed is the ASCII string "12345678901234567890".
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap()
    }

    #[test]
    fn the_rfc_6238_appendix_b_sha1_vectors_hold() {
        let vectors: [(u64, &str); 6] = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        let secret = rfc_secret();
        for (time, expected) in vectors {
            // The appendix prints 8 digits; the same HMAC truncated to 6 is our code.
            assert_eq!(
                secret.totp(8).generate(time).to_string(),
                expected,
                "T={time}"
            );
            assert_eq!(
                secret.code_at_step(step_of(time)),
                expected[2..],
                "6 digits at T={time}"
            );
            assert_eq!(
                secret.matching_step(&expected[2..], time, None),
                Some(step_of(time))
            );
        }
    }

    #[test]
    fn a_code_is_accepted_one_step_either_side_and_no_further() {
        let secret = rfc_secret();
        let now = 1_234_567_890;
        let step = step_of(now);
        for offset in [-1i64, 0, 1] {
            let s = step.saturating_add_signed(offset);
            assert_eq!(
                secret.matching_step(&secret.code_at_step(s), now, None),
                Some(s)
            );
        }
        for far in [step - 2, step + 2] {
            assert_eq!(
                secret.matching_step(&secret.code_at_step(far), now, None),
                None
            );
        }
    }

    #[test]
    fn a_code_of_the_last_accepted_step_or_an_older_one_is_refused() {
        let secret = rfc_secret();
        let now = 1_234_567_890;
        let step = step_of(now);
        let code = secret.code_at_step(step);
        assert_eq!(secret.matching_step(&code, now, Some(step)), None);
        assert_eq!(secret.matching_step(&code, now, Some(step + 1)), None);
        assert_eq!(secret.matching_step(&code, now, Some(step - 1)), Some(step));
        let older = secret.code_at_step(step - 1);
        assert_eq!(secret.matching_step(&older, now, Some(step)), None);
    }

    #[test]
    fn malformed_codes_match_nothing() {
        let secret = rfc_secret();
        for code in ["", "12345", "1234567", "12345a", "８９００５９"] {
            assert_eq!(
                secret.matching_step(code, 1_234_567_890, None),
                None,
                "{code}"
            );
        }
    }

    #[test]
    fn the_secret_is_shown_as_unpadded_base32_in_the_otpauth_uri() {
        let secret = rfc_secret();
        assert_eq!(secret.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            secret.otpauth_uri("ada+x@example.com"),
            "otpauth://totp/Chronicle:ada%2Bx@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Chronicle&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(TotpSecret::from_base32(&secret.base32()).unwrap(), secret);
        let fresh = TotpSecret::generate();
        assert_eq!(fresh.as_bytes().len(), 20);
        assert_eq!(fresh.base32().len(), 32);
        assert!(!format!("{fresh:?}").contains(&fresh.base32()));
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_account() {
        let key = SecretKey::generate();
        let sealer = SecretBox::new(&key);
        let secret = TotpSecret::generate();
        let sealed = sealer.seal(&secret, b"account-a");
        assert!(!sealed.windows(20).any(|w| w == secret.as_bytes()));
        assert_eq!(sealer.open(&sealed, b"account-a").unwrap(), secret);
        assert_eq!(
            sealer.open(&sealed, b"account-b"),
            Err(TotpError::Unsealable)
        );
        assert_eq!(
            SecretBox::new(&SecretKey::generate()).open(&sealed, b"account-a"),
            Err(TotpError::Unsealable)
        );
        let mut altered = sealed.clone();
        if let Some(last) = altered.last_mut() {
            *last ^= 1;
        }
        assert_eq!(
            sealer.open(&altered, b"account-a"),
            Err(TotpError::Unsealable)
        );
        // A fresh nonce each time: the same secret never seals to the same bytes.
        assert_ne!(sealer.seal(&secret, b"account-a"), sealed);
    }
}
