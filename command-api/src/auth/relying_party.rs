//! The WebAuthn relying party, apart from the passkey routes: [`super::crypto`] builds it at
//! start-up and the routes use it, so it depends on the settings alone (no import circle).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use webauthn_rs::fake::{FakePasskeyDistribution, WebauthnFakeCredentialGenerator};
use webauthn_rs::prelude::Url;
use webauthn_rs::{Webauthn, WebauthnBuilder};

use super::settings::WebauthnSettings;

/// The relying party: webauthn-rs configured from `AUTH_WEBAUTHN_*`, and the generator of fake
/// credential ids for addresses without passkeys.
pub struct RelyingParty {
    pub(super) webauthn: Webauthn,
    pub(super) fake_ids: WebauthnFakeCredentialGenerator<FakePasskeyDistribution>,
    pub(super) timeout_ms: u32,
}

impl RelyingParty {
    /// Builds the relying party; the fake ids are keyed by HMAC-SHA256(`AUTH_SECRET_KEY`,
    /// purpose), so they are stable across replicas and restarts and say nothing without the
    /// key (the same derivation as the TOTP key, another purpose).
    ///
    /// # Errors
    ///
    /// An origin is not a URL, or webauthn-rs refuses the RP id for the origins.
    pub fn new(settings: &WebauthnSettings, secret_key: &[u8; 32]) -> Result<Self, String> {
        let origins = settings
            .origins
            .iter()
            .map(|origin| {
                Url::parse(origin).map_err(|e| format!("AUTH_WEBAUTHN_ORIGINS {origin}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Some((first, rest)) = origins.split_first() else {
            return Err("AUTH_WEBAUTHN_ORIGINS names no origin".to_owned());
        };
        let mut builder = WebauthnBuilder::new(&settings.rp_id, first)
            .map_err(|e| format!("AUTH_WEBAUTHN_RP_ID: {e}"))?
            .rp_name(&settings.rp_name)
            .timeout(settings.ceremony_ttl);
        for origin in rest {
            builder = builder.append_allowed_origin(origin);
        }
        let webauthn = builder
            .build()
            .map_err(|e| format!("AUTH_WEBAUTHN_*: {e}"))?;
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret_key)
            .map_err(|e| format!("AUTH_SECRET_KEY: {e}"))?;
        let key = mac
            .chain_update(b"chronicle/webauthn-fake-ids/v1")
            .finalize()
            .into_bytes();
        let fake_ids = WebauthnFakeCredentialGenerator::new(&key)
            .map_err(|e| format!("fake credential key: {e}"))?;
        Ok(Self {
            webauthn,
            fake_ids,
            timeout_ms: u32::try_from(settings.ceremony_ttl.as_millis()).unwrap_or(u32::MAX),
        })
    }
}
