//! The one place the write side calls the `auth` crate: signing keys, password hashing and
//! policy, opaque tokens, address normalization. Handlers see plain types, and the count of
//! hashing work done (a test seam for "an unknown address costs the same hash").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use auth::password::{HashError, PasswordHasher};
use auth::totp::{SecretBox, TotpSecret};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::settings::AuthSettings;

/// Why the crypto could not be set up from the settings.
#[derive(Debug, thiserror::Error)]
#[error("accounts' keys (AUTH_SIGNING_KEYS, AUTH_SECRET_KEY): {0}")]
pub struct KeyError(String);

/// A freshly made opaque token: the value to hand out once and the hash to store.
#[derive(Debug)]
pub struct FreshToken {
    /// The token itself: goes to the client (cookie, mail) and nowhere else.
    pub value: String,
    /// SHA-256 of it: what is stored.
    pub hash: Vec<u8>,
}

/// An issued access token.
#[derive(Debug)]
pub struct AccessToken {
    /// The JWT.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// What an access token proved.
#[derive(Debug, Clone)]
pub struct Bearer {
    /// The account.
    pub account_id: Uuid,
    /// The session.
    pub session_id: Uuid,
}

/// Signing keys, verifier and hasher.
pub struct Crypto {
    keys: auth::SigningKeys,
    verifier: auth::TokenVerifier,
    hasher: PasswordHasher,
    hash_work: Arc<AtomicU64>,
    totp_box: SecretBox,
    passkeys: super::relying_party::RelyingParty,
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashFailure {
    /// Every hashing slot stayed busy past the wait: 503.
    #[error("password hashing is saturated")]
    Busy,
    /// Anything else.
    #[error("password hashing failed: {0}")]
    Failed(String),
}

impl From<HashError> for HashFailure {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy => Self::Busy,
            other => Self::Failed(other.to_string()),
        }
    }
}

impl Crypto {
    /// Loads the keys and builds the hasher from `settings`.
    ///
    /// # Errors
    ///
    /// The PEM holds no usable Ed25519 key.
    pub fn new(settings: &AuthSettings) -> Result<Self, KeyError> {
        let token_settings = auth::TokenSettings {
            issuer: settings.issuer.clone(),
            ..auth::TokenSettings::default()
        };
        let keys = auth::SigningKeys::from_pem(settings.signing_keys.expose(), token_settings)
            .map_err(|error| KeyError(error.to_string()))?;
        let verifier = keys.verifier();
        let secret_key = auth::secret::SecretKey::from_base64(settings.secret_key.expose())
            .map_err(|error| KeyError(error.to_string()))?;
        let passkeys =
            super::relying_party::RelyingParty::new(&settings.webauthn, secret_key.as_bytes())
                .map_err(KeyError)?;
        Ok(Self {
            totp_box: SecretBox::new(&secret_key),
            passkeys,
            keys,
            verifier,
            hasher: PasswordHasher::new(settings.hash_concurrency, settings.hash_max_wait),
            hash_work: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many password hashes and verifications this instance ran.
    pub fn hash_work(&self) -> u64 {
        self.hash_work.load(Ordering::Relaxed)
    }

    /// Hashes a new password (Argon2id, on the blocking pool).
    ///
    /// # Errors
    ///
    /// [`HashFailure::Busy`] when saturated.
    pub async fn hash_password(&self, password: &str) -> Result<String, HashFailure> {
        self.hash_work.fetch_add(1, Ordering::Relaxed);
        let hashed = self.hasher.hash(password).await?.as_str().to_owned();
        count_hash("hash");
        Ok(hashed)
    }

    /// Checks `password` against `stored`, or against a dummy hash of the same cost when there
    /// is none, so an unknown address costs what a wrong password costs.
    ///
    /// # Errors
    ///
    /// [`HashFailure::Busy`] when saturated.
    pub async fn verify_password(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<bool, HashFailure> {
        self.hash_work.fetch_add(1, Ordering::Relaxed);
        let stored = stored.map(auth::password::PasswordHash::from_phc);
        let right = self.hasher.verify(password, stored.as_ref()).await?;
        // The dummy hash of an unknown address counts too: both login failures cost one.
        count_hash("verify");
        Ok(right)
    }

    /// Hashes each recovery code of a new set (Argon2id, its normalized form), one after the
    /// other under the hasher's concurrency bound.
    ///
    /// # Errors
    ///
    /// [`HashFailure::Busy`] when saturated.
    pub async fn hash_recovery_codes(&self, codes: &[String]) -> Result<Vec<String>, HashFailure> {
        let mut hashes = Vec::with_capacity(codes.len());
        for code in codes {
            let normal = auth::recovery::normalize(code)
                .ok_or_else(|| HashFailure::Failed("a generated code does not parse".to_owned()))?;
            self.hash_work.fetch_add(1, Ordering::Relaxed);
            hashes.push(self.hasher.hash(&normal).await?.as_str().to_owned());
        }
        Ok(hashes)
    }

    /// The position of the stored code `presented` matches (ignoring case, spaces and
    /// hyphens); `None` when it matches none. Input that cannot be a code is hashed against
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`HashFailure::Busy`] when saturated.
    pub async fn match_recovery_code(
        &self,
        presented: &str,
        stored: &[event_store::mfa::RecoveryCode],
    ) -> Result<Option<i16>, HashFailure> {
        let Some(normal) = auth::recovery::normalize(presented) else {
            return Ok(None);
        };
        for code in stored {
            self.hash_work.fetch_add(1, Ordering::Relaxed);
            let hash = auth::password::PasswordHash::from_phc(code.code_hash.clone());
            if self.hasher.verify(&normal, Some(&hash)).await? {
                return Ok(Some(code.position));
            }
        }
        Ok(None)
    }

    /// The passkeys' relying party.
    pub fn passkeys(&self) -> &super::relying_party::RelyingParty {
        &self.passkeys
    }

    /// Seals a TOTP secret for `account_id` (AES-256-GCM, see [`SecretBox`]).
    pub fn seal_totp(&self, secret: &TotpSecret, account_id: Uuid) -> Vec<u8> {
        self.totp_box.seal(secret, account_id.as_bytes())
    }

    /// Opens a sealed TOTP secret of `account_id`.
    ///
    /// # Errors
    ///
    /// Another key sealed it (`AUTH_SECRET_KEY` changed) or the bytes were altered.
    pub fn open_totp(&self, sealed: &[u8], account_id: Uuid) -> Result<TotpSecret, KeyError> {
        self.totp_box
            .open(sealed, account_id.as_bytes())
            .map_err(|error| KeyError(error.to_string()))
    }

    /// Issues an access token for a session.
    ///
    /// # Errors
    ///
    /// Signing failed.
    pub fn issue(
        &self,
        account_id: Uuid,
        session_id: Uuid,
        roles: &[String],
        amr: &[String],
        auth_time: DateTime<Utc>,
    ) -> Result<AccessToken, KeyError> {
        let roles: Vec<auth::Role> = roles.iter().filter_map(|role| parse_role(role)).collect();
        let amr: Vec<&str> = amr.iter().map(String::as_str).collect();
        let issued = self
            .keys
            .issue(account_id, session_id, &roles, &amr, auth_time, Utc::now())
            .map_err(|error| KeyError(error.to_string()))?;
        Ok(AccessToken {
            token: issued.token,
            expires_in: issued.expires_in,
        })
    }

    /// The account and session a valid access token names; `None` for any refused token.
    pub fn verify_access(&self, token: &str) -> Option<Bearer> {
        let claims = self.verifier.verify(token, Utc::now()).ok()?;
        Some(Bearer {
            account_id: claims.sub,
            session_id: claims.sid,
        })
    }
}

fn parse_role(role: &str) -> Option<auth::Role> {
    match role {
        "user" => Some(auth::Role::User),
        "admin" => Some(auth::Role::Admin),
        "auditor" => Some(auth::Role::Auditor),
        _ => None,
    }
}

/// A new refresh token (`crt_` + 256 random bits).
pub fn refresh_token() -> FreshToken {
    fresh(auth::secret::refresh_token())
}

/// A new mail token (256 random bits).
pub fn mail_token() -> FreshToken {
    fresh(auth::secret::opaque_token())
}

/// A new `mfa_token` (256 random bits).
pub fn mfa_token() -> FreshToken {
    fresh(auth::secret::opaque_token())
}

fn fresh(token: auth::secret::OpaqueToken) -> FreshToken {
    FreshToken {
        hash: token.hash.to_vec(),
        value: token.value,
    }
}

/// SHA-256 of a presented token, to look it up.
pub fn hash_token(token: &str) -> Vec<u8> {
    auth::secret::hash_token(token).to_vec()
}

/// The address as stored: trimmed, lowercased, checked.
///
/// # Errors
///
/// What is wrong with it.
pub fn normalize_email(raw: &str) -> Result<String, String> {
    auth::normalize_email(raw).map_err(|error| error.to_string())
}

/// The password policy: length, common passwords, not the address.
///
/// # Errors
///
/// What is wrong with it.
pub fn check_password(password: &str, email: &str) -> Result<(), String> {
    auth::password::check_password(password, email).map_err(|error| error.to_string())
}

/// Counts one Argon2id run that completed in `chronicle_password_hashes_total{op}`; a request
/// refused for want of a hashing slot (503) ran none.
fn count_hash(op: &'static str) {
    metrics::counter!(service_kit::metric_names::PASSWORD_HASHES_TOTAL, "op" => op).increment(1);
}
