//! Access tokens already verified, with their claims, so a request that presents the same
//! token again does not pay for another Ed25519 verification (~130 µs of CPU in release on a
//! loaded machine, a large share of two cores at thousands of reads per second).
//!
//! Keyed by the token's whole text, not a digest of it: a hit needs the very bytes that were
//! verified, so there is no collision to craft. Only tokens that passed verification are ever
//! inserted, so a caller cannot fill the map with keys of its choosing, and the map's hasher
//! is std's per-process keyed SipHash, so lookups of chosen keys cannot be steered into one
//! bucket either. The hash reads only the token's last [`HASHED_TAIL`] bytes, which in one of
//! ours are its signature's: as unpredictable as the whole, at a tenth of the hashing (the
//! whole token, some 350 bytes, took 1,500 instructions per request, 1.5 % of a read). Entries are bounded in number (quick_cache's S3-FIFO eviction); tokens are
//! ours, a few hundred bytes each, so the bound is one on memory too.
//!
//! A hit is served only while `nbf <= now < exp`; outside that window the token is verified
//! afresh, which applies the verifier's leeway, so the cache never accepts a token that
//! verification would refuse at `now`, and never needs to know the leeway. Revocation is not
//! cached: the authenticator checks the revocation view on every request, hit or miss. The
//! entries are only valid for the one key set they were verified against, which is why the
//! cache belongs to one [`crate::caller::Authenticator`] and its verifier.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use auth::{AccessClaims, TokenError, TokenVerifier};
use chrono::{DateTime, Utc};

/// Entries kept by default: each is one live token (a session's current access token), so this
/// covers that many concurrently active sessions per replica, at most a few MiB.
pub const DEFAULT_CAPACITY: usize = 8192;

/// The environment variable that sets the capacity; `0` turns the cache off (the bench's
/// uncached figure).
pub const CAPACITY_VAR: &str = "AUTH_TOKEN_CACHE";

/// The bytes of a token that its key's hash reads: the end of its signature (an Ed25519
/// signature is 86 characters of base64url).
pub const HASHED_TAIL: usize = 32;

/// A cached token's whole text, hashed by its tail ([`HASHED_TAIL`]).
#[derive(PartialEq, Eq)]
struct Key(Box<str>);

/// A token looked up: hashed as [`Key`], equal to a key of the same text.
struct Lookup<'a>(&'a str);

/// What [`Key`] and [`Lookup`] hash.
fn hash_tail<H: Hasher>(token: &str, state: &mut H) {
    let bytes = token.as_bytes();
    bytes[bytes.len().saturating_sub(HASHED_TAIL)..].hash(state);
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_tail(&self.0, state);
    }
}

impl Hash for Lookup<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_tail(self.0, state);
    }
}

impl quick_cache::Equivalent<Key> for Lookup<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self.0 == *key.0
    }
}

/// Verified tokens and their claims; clones share the entries.
#[derive(Clone)]
pub struct TokenCache {
    entries: Option<Arc<quick_cache::sync::Cache<Key, Arc<AccessClaims>>>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are credentials: only their number may reach a log.
        f.debug_struct("TokenCache")
            .field("enabled", &self.entries.is_some())
            .field("len", &self.len())
            .finish()
    }
}

impl TokenCache {
    /// A cache of at most about `capacity` tokens; `0` caches nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: (capacity > 0).then(|| Arc::new(quick_cache::sync::Cache::new(capacity))),
        }
    }

    /// The capacity [`CAPACITY_VAR`] names, else [`DEFAULT_CAPACITY`].
    ///
    /// # Errors
    ///
    /// The variable is set but is not a whole number.
    pub fn from_env() -> Result<Self, crate::env::EnvError> {
        crate::env::var_or(CAPACITY_VAR, DEFAULT_CAPACITY).map(Self::new)
    }

    /// Tokens held now.
    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |entries| entries.len())
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The claims of `token` at `now`: from the cache while they are inside their validity
    /// window, else from `verifier` (and then remembered, when valid).
    ///
    /// # Errors
    ///
    /// `verifier` refuses the token.
    pub fn verify(
        &self,
        verifier: &TokenVerifier,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<AccessClaims>, TokenError> {
        let Some(entries) = &self.entries else {
            return verifier.verify(token, now).map(Arc::new);
        };
        let at = now.timestamp();
        if let Some(claims) = entries.get(&Lookup(token)) {
            if within(&claims, at) {
                return Ok(claims);
            }
            // Past `exp` (or a clock that went back before `nbf`): the verifier decides, with
            // its leeway; the entry is of no more use once the token expired.
            entries.remove(&Lookup(token));
        }
        let claims = Arc::new(verifier.verify(token, now)?);
        if within(&claims, at) {
            entries.insert(Key(token.into()), Arc::clone(&claims));
        }
        Ok(claims)
    }
}

/// Whether `at` lies in the token's own window, which verification (leeway or not) accepts.
fn within(claims: &AccessClaims, at: i64) -> bool {
    claims.nbf <= at && at < claims.exp
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth::{Role, SigningKeys, TokenSettings};
    use chrono::TimeDelta;
    use uuid::Uuid;

    fn keys() -> SigningKeys {
        SigningKeys::from_pem(&auth::generate_signing_key_pem(), TokenSettings::default())
            .expect("test setup")
    }

    fn token(keys: &SigningKeys, now: DateTime<Utc>) -> String {
        keys.issue(
            Uuid::now_v7(),
            Uuid::now_v7(),
            &[Role::User],
            &["pwd"],
            now,
            now,
        )
        .expect("test setup")
        .token
    }

    #[test]
    fn a_hit_is_served_without_verifying_again() {
        let (signer, stranger) = (keys(), keys());
        let now = Utc::now();
        let token = token(&signer, now);
        let cache = TokenCache::new(16);
        let first = cache
            .verify(&signer.verifier(), &token, now)
            .expect("test setup");
        assert_eq!(cache.len(), 1);
        // A verifier that does not know the key would refuse the token: a success here can
        // only come from the cache.
        assert!(stranger.verifier().verify(&token, now).is_err());
        let second = cache
            .verify(&stranger.verifier(), &token, now + TimeDelta::seconds(1))
            .expect("test setup");
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn a_token_that_ends_like_a_cached_one_is_verified_itself() {
        let signer = keys();
        let now = Utc::now();
        let cached = token(&signer, now);
        let cache = TokenCache::new(16);
        cache
            .verify(&signer.verifier(), &cached, now)
            .expect("test setup");
        // The same signature under another payload: the same hash, another key.
        let (header, _) = cached.split_once('.').expect("a JWS");
        let (_, signature) = cached.rsplit_once('.').expect("a JWS");
        let forged = format!("{header}.e30.{signature}");
        assert!(forged.ends_with(&cached[cached.len() - HASHED_TAIL..]));
        assert!(cache.verify(&signer.verifier(), &forged, now).is_err());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_refused_token_is_not_remembered() {
        let signer = keys();
        let now = Utc::now();
        let mut token = token(&signer, now);
        token.push('x');
        let cache = TokenCache::new(16);
        assert!(cache.verify(&signer.verifier(), &token, now).is_err());
        assert!(cache.is_empty());
    }

    #[test]
    fn expiry_is_checked_on_every_hit_with_the_verifiers_leeway() {
        let signer = keys();
        let now = Utc::now();
        let token = token(&signer, now);
        let settings = TokenSettings::default();
        let ttl = TimeDelta::from_std(settings.access_ttl).expect("test setup");
        let leeway = TimeDelta::from_std(settings.leeway).expect("test setup");
        let cache = TokenCache::new(16);
        let verifier = signer.verifier();
        assert!(cache.verify(&verifier, &token, now).is_ok());
        assert_eq!(cache.len(), 1);
        // Just past `exp` but within the leeway: what the verifier says, not what the entry says.
        let in_leeway = now + ttl + TimeDelta::seconds(1);
        assert_eq!(
            cache.verify(&verifier, &token, in_leeway).is_ok(),
            verifier.verify(&token, in_leeway).is_ok()
        );
        assert!(cache.verify(&verifier, &token, in_leeway).is_ok());
        let expired = now + ttl + leeway + TimeDelta::seconds(1);
        assert!(matches!(
            cache.verify(&verifier, &token, expired),
            Err(TokenError::Expired)
        ));
        assert!(cache.is_empty());
    }

    #[test]
    fn capacity_zero_caches_nothing_and_still_verifies() {
        let signer = keys();
        let now = Utc::now();
        let token = token(&signer, now);
        let cache = TokenCache::new(0);
        assert!(cache.verify(&signer.verifier(), &token, now).is_ok());
        assert!(cache.is_empty());
        assert!(cache.verify(&keys().verifier(), &token, now).is_err());
    }

    #[test]
    fn the_map_stays_bounded() {
        let signer = keys();
        let now = Utc::now();
        let cache = TokenCache::new(8);
        for _ in 0..64 {
            assert!(
                cache
                    .verify(&signer.verifier(), &token(&signer, now), now)
                    .is_ok()
            );
        }
        assert!(cache.len() <= 16, "{} entries", cache.len());
    }
}
