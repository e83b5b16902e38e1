//! Argon2id password hashing on the blocking pool behind a semaphore, and the password policy.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Argon2id memory cost in KiB (OWASP's minimum, ACCOUNTS.md).
pub const M_COST_KIB: u32 = 19_456;
/// Argon2id passes.
pub const T_COST: u32 = 2;
/// Argon2id lanes.
pub const P_COST: u32 = 1;

/// Shortest password accepted, in characters.
pub const MIN_CHARS: usize = 12;
/// Longest password accepted, in characters.
pub const MAX_CHARS: usize = 256;

/// The 10,000 most common passwords, most common first, one per line. Taken from the first
/// 10,000 entries of the `passwords` frequency list of the `zxcvbn` 4.5.0 package on PyPI
/// (MIT, Daniel Wolf's Python port of Dropbox's zxcvbn; the list is ranked from Mark Burnett's
/// 10 million password corpus). See `data/README.md`.
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| COMMON_PASSWORDS.lines().filter(|l| !l.is_empty()).collect());

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) as stored in the read model.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a stored PHC string; a corrupt one is reported by `verify`.
    pub fn from_phc(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }

    /// The PHC string, for storage.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// Why hashing or verifying did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// No hashing slot was free within the wait bound (the API answers 503).
    #[error("password hashing is saturated")]
    Busy,
    /// The stored hash is not a valid Argon2 PHC string.
    #[error("stored password hash is corrupt")]
    Corrupt,
    /// Argon2 itself failed (bad parameters, RNG failure).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The blocking task panicked or was cancelled at shutdown.
    #[error("password hashing task failed: {0}")]
    Task(String),
}

/// Runs Argon2id on tokio's blocking pool, at most `concurrency` at once.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    max_wait: Duration,
    dummy: Arc<OnceLock<Result<String, String>>>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("available", &self.permits.available_permits())
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| HashError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &[u8]) -> Result<String, HashError> {
    argon2()?
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
}

fn verify_blocking(password: &[u8], phc: &str) -> Result<bool, HashError> {
    let parsed = argon2::PasswordHash::new(phc).map_err(|_| HashError::Corrupt)?;
    // The stored hash's own parameters are used, so raising the cost later keeps old hashes valid.
    match argon2()?.verify_password(password, &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(HashError::Hash(e.to_string())),
    }
}

/// The dummy hash an unknown address is checked against: computed once, with the same
/// parameters as real hashes, so checking it costs exactly a real verification.
fn dummy_hash(cell: &OnceLock<Result<String, String>>) -> Result<&str, HashError> {
    cell.get_or_init(|| hash_blocking(b"chronicle dummy password").map_err(|e| e.to_string()))
        .as_deref()
        .map_err(|e| HashError::Hash(e.clone()))
}

impl PasswordHasher {
    /// Computes the dummy hash now (call it at start-up), so that even the first unknown
    /// address costs one verification and not a hash plus a verification.
    pub async fn warm_up(&self) -> Result<(), HashError> {
        let permit = self.permit().await?;
        let dummy = Arc::clone(&self.dummy);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            dummy_hash(&dummy).map(|_| ())
        })
        .await
        .map_err(|e| HashError::Task(e.to_string()))?
    }

    /// A hasher allowing `concurrency` hashes at once (at least one); a caller waits at most
    /// `max_wait` for a slot.
    pub fn new(concurrency: usize, max_wait: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            max_wait,
            dummy: Arc::new(OnceLock::new()),
        }
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, HashError> {
        match tokio::time::timeout(self.max_wait, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it as saturation rather than panic.
            Ok(Err(_)) | Err(_) => Err(HashError::Busy),
        }
    }

    /// Hashes a new password with a fresh salt.
    pub async fn hash(&self, password: &str) -> Result<PasswordHash, HashError> {
        let permit = self.permit().await?;
        let password = password.to_owned();
        // The permit moves into the task: if the caller's future is dropped, the slot stays
        // taken until the CPU work really ends.
        let phc = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash_blocking(password.as_bytes())
        })
        .await
        .map_err(|e| HashError::Task(e.to_string()))??;
        Ok(PasswordHash(phc))
    }

    /// Checks a password against a stored hash; `None` (an unknown address) spends the same
    /// work on a dummy hash and answers `false`.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&PasswordHash>,
    ) -> Result<bool, HashError> {
        let permit = self.permit().await?;
        let password = password.to_owned();
        let stored = stored.map(|h| h.0.clone());
        let dummy = Arc::clone(&self.dummy);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            match stored {
                Some(phc) => verify_blocking(password.as_bytes(), &phc),
                None => {
                    verify_blocking(password.as_bytes(), dummy_hash(&dummy)?)?;
                    Ok(false)
                }
            }
        })
        .await
        .map_err(|e| HashError::Task(e.to_string()))?
    }

    /// Takes a slot and keeps it, so tests can saturate the hasher deterministically.
    #[cfg(test)]
    async fn hold(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("semaphore open")
    }
}

/// Why a new password is refused (422).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejection {
    /// Fewer than 12 characters.
    #[error("the password must have at least 12 characters")]
    TooShort,
    /// More than 256 characters.
    #[error("the password must have at most 256 characters")]
    TooLong,
    /// In the list of the 10,000 most common passwords.
    #[error("the password is too common")]
    Common,
    /// Equal to the address or its local part.
    #[error("the password must not be the email address")]
    SameAsEmail,
}

/// Applies the password policy of ACCOUNTS.md to a new password for `email`.
pub fn check_password(password: &str, email: &str) -> Result<(), PasswordRejection> {
    // Characters, not bytes: "any characters" are allowed and a 12-character password in
    // Cyrillic must not be refused as 24 bytes long, nor a long one slip through as short.
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(PasswordRejection::TooShort);
    }
    if chars > MAX_CHARS {
        return Err(PasswordRejection::TooLong);
    }
    if COMMON.contains(password) {
        return Err(PasswordRejection::Common);
    }
    let lowered = password.to_lowercase();
    let email = email.trim().to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    if lowered == email || lowered == local {
        return Err(PasswordRejection::SameAsEmail);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_ten_thousand_distinct_entries() {
        assert_eq!(COMMON.len(), 10_000);
        assert!(COMMON.contains("123456"));
    }

    #[tokio::test]
    async fn verify_right_wrong_and_unknown() {
        let hasher = PasswordHasher::new(2, Duration::from_secs(30));
        let hash = hasher.hash("correct horse battery").await.expect("hash");
        assert!(
            hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.as_str()
        );
        assert!(
            hasher
                .verify("correct horse battery", Some(&hash))
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify("correct horse battery!", Some(&hash))
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify("correct horse battery", None)
                .await
                .expect("verify")
        );
        let dummy = hasher
            .dummy
            .get()
            .expect("dummy computed")
            .as_ref()
            .expect("dummy ok");
        assert!(dummy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        // Not even the dummy's own password gets in through an unknown address.
        assert!(
            !hasher
                .verify("chronicle dummy password", None)
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn warm_up_computes_the_dummy_before_any_unknown_address() {
        let hasher = PasswordHasher::new(1, Duration::from_secs(30));
        assert!(hasher.dummy.get().is_none());
        hasher.warm_up().await.expect("warm up");
        assert!(matches!(hasher.dummy.get(), Some(Ok(phc)) if phc.starts_with("$argon2id$")));
        assert!(
            !hasher
                .verify("correct horse battery", None)
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn two_hashes_of_one_password_differ_by_salt() {
        let hasher = PasswordHasher::new(1, Duration::from_secs(30));
        let a = hasher.hash("correct horse battery").await.expect("hash");
        let b = hasher.hash("correct horse battery").await.expect("hash");
        assert_ne!(a, b);
        let round = PasswordHash::from_phc(a.as_str());
        assert!(
            hasher
                .verify("correct horse battery", Some(&round))
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn corrupt_stored_hash_is_an_error_not_a_match() {
        let hasher = PasswordHasher::new(1, Duration::from_secs(30));
        let bad = PasswordHash::from_phc("not a phc string");
        assert!(matches!(
            hasher.verify("whatever it is", Some(&bad)).await,
            Err(HashError::Corrupt)
        ));
    }

    #[tokio::test]
    async fn busy_when_every_slot_is_held_past_max_wait() {
        let hasher = PasswordHasher::new(1, Duration::from_millis(20));
        let held = hasher.hold().await;
        assert!(matches!(
            hasher.hash("correct horse battery").await,
            Err(HashError::Busy)
        ));
        assert!(matches!(
            hasher.verify("correct horse battery", None).await,
            Err(HashError::Busy)
        ));
        drop(held);
        assert!(hasher.hash("correct horse battery").await.is_ok());
    }

    #[test]
    fn debug_redacts_the_hash() {
        let hash = PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
        assert_eq!(format!("{hash:?}"), "PasswordHash(<redacted>)");
    }

    #[test]
    fn length_boundaries_count_characters() {
        let email = "someone@example.com";
        assert_eq!(
            check_password(&"x".repeat(11), email),
            Err(PasswordRejection::TooShort)
        );
        assert_eq!(check_password(&"x".repeat(12), email), Ok(()));
        assert_eq!(check_password(&"x".repeat(256), email), Ok(()));
        assert_eq!(
            check_password(&"x".repeat(257), email),
            Err(PasswordRejection::TooLong)
        );
        // 12 two-byte characters (24 bytes) pass, 11 of them (22 bytes) do not.
        assert_eq!(check_password(&"é".repeat(12), email), Ok(()));
        assert_eq!(
            check_password(&"é".repeat(11), email),
            Err(PasswordRejection::TooShort)
        );
        // 256 four-byte characters (1024 bytes) pass, 257 do not.
        assert_eq!(check_password(&"🔑".repeat(256), email), Ok(()));
        assert_eq!(
            check_password(&"🔑".repeat(257), email),
            Err(PasswordRejection::TooLong)
        );
    }

    #[test]
    fn common_passwords_are_refused() {
        let email = "someone@example.com";
        // Entries of the list that reach 12 characters.
        assert_eq!(
            check_password("qwerty123456", email),
            Err(PasswordRejection::Common)
        );
        assert_eq!(
            check_password("1q2w3e4r5t6y", email),
            Err(PasswordRejection::Common)
        );
        assert_eq!(
            check_password("leavemealone", email),
            Err(PasswordRejection::Common)
        );
        assert_eq!(check_password("qwerty1234567", email), Ok(()));
        // Compared exactly as sent, like every password (ACCOUNTS.md): no case folding.
        assert_eq!(check_password("QWERTY123456", email), Ok(()));
    }

    #[test]
    fn the_address_and_its_local_part_are_refused_case_insensitively() {
        let email = "Long.Local.Part@Example.com";
        assert_eq!(
            check_password("long.local.part@example.com", email),
            Err(PasswordRejection::SameAsEmail)
        );
        assert_eq!(
            check_password("LONG.LOCAL.PART", email),
            Err(PasswordRejection::SameAsEmail)
        );
        assert_eq!(check_password("long.local.part!", email), Ok(()));
    }
}
