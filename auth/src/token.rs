//! EdDSA (Ed25519) access tokens: signing keys from PEM, issuing, verifying and the JWKS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The `typ` header every access token carries (RFC 9068), so an ID token or any other JWT
/// signed by the same key can never pass as an access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// A role an account holds; read when a token is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every account.
    User,
    /// Administers accounts and sees everything.
    Admin,
    /// Reads everything, changes nothing.
    Auditor,
}

/// The claims of an access token (ACCOUNTS.md, "Tokens").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer (`AUTH_ISSUER`).
    pub iss: String,
    /// Audience (`chronicle-api`).
    pub aud: String,
    /// The account id.
    pub sub: Uuid,
    /// The session id.
    pub sid: Uuid,
    /// Roles at issue time, always containing `user`.
    pub roles: Vec<Role>,
    /// Authentication methods (`pwd`, `otp`, `hwk`, `mfa`).
    pub amr: Vec<String>,
    /// When the session's login happened (seconds since the epoch).
    pub auth_time: i64,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before (seconds since the epoch).
    pub nbf: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// Token id, a UUID v7.
    pub jti: Uuid,
}

/// Issuer, audience, lifetime and clock leeway of access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// The `iss` claim written and required.
    pub issuer: String,
    /// The `aud` claim written and required.
    pub audience: String,
    /// How long an access token lives.
    pub access_ttl: Duration,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: "chronicle".to_owned(),
            audience: "chronicle-api".to_owned(),
            access_ttl: Duration::from_secs(900),
            leeway: Duration::from_secs(30),
        }
    }
}

/// Why a signing key set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not PEM.
    #[error("signing keys are not valid PEM: {0}")]
    Pem(String),
    /// The PEM holds no block at all.
    #[error("no signing key in the PEM text")]
    Empty,
    /// A block is not a `PRIVATE KEY` (PKCS#8) block.
    #[error("PEM block {index} is `{tag}`, expected `PRIVATE KEY` (PKCS#8)")]
    WrongBlock {
        /// Zero-based position of the block.
        index: usize,
        /// The block's label.
        tag: String,
    },
    /// A block is PKCS#8 but not an Ed25519 private key.
    #[error("PEM block {index} is not a PKCS#8 Ed25519 private key")]
    NotEd25519 {
        /// Zero-based position of the block.
        index: usize,
    },
    /// The same key is listed twice.
    #[error("PEM block {index} repeats key {kid}")]
    Duplicate {
        /// Zero-based position of the repeated block.
        index: usize,
        /// The repeated key's id.
        kid: String,
    },
}

/// Why a token could not be issued or was refused; every refusal is a 401 to the caller, the
/// variants only feed metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS, bad base64 or JSON, missing fields, or a forbidden header.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match the named key.
    #[error("bad token signature")]
    BadSignature,
    /// The `kid` is missing or names no key we hold.
    #[error("unknown signing key")]
    UnknownKey,
    /// The `alg` is not `EdDSA`, or the `typ` is not `at+jwt`.
    #[error("wrong token algorithm or type")]
    WrongAlg,
    /// `exp` is past, beyond the leeway.
    #[error("token expired")]
    Expired,
    /// `iss`, `aud` or `nbf` is wrong.
    #[error("token claims refused")]
    Claims,
    /// Signing failed (a bug or a broken key; never the caller's fault).
    #[error("signing failed: {0}")]
    Signing(String),
}

impl TokenError {
    /// A short stable label for metrics (`reason` of the threat counters).
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::UnknownKey => "unknown_key",
            TokenError::WrongAlg => "wrong_alg",
            TokenError::Expired => "expired",
            TokenError::Claims => "claims",
            TokenError::Signing(_) => "signing",
        }
    }
}

/// A freshly signed access token and what the login answer needs about it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The compact JWS.
    pub token: String,
    /// Seconds until `exp` (the `expires_in` of the answer).
    pub expires_in: u64,
    /// The claims inside.
    pub claims: AccessClaims,
}

/// The public half of the key set, as `GET /auth/jwks.json` serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// Every verifying key, the signing one first.
    pub keys: Vec<Jwk>,
}

/// One Ed25519 public key as a JWK (RFC 8037).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// The RFC 7638 thumbprint.
    pub kid: String,
    /// Always `EdDSA`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

struct PublicKey {
    kid: String,
    x: String,
    decoding: DecodingKey,
}

/// The configured Ed25519 keys: the first signs, all verify.
pub struct SigningKeys {
    encoding: EncodingKey,
    signing_kid: String,
    settings: TokenSettings,
    verifier: TokenVerifier,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("signing_kid", &self.signing_kid)
            .field("verifying_kids", &self.verifier.kids())
            .finish_non_exhaustive()
    }
}

/// The RFC 7638 thumbprint of an Ed25519 public key: SHA-256 over the required members in
/// lexicographic order with no whitespace, base64url.
pub fn jwk_thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

impl SigningKeys {
    /// Parses one or more PKCS#8 Ed25519 private keys in PEM; the first signs.
    pub fn from_pem(pem_text: &str, settings: TokenSettings) -> Result<Self, KeyError> {
        let blocks = pem::parse_many(pem_text).map_err(|e| KeyError::Pem(e.to_string()))?;
        let mut public = Vec::with_capacity(blocks.len());
        let mut encoding = None;
        for (index, block) in blocks.iter().enumerate() {
            if block.tag() != "PRIVATE KEY" {
                return Err(KeyError::WrongBlock {
                    index,
                    tag: block.tag().to_owned(),
                });
            }
            let key = SigningKey::from_pkcs8_der(block.contents())
                .map_err(|_| KeyError::NotEd25519 { index })?;
            let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
            let kid = jwk_thumbprint(&x);
            if public.iter().any(|k: &PublicKey| k.kid == kid) {
                return Err(KeyError::Duplicate { index, kid });
            }
            if encoding.is_none() {
                encoding = Some((EncodingKey::from_ed_der(block.contents()), kid.clone()));
            }
            let decoding =
                DecodingKey::from_ed_components(&x).map_err(|_| KeyError::NotEd25519 { index })?;
            public.push(PublicKey { kid, x, decoding });
        }
        let (encoding, signing_kid) = encoding.ok_or(KeyError::Empty)?;
        let verifier = TokenVerifier::new(public, settings.clone());
        Ok(Self {
            encoding,
            signing_kid,
            settings,
            verifier,
        })
    }

    /// The `kid` of the key that signs.
    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    /// The settings tokens are issued with.
    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Signs an access token for a session.
    pub fn issue(
        &self,
        sub: Uuid,
        sid: Uuid,
        roles: &[Role],
        amr: &[&str],
        auth_time: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, TokenError> {
        let ttl = self.settings.access_ttl.as_secs();
        let iat = now.timestamp();
        let exp = iat.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let mut roles_out: Vec<Role> = Vec::with_capacity(roles.len() + 1);
        // The contract promises `user` in every token, whatever the caller passed.
        roles_out.push(Role::User);
        for role in roles {
            if !roles_out.contains(role) {
                roles_out.push(*role);
            }
        }
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub,
            sid,
            roles: roles_out,
            amr: amr.iter().map(|m| (*m).to_owned()).collect(),
            auth_time: auth_time.timestamp(),
            iat,
            nbf: iat,
            exp,
            jti: Uuid::now_v7(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(self.signing_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))?;
        Ok(IssuedToken {
            token,
            expires_in: ttl,
            claims,
        })
    }

    /// The public keys, signing key first.
    pub fn jwks(&self) -> Jwks {
        self.verifier.jwks()
    }

    /// A cheap, cloneable verifier for every configured key.
    pub fn verifier(&self) -> TokenVerifier {
        self.verifier.clone()
    }
}

struct VerifierInner {
    keys: Vec<PublicKey>,
    by_kid: HashMap<String, usize>,
    settings: TokenSettings,
    validation: Validation,
}

/// Verifies access tokens against the configured keys; clones share one key set.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<VerifierInner>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("kids", &self.kids())
            .finish_non_exhaustive()
    }
}

/// The header members we read; anything that points at another key (`jku`, `jwk`, `x5u`,
/// `x5c`) or demands extensions (`crit`) is refused outright, so a token can never choose
/// its own key.
const FORBIDDEN_HEADERS: [&str; 5] = ["jku", "jwk", "x5u", "x5c", "crit"];

impl TokenVerifier {
    fn new(keys: Vec<PublicKey>, settings: TokenSettings) -> Self {
        let by_kid = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.kid.clone(), i))
            .collect();
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Time is checked by `verify` against the caller's `now`, so tests and the revocation
        // cache share one clock; the library would read the system clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = ["iss", "aud", "sub"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);
        validation.leeway = 0;
        Self {
            inner: Arc::new(VerifierInner {
                keys,
                by_kid,
                settings,
                validation,
            }),
        }
    }

    fn kids(&self) -> Vec<&str> {
        self.inner.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    /// The public keys, signing key first.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self
                .inner
                .keys
                .iter()
                .map(|k| Jwk {
                    kty: "OKP".to_owned(),
                    crv: "Ed25519".to_owned(),
                    x: k.x.clone(),
                    kid: k.kid.clone(),
                    alg: "EdDSA".to_owned(),
                    use_: "sig".to_owned(),
                })
                .collect(),
        }
    }

    /// Checks an access token's header, signature, issuer, audience and times at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenError> {
        let kid = check_header(token)?;
        let index = *self.inner.by_kid.get(&kid).ok_or(TokenError::UnknownKey)?;
        let key = &self.inner.keys[index].decoding;
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &self.inner.validation)
            .map_err(|e| map_jwt_error(e.kind()))?;
        let claims = data.claims;
        let leeway = i64::try_from(self.inner.settings.leeway.as_secs()).unwrap_or(i64::MAX);
        let now = now.timestamp();
        if claims.exp.saturating_add(leeway) <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf.saturating_sub(leeway) > now {
            return Err(TokenError::Claims);
        }
        Ok(claims)
    }
}

/// Reads the protected header as plain JSON, before any key is chosen: `none`, `HS256` and
/// algorithms the JWT library does not even name must come out as `WrongAlg`, not as a parse
/// error, and the key-pointing members must be refused whatever the algorithm.
fn check_header(token: &str) -> Result<String, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if FORBIDDEN_HEADERS
        .iter()
        .any(|name| header.contains_key(*name))
    {
        return Err(TokenError::Malformed);
    }
    if header.get("alg").and_then(|v| v.as_str()) != Some("EdDSA") {
        return Err(TokenError::WrongAlg);
    }
    if header.get("typ").and_then(|v| v.as_str()) != Some(ACCESS_TOKEN_TYP) {
        return Err(TokenError::WrongAlg);
    }
    match header.get("kid").and_then(|v| v.as_str()) {
        Some(kid) => Ok(kid.to_owned()),
        None => Err(TokenError::UnknownKey),
    }
}

fn map_jwt_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => TokenError::WrongAlg,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::InvalidIssuer
        | ErrorKind::InvalidAudience
        | ErrorKind::InvalidSubject
        | ErrorKind::ImmatureSignature
        | ErrorKind::MissingRequiredClaim(_) => TokenError::Claims,
        _ => TokenError::Malformed,
    }
}

/// A fresh Ed25519 private key in PKCS#8 PEM, for `chronicle keygen` and dev secrets.
pub fn generate_signing_key_pem() -> String {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    match key.to_pkcs8_der() {
        Ok(der) => pem::encode_config(
            &pem::Pem::new("PRIVATE KEY", der.as_bytes()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        ),
        // Encoding a 32-byte seed into a fixed DER template cannot fail; if a future version
        // could, an empty string fails loudly at `from_pem` rather than panicking here.
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().expect("valid time")
    }

    const NOW: i64 = 1_800_000_000;

    fn keys(pem: &str) -> SigningKeys {
        SigningKeys::from_pem(pem, TokenSettings::default()).expect("keys")
    }

    fn issue(keys: &SigningKeys, now: i64) -> IssuedToken {
        keys.issue(
            Uuid::now_v7(),
            Uuid::now_v7(),
            &[Role::Admin],
            &["pwd"],
            at(now - 60),
            at(now),
        )
        .expect("issue")
    }

    fn encoding_key(pem_text: &str) -> EncodingKey {
        EncodingKey::from_ed_der(pem::parse(pem_text).expect("pem").contents())
    }

    fn header(kid: &str) -> Header {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(kid.to_owned());
        header
    }

    fn sample_claims(keys: &SigningKeys) -> AccessClaims {
        issue(keys, NOW).claims
    }

    fn b64json(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
    }

    #[test]
    fn issue_then_verify_round_trips() {
        let keys = keys(&generate_signing_key_pem());
        let issued = issue(&keys, NOW);
        assert_eq!(issued.expires_in, 900);
        let claims = keys
            .verifier()
            .verify(&issued.token, at(NOW))
            .expect("verify");
        assert_eq!(claims, issued.claims);
        assert_eq!(claims.iss, "chronicle");
        assert_eq!(claims.aud, "chronicle-api");
        assert_eq!(claims.roles, [Role::User, Role::Admin]);
        assert_eq!(claims.amr, ["pwd"]);
        assert_eq!(claims.auth_time, NOW - 60);
        assert_eq!((claims.iat, claims.nbf, claims.exp), (NOW, NOW, NOW + 900));
        assert_eq!(claims.jti.get_version_num(), 7);

        let header = jsonwebtoken::decode_header(&issued.token).expect("header");
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(keys.signing_kid()));
    }

    #[test]
    fn roles_serialize_lowercase_and_user_is_always_there() {
        let keys = keys(&generate_signing_key_pem());
        let issued = keys
            .issue(
                Uuid::nil(),
                Uuid::nil(),
                &[Role::Auditor, Role::User],
                &[],
                at(NOW),
                at(NOW),
            )
            .expect("issue");
        assert_eq!(issued.claims.roles, [Role::User, Role::Auditor]);
        let json = serde_json::to_value(&issued.claims).expect("json");
        assert_eq!(json["roles"], serde_json::json!(["user", "auditor"]));
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 8037 appendix A.1 (private key) and A.3 (its thumbprint).
        let d = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .expect("d");
        let seed: [u8; 32] = d.try_into().expect("32 bytes");
        let der = SigningKey::from_bytes(&seed).to_pkcs8_der().expect("der");
        let pem_text = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_bytes()));
        let keys = keys(&pem_text);
        assert_eq!(
            keys.signing_kid(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        let jwks = keys.jwks();
        assert_eq!(
            jwks.keys[0].x,
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        assert_eq!(jwk_thumbprint(&jwks.keys[0].x), jwks.keys[0].kid);
    }

    #[test]
    fn jwks_has_the_contract_shape() {
        let keys = keys(&generate_signing_key_pem());
        let json = serde_json::to_value(keys.jwks()).expect("json");
        let key = &json["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], keys.signing_kid());
        assert_eq!(key["x"].as_str().expect("x").len(), 43);
        assert_eq!(key.as_object().expect("object").len(), 6);
    }

    #[test]
    fn first_key_signs_and_every_key_verifies() {
        let (old, new) = (generate_signing_key_pem(), generate_signing_key_pem());
        let old_only = keys(&old);
        let rotated = keys(&format!("{new}{old}"));
        assert_ne!(rotated.signing_kid(), old_only.signing_kid());
        let kids: Vec<_> = rotated.jwks().keys.into_iter().map(|k| k.kid).collect();
        assert_eq!(kids, [rotated.signing_kid(), old_only.signing_kid()]);

        // A token of the old key still verifies after the new one was put first...
        let old_token = issue(&old_only, NOW).token;
        assert!(rotated.verifier().verify(&old_token, at(NOW)).is_ok());
        // ...and the new key signs, which the old-only set does not know yet.
        let new_token = issue(&rotated, NOW).token;
        let kid = jsonwebtoken::decode_header(&new_token).expect("header").kid;
        assert_eq!(kid.as_deref(), Some(rotated.signing_kid()));
        assert_eq!(
            old_only.verifier().verify(&new_token, at(NOW)),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn a_token_forged_with_another_key_under_our_kid_is_refused() {
        let ours = keys(&generate_signing_key_pem());
        let attacker = generate_signing_key_pem();
        let forged = jsonwebtoken::encode(
            &header(ours.signing_kid()),
            &sample_claims(&ours),
            &encoding_key(&attacker),
        )
        .expect("encode");
        assert_eq!(
            ours.verifier().verify(&forged, at(NOW)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let keys = keys(&generate_signing_key_pem());
        let token = issue(&keys, NOW).token;
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut claims = issue(&keys, NOW).claims;
        claims.roles.push(Role::Admin);
        claims.sub = Uuid::nil();
        let payload = b64json(&serde_json::to_value(&claims).expect("json"));
        parts[1] = &payload;
        assert_eq!(
            keys.verifier().verify(&parts.join("."), at(NOW)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let keys = keys(&generate_signing_key_pem());
        let claims = serde_json::to_value(sample_claims(&keys)).expect("json");
        let head = serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": keys.signing_kid()});
        let verifier = keys.verifier();
        let unsigned = format!("{}.{}.", b64json(&head), b64json(&claims));
        assert_eq!(
            verifier.verify(&unsigned, at(NOW)),
            Err(TokenError::WrongAlg)
        );
        // Same with a signature part left in, and with the other spellings of none.
        let sig = issue(&keys, NOW)
            .token
            .rsplit('.')
            .next()
            .expect("sig")
            .to_owned();
        for alg in ["none", "None", "NONE"] {
            let head = serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": keys.signing_kid()});
            let token = format!("{}.{}.{sig}", b64json(&head), b64json(&claims));
            assert_eq!(
                verifier.verify(&token, at(NOW)),
                Err(TokenError::WrongAlg),
                "{alg}"
            );
        }
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        let keys = keys(&generate_signing_key_pem());
        let public = URL_SAFE_NO_PAD.decode(&keys.jwks().keys[0].x).expect("x");
        let verifier = keys.verifier();
        for alg in [Algorithm::HS256, Algorithm::HS512] {
            let mut head = header(keys.signing_kid());
            head.alg = alg;
            let token = jsonwebtoken::encode(
                &head,
                &sample_claims(&keys),
                &EncodingKey::from_secret(&public),
            )
            .expect("encode");
            assert_eq!(
                verifier.verify(&token, at(NOW)),
                Err(TokenError::WrongAlg),
                "{alg:?}"
            );
        }
        // An RS256 header over our EdDSA signature is refused before any key is used.
        let token = issue(&keys, NOW).token;
        let (_, rest) = token.split_once('.').expect("dots");
        let head = serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": keys.signing_kid()});
        let relabelled = format!("{}.{rest}", b64json(&head));
        assert_eq!(
            verifier.verify(&relabelled, at(NOW)),
            Err(TokenError::WrongAlg)
        );
    }

    #[test]
    fn a_type_other_than_at_jwt_is_refused() {
        let keys = keys(&generate_signing_key_pem());
        let pem_text = generate_signing_key_pem();
        let keys2 = SigningKeys::from_pem(&pem_text, TokenSettings::default()).expect("keys");
        for typ in [Some("JWT"), None] {
            let mut head = header(keys2.signing_kid());
            head.typ = typ.map(str::to_owned);
            let token =
                jsonwebtoken::encode(&head, &sample_claims(&keys), &encoding_key(&pem_text))
                    .expect("encode");
            assert_eq!(
                keys2.verifier().verify(&token, at(NOW)),
                Err(TokenError::WrongAlg)
            );
        }
    }

    #[test]
    fn wrong_issuer_or_audience_is_refused() {
        let pem_text = generate_signing_key_pem();
        let ours = keys(&pem_text);
        for settings in [
            TokenSettings {
                issuer: "someone-else".to_owned(),
                ..TokenSettings::default()
            },
            TokenSettings {
                audience: "other-api".to_owned(),
                ..TokenSettings::default()
            },
        ] {
            let theirs = SigningKeys::from_pem(&pem_text, settings).expect("keys");
            let token = issue(&theirs, NOW).token;
            assert_eq!(
                ours.verifier().verify(&token, at(NOW)),
                Err(TokenError::Claims)
            );
        }
    }

    #[test]
    fn expiry_allows_the_leeway_and_no_more() {
        let keys = keys(&generate_signing_key_pem());
        let token = issue(&keys, NOW).token;
        let verifier = keys.verifier();
        let exp = NOW + 900;
        assert!(verifier.verify(&token, at(exp - 1)).is_ok());
        assert!(verifier.verify(&token, at(exp)).is_ok(), "within leeway");
        assert!(
            verifier.verify(&token, at(exp + 29)).is_ok(),
            "within leeway"
        );
        assert_eq!(
            verifier.verify(&token, at(exp + 30)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verifier.verify(&token, at(exp + 3600)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn not_before_in_the_future_is_refused_beyond_the_leeway() {
        let keys = keys(&generate_signing_key_pem());
        let token = issue(&keys, NOW).token;
        let verifier = keys.verifier();
        assert!(
            verifier.verify(&token, at(NOW - 30)).is_ok(),
            "clock skew within leeway"
        );
        assert_eq!(
            verifier.verify(&token, at(NOW - 31)),
            Err(TokenError::Claims)
        );
        assert_eq!(
            verifier.verify(&token, at(NOW - 600)),
            Err(TokenError::Claims)
        );
    }

    #[test]
    fn unknown_or_missing_kid_is_refused() {
        let keys = keys(&generate_signing_key_pem());
        let pem_text = generate_signing_key_pem();
        let stranger = SigningKeys::from_pem(&pem_text, TokenSettings::default()).expect("keys");
        let token = issue(&stranger, NOW).token;
        assert_eq!(
            keys.verifier().verify(&token, at(NOW)),
            Err(TokenError::UnknownKey)
        );

        let mut head = header(keys.signing_kid());
        head.kid = None;
        let token = jsonwebtoken::encode(&head, &sample_claims(&keys), &encoding_key(&pem_text))
            .expect("encode");
        assert_eq!(
            keys.verifier().verify(&token, at(NOW)),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn key_pointing_headers_are_refused_even_when_correctly_signed() {
        let pem_text = generate_signing_key_pem();
        let keys = keys(&pem_text);
        let verifier = keys.verifier();
        let claims = sample_claims(&keys);
        let mut with_jku = header(keys.signing_kid());
        with_jku.jku = Some("https://attacker.example/jwks.json".to_owned());
        let mut with_x5u = header(keys.signing_kid());
        with_x5u.x5u = Some("https://attacker.example/cert.pem".to_owned());
        let mut with_x5c = header(keys.signing_kid());
        with_x5c.x5c = Some(vec!["MIIB".to_owned()]);
        let mut with_jwk = header(keys.signing_kid());
        with_jwk.jwk = serde_json::from_value(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": keys.jwks().keys[0].x,
        }))
        .ok();
        assert!(with_jwk.jwk.is_some(), "jwk header built");
        for head in [with_jku, with_x5u, with_x5c, with_jwk] {
            let token =
                jsonwebtoken::encode(&head, &claims, &encoding_key(&pem_text)).expect("encode");
            assert_eq!(verifier.verify(&token, at(NOW)), Err(TokenError::Malformed));
        }
    }

    #[test]
    fn garbage_is_malformed() {
        let pem_text = generate_signing_key_pem();
        let keys = keys(&pem_text);
        let verifier = keys.verifier();
        let valid = issue(&keys, NOW).token;
        for garbage in [
            String::new(),
            "garbage".to_owned(),
            "a.b.c".to_owned(),
            "...".to_owned(),
            format!("{valid}.extra"),
            format!("{}.e30.", URL_SAFE_NO_PAD.encode("not json")),
            format!("!!!.{}", valid.split_once('.').expect("dots").1),
        ] {
            assert_eq!(
                verifier.verify(&garbage, at(NOW)),
                Err(TokenError::Malformed),
                "{garbage:?}"
            );
        }
        // Correctly signed, but the claims are not ours.
        let odd =
            serde_json::json!({"iss": "chronicle", "aud": "chronicle-api", "sub": "not a uuid"});
        let token =
            jsonwebtoken::encode(&header(keys.signing_kid()), &odd, &encoding_key(&pem_text))
                .expect("encode");
        assert_eq!(verifier.verify(&token, at(NOW)), Err(TokenError::Malformed));
        // A signature part that is no signature at all.
        let (signed, _) = valid.rsplit_once('.').expect("dots");
        let token = format!("{signed}.c2ln");
        assert_eq!(
            verifier.verify(&token, at(NOW)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn claims_missing_from_a_well_signed_token_are_refused() {
        let pem_text = generate_signing_key_pem();
        let keys = keys(&pem_text);
        let mut claims = serde_json::to_value(sample_claims(&keys)).expect("json");
        claims.as_object_mut().expect("object").remove("exp");
        let token = jsonwebtoken::encode(
            &header(keys.signing_kid()),
            &claims,
            &encoding_key(&pem_text),
        )
        .expect("encode");
        assert!(keys.verifier().verify(&token, at(NOW)).is_err());
    }

    #[test]
    fn bad_key_sets_are_refused() {
        assert!(matches!(
            SigningKeys::from_pem("", TokenSettings::default()),
            Err(KeyError::Empty)
        ));
        let public = pem::encode(&pem::Pem::new("PUBLIC KEY", vec![1, 2, 3]));
        assert!(matches!(
            SigningKeys::from_pem(&public, TokenSettings::default()),
            Err(KeyError::WrongBlock { index: 0, .. })
        ));
        let junk = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert!(matches!(
            SigningKeys::from_pem(&junk, TokenSettings::default()),
            Err(KeyError::NotEd25519 { index: 0 })
        ));
        let one = generate_signing_key_pem();
        assert!(matches!(
            SigningKeys::from_pem(&format!("{one}{one}"), TokenSettings::default()),
            Err(KeyError::Duplicate { index: 1, .. })
        ));
    }

    #[test]
    fn generated_keys_are_pkcs8_pem_and_distinct() {
        let a = generate_signing_key_pem();
        assert!(a.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{a}");
        assert!(a.trim_end().ends_with("-----END PRIVATE KEY-----"));
        assert_ne!(
            keys(&a).signing_kid(),
            keys(&generate_signing_key_pem()).signing_kid()
        );
    }
}
