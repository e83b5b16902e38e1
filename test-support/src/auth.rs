//! Access tokens for tests: one signing key per test process, and tokens minted for any
//! account id and roles, as the login endpoint would issue them.

use std::sync::{Arc, OnceLock};

use auth::{Role, SigningKeys, TokenSettings};
use chrono::Utc;
use service_kit::Authenticator;
use service_kit::revocation::RevocationView;
use uuid::Uuid;

/// The key set every test service verifies with, made once per process.
pub fn keys() -> Arc<SigningKeys> {
    static KEYS: OnceLock<Arc<SigningKeys>> = OnceLock::new();
    Arc::clone(KEYS.get_or_init(|| {
        Arc::new(
            SigningKeys::from_pem(keys_pem(), TokenSettings::default())
                .expect("a generated key loads"),
        )
    }))
}

/// The PEM text of [`keys`], for code that loads keys from settings.
pub fn keys_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(auth::generate_signing_key_pem)
}

/// A key set nobody else uses: tokens it signs are forgeries to the test services.
pub fn fresh_keys() -> SigningKeys {
    SigningKeys::from_pem(&auth::generate_signing_key_pem(), TokenSettings::default())
        .expect("a generated key loads")
}

/// Auth settings naming [`keys`], for a service's settings.
pub fn settings() -> service_kit::caller::AuthSettings {
    service_kit::caller::AuthSettings {
        signing_keys_pem: keys_pem().to_owned(),
        ..service_kit::caller::AuthSettings::default()
    }
}

/// An authenticator over [`keys`] with an empty revocation view that nothing feeds.
pub fn authenticator() -> Authenticator {
    Authenticator::new(keys().verifier(), RevocationView::new())
}

/// A test account with a session and a valid access token for it.
#[derive(Debug, Clone)]
pub struct TestAccount {
    /// The account id.
    pub id: Uuid,
    /// The session id the token names.
    pub session: Uuid,
    /// Its roles (`user` always among them).
    pub roles: Vec<Role>,
    /// The access token.
    pub token: String,
}

impl TestAccount {
    /// A new account holding `roles` (and `user`), with a fresh session and token.
    pub fn new(roles: &[Role]) -> Self {
        Self::with_ids(Uuid::now_v7(), Uuid::now_v7(), roles)
    }

    /// A plain user.
    pub fn user() -> Self {
        Self::new(&[])
    }

    /// An admin.
    pub fn admin() -> Self {
        Self::new(&[Role::Admin])
    }

    /// An auditor.
    pub fn auditor() -> Self {
        Self::new(&[Role::Auditor])
    }

    /// A token for `account` in `session`, holding `roles`.
    pub fn with_ids(account: Uuid, session: Uuid, roles: &[Role]) -> Self {
        let now = Utc::now();
        let issued = keys()
            .issue(account, session, roles, &["pwd"], now, now)
            .expect("a test token signs");
        Self {
            id: account,
            session,
            roles: issued.claims.roles.clone(),
            token: issued.token,
        }
    }

    /// The `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// The account the suites written before accounts act as (through [`crate::acting_as`]):
/// admin and auditor, so every route they call still answers as it did, one per process.
pub fn tester() -> &'static TestAccount {
    static TESTER: OnceLock<TestAccount> = OnceLock::new();
    TESTER.get_or_init(|| TestAccount::new(&[Role::Admin, Role::Auditor]))
}

/// A token for `account` with `roles`, in a new session.
pub fn token(account: Uuid, roles: &[Role]) -> String {
    TestAccount::with_ids(account, Uuid::now_v7(), roles).token
}

/// Tokens that must all be refused, each with what is wrong with it, built from a valid
/// token of `account` so that only the named fault differs.
pub fn bad_tokens(account: &TestAccount) -> Vec<(&'static str, String)> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let now = Utc::now();
    let valid = &account.token;
    let mut parts = valid.split('.');
    let (header, payload) = (
        parts.next().expect("a JWT has a header"),
        parts.next().expect("a JWT has claims"),
    );
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url claims"))
            .expect("JSON claims");
    let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let kid = keys().signing_kid().to_owned();
    // Another account's id under the same signature: the signature no longer matches.
    let mut raised = claims.clone();
    raised["sub"] = serde_json::json!(Uuid::now_v7());
    raised["roles"] = serde_json::json!(["user", "admin", "auditor"]);
    let tampered = format!(
        "{header}.{}.{}",
        encode(&raised),
        valid.rsplit('.').next().unwrap_or("")
    );
    let unsigned = format!(
        "{}.{payload}.",
        encode(&serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": kid}))
    );
    let hs256 = format!(
        "{}.{payload}.{}",
        encode(&serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": kid})),
        URL_SAFE_NO_PAD.encode([7u8; 32])
    );
    let with_settings = |settings: TokenSettings, at| {
        SigningKeys::from_pem(keys_pem(), settings)
            .expect("the test key loads")
            .issue(
                account.id,
                account.session,
                &account.roles,
                &["pwd"],
                at,
                at,
            )
            .expect("signs")
            .token
    };
    let other_issuer = with_settings(
        TokenSettings {
            issuer: "someone-else".to_owned(),
            ..TokenSettings::default()
        },
        now,
    );
    let other_audience = with_settings(
        TokenSettings {
            audience: "another-api".to_owned(),
            ..TokenSettings::default()
        },
        now,
    );
    let expired = with_settings(TokenSettings::default(), now - chrono::TimeDelta::hours(1));
    let unknown_kid = fresh_keys()
        .issue(
            account.id,
            account.session,
            &account.roles,
            &["pwd"],
            now,
            now,
        )
        .expect("signs")
        .token;
    vec![
        ("tampered claims", tampered),
        ("alg none", unsigned),
        ("HS256", hs256),
        ("wrong issuer", other_issuer),
        ("wrong audience", other_audience),
        ("expired", expired),
        ("unknown kid", unknown_kid),
        ("not a JWT", "not-a-token".to_owned()),
    ]
}
