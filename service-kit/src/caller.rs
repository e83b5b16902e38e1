//! Who is calling: the bearer token of a request, verified and checked against the
//! revocation view, as an axum extractor (ACCOUNTS.md, "Tokens" and "Who may call what").
//!
//! No `Authorization` header makes an anonymous caller; a header that is there but does not
//! hold a good token is a 401 on every route, public ones included, so a bad token is never
//! silently anonymous. Nothing here touches the database.

use auth::{AccessClaims, Role, TokenVerifier};
use axum::extract::{FromRef, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::problem::Problem;
use crate::revocation::{FeedGuard, RevocationView};
use crate::token_cache::TokenCache;

/// `WWW-Authenticate` of a 401 for a missing token.
pub const CHALLENGE: &str = r#"Bearer realm="chronicle""#;
/// `WWW-Authenticate` of a 401 for a token that was presented and refused.
pub const CHALLENGE_INVALID: &str = r#"Bearer realm="chronicle", error="invalid_token""#;
/// The `actor` of anonymous requests in event metadata.
pub const ANONYMOUS: &str = "anonymous";

/// 401 `/problems/unauthenticated`: no token where one is needed, or a bad one.
pub fn unauthenticated(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "/problems/unauthenticated",
        "Authentication required",
    )
    .detail(detail)
}

/// 403 `/problems/forbidden`: the account lacks the route's role, or may see but not change
/// the resource.
pub fn forbidden(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "/problems/forbidden", "Forbidden").detail(detail)
}

/// An authenticated account, as its access token describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCaller {
    /// The account id (`sub`).
    pub account_id: Uuid,
    /// The session id (`sid`).
    pub session_id: Uuid,
    /// The roles at issue time.
    pub roles: Vec<Role>,
    /// How the session authenticated (`pwd`, `otp`, `hwk`, `mfa`).
    pub amr: Vec<String>,
}

impl AccountCaller {
    /// Whether the account holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the account is an admin.
    pub fn is_admin(&self) -> bool {
        self.has(Role::Admin)
    }
}

impl From<AccessClaims> for AccountCaller {
    fn from(claims: AccessClaims) -> Self {
        Self {
            account_id: claims.sub,
            session_id: claims.sid,
            roles: claims.roles,
            amr: claims.amr,
        }
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No `Authorization` header.
    Anonymous,
    /// A valid, unrevoked access token.
    Account(AccountCaller),
}

impl Caller {
    /// The `actor` of event metadata: the account id, or `anonymous`.
    pub fn actor(&self) -> String {
        match self {
            Self::Anonymous => ANONYMOUS.to_owned(),
            Self::Account(account) => account.account_id.to_string(),
        }
    }

    /// The account, if any.
    pub fn account(&self) -> Option<&AccountCaller> {
        match self {
            Self::Anonymous => None,
            Self::Account(account) => Some(account),
        }
    }

    /// The account id, if any.
    pub fn account_id(&self) -> Option<Uuid> {
        self.account().map(|account| account.account_id)
    }

    /// The token's session id, if any.
    pub fn session_id(&self) -> Option<Uuid> {
        self.account().map(|account| account.session_id)
    }

    /// Whether the caller is an account holding `role`.
    pub fn has(&self, role: Role) -> bool {
        self.account().is_some_and(|account| account.has(role))
    }

    /// The account, or 401 for an anonymous caller.
    ///
    /// # Errors
    ///
    /// The caller is anonymous.
    pub fn require_account(&self) -> Result<&AccountCaller, Problem> {
        self.account()
            .ok_or_else(|| unauthenticated("this route needs an access token"))
    }

    /// The account if it holds `role`: 401 for an anonymous caller, else 403.
    ///
    /// # Errors
    ///
    /// The caller is anonymous or lacks the role.
    pub fn require_role(&self, role: Role) -> Result<&AccountCaller, Problem> {
        let account = self.require_account()?;
        if account.has(role) {
            Ok(account)
        } else {
            Err(forbidden(format!(
                "this route needs the `{}` role",
                role_name(role)
            )))
        }
    }

    /// The account if it holds any of `roles`: 401 for an anonymous caller, else 403.
    ///
    /// # Errors
    ///
    /// The caller is anonymous or lacks every role.
    pub fn require_any_role(&self, roles: &[Role]) -> Result<&AccountCaller, Problem> {
        let account = self.require_account()?;
        if roles.iter().any(|role| account.has(*role)) {
            Ok(account)
        } else {
            let names: Vec<&str> = roles.iter().map(|role| role_name(*role)).collect();
            Err(forbidden(format!(
                "this route needs one of the roles {}",
                names.join(", ")
            )))
        }
    }
}

/// A role's name as tokens spell it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Admin => "admin",
        Role::Auditor => "auditor",
    }
}

/// Where a service's token keys and claims come from: `AUTH_SIGNING_KEYS_FILE` (a path) or
/// `AUTH_SIGNING_KEYS` (the PEM text itself), `AUTH_ISSUER` (default `chronicle`) and
/// `AUTH_AUDIENCE` (default `chronicle-api`). No keys is allowed here, so the dev runner can
/// supply its own; [`AuthSettings::signing_keys`] then refuses, and the service with it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// One or more PKCS#8 Ed25519 private keys in PEM; the first signs. Empty when unset.
    pub signing_keys_pem: String,
    /// The `iss` claim tokens carry.
    pub issuer: String,
    /// The `aud` claim tokens carry.
    pub audience: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let token = auth::TokenSettings::default();
        Self {
            signing_keys_pem: String::new(),
            issuer: token.issuer,
            audience: token.audience,
        }
    }
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Private keys never reach a log.
        f.debug_struct("AuthSettings")
            .field("signing_keys", &!self.signing_keys_pem.is_empty())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

/// Why a service cannot verify tokens.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// Neither variable names any key.
    #[error(
        "no token signing keys: set AUTH_SIGNING_KEYS_FILE (a PEM file) or AUTH_SIGNING_KEYS \
         (PEM text); `chronicle keygen` prints a new key"
    )]
    Missing,
    /// The keys do not load.
    #[error("AUTH_SIGNING_KEYS(_FILE): {0}")]
    Keys(#[from] auth::KeyError),
}

impl AuthSettings {
    /// Reads the settings from the environment.
    ///
    /// # Errors
    ///
    /// `AUTH_SIGNING_KEYS_FILE` is set but cannot be read.
    pub fn from_env() -> Result<Self, crate::env::EnvError> {
        let defaults = Self::default();
        let file = crate::env::string_or("AUTH_SIGNING_KEYS_FILE", "");
        let signing_keys_pem = if file.trim().is_empty() {
            crate::env::string_or("AUTH_SIGNING_KEYS", "")
        } else {
            std::fs::read_to_string(file.trim()).map_err(|error| crate::env::EnvError {
                name: "AUTH_SIGNING_KEYS_FILE".to_owned(),
                value: file.clone(),
                reason: error.to_string(),
            })?
        };
        Ok(Self {
            signing_keys_pem,
            issuer: crate::env::string_or("AUTH_ISSUER", &defaults.issuer),
            audience: crate::env::string_or("AUTH_AUDIENCE", &defaults.audience),
        })
    }

    /// The key set, with the standard lifetime and leeway.
    ///
    /// # Errors
    ///
    /// No keys are configured, or they do not load.
    pub fn signing_keys(&self) -> Result<auth::SigningKeys, AuthSetupError> {
        if self.signing_keys_pem.trim().is_empty() {
            return Err(AuthSetupError::Missing);
        }
        let settings = auth::TokenSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            ..auth::TokenSettings::default()
        };
        Ok(auth::SigningKeys::from_pem(
            &self.signing_keys_pem,
            settings,
        )?)
    }
}

/// Verifies bearer tokens (once per token, then from the [`TokenCache`]) and consults the
/// revocation view on every request; clones share all three.
#[derive(Debug, Clone)]
pub struct Authenticator {
    verifier: TokenVerifier,
    verified: TokenCache,
    revocations: RevocationView,
    _feed: Option<std::sync::Arc<FeedGuard>>,
}

impl Authenticator {
    /// An authenticator over `verifier` and a view that the caller feeds, with a cache of
    /// [`crate::token_cache::DEFAULT_CAPACITY`] tokens.
    pub fn new(verifier: TokenVerifier, revocations: RevocationView) -> Self {
        Self {
            verifier,
            verified: TokenCache::new(crate::token_cache::DEFAULT_CAPACITY),
            revocations,
            _feed: None,
        }
    }

    /// An authenticator whose view is fed from the log on `primary`; the feed stops when the
    /// last clone is dropped. The token cache's size comes from `AUTH_TOKEN_CACHE` (`0`: off).
    pub fn with_feed(verifier: TokenVerifier, primary: sqlx::PgPool) -> Self {
        let revocations = RevocationView::new();
        let feed = revocations.spawn_feed(&primary);
        // A bad value must not stop a service over a tuning knob; the default is always safe.
        let verified = TokenCache::from_env().unwrap_or_else(|error| {
            tracing::warn!(%error, "ignoring it; caching verified tokens with the default size");
            TokenCache::new(crate::token_cache::DEFAULT_CAPACITY)
        });
        Self {
            verifier,
            verified,
            revocations,
            _feed: Some(std::sync::Arc::new(feed)),
        }
    }

    /// The same authenticator with a token cache of `capacity` tokens (`0`: none).
    #[must_use]
    pub fn with_token_cache(mut self, capacity: usize) -> Self {
        self.verified = TokenCache::new(capacity);
        self
    }

    /// The verified-token cache.
    pub fn token_cache(&self) -> &TokenCache {
        &self.verified
    }

    /// The token verifier (for the JWKS).
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    /// The revocation view, for the revoking replica to note what it revoked at once.
    pub fn revocations(&self) -> &RevocationView {
        &self.revocations
    }

    /// The caller an `Authorization` header names at `now`.
    ///
    /// # Errors
    ///
    /// The header is there but holds no valid, unrevoked bearer token.
    pub fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
        now: DateTime<Utc>,
    ) -> Result<Caller, Problem> {
        let Some(value) = authorization else {
            return Ok(Caller::Anonymous);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|text| {
                let (scheme, token) = text.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| invalid("the Authorization header is not `Bearer <token>`"))?;
        let claims = self
            .verified
            .verify(&self.verifier, token, now)
            .map_err(|error| {
                tracing::debug!(reason = error.label(), "access token refused");
                metrics::counter!(crate::metric_names::SECURITY_EVENTS_TOTAL, "kind" => "invalid_token")
                    .increment(1);
                invalid("the access token is invalid or expired")
            })?;
        self.revocations.check(&claims).map_err(|reason| {
            tracing::debug!(reason = reason.label(), "access token revoked");
            metrics::counter!(crate::metric_names::SECURITY_EVENTS_TOTAL, "kind" => "invalid_token")
                .increment(1);
            invalid("the access token was revoked")
        })?;
        Ok(Caller::Account(AccountCaller {
            account_id: claims.sub,
            session_id: claims.sid,
            roles: claims.roles.clone(),
            amr: claims.amr.clone(),
        }))
    }
}

/// A 401 for a presented token that was refused.
fn invalid(detail: &str) -> Problem {
    unauthenticated(detail)
}

/// A rejection that carries its `WWW-Authenticate` header.
#[derive(Debug)]
pub struct Unauthenticated(pub Problem);

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        let mut response = self.0.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE_INVALID),
        );
        response
    }
}

impl<S> FromRequestParts<S> for Caller
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Unauthenticated;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let authenticator = Authenticator::from_ref(state);
        let caller = authenticator
            .authenticate(parts.headers.get(header::AUTHORIZATION), Utc::now())
            .map_err(Unauthenticated)?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// Authenticates a request once, before any other extractor, so a bad token is a 401 ahead of
/// every other answer; the [`Caller`] goes into the request's extensions, where the extractor
/// and the requirement layers below find it. The plumbing calls it for a service's own routes
/// ([`crate::http::Authentication`]) rather than a layer of its own, which would clone the
/// services below it on every request.
pub async fn authenticated(
    authenticator: &Authenticator,
    mut request: Request,
    next: Next,
) -> Response {
    match authenticator.authenticate(request.headers().get(header::AUTHORIZATION), Utc::now()) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            challenge_missing(next.run(request).await)
        }
        Err(problem) => Unauthenticated(problem).into_response(),
    }
}

fn caller_of(request: &Request) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Anonymous)
}

/// Route layer: the route needs an account (401 first, before the request's shape is read).
pub async fn needs_account(request: Request, next: Next) -> Response {
    match caller_of(&request).require_account() {
        Ok(_) => next.run(request).await,
        Err(problem) => challenge_missing(problem.into_response()),
    }
}

/// Route layer: the route needs the `admin` role (401, then 403).
pub async fn needs_admin(request: Request, next: Next) -> Response {
    needs_any(request, next, &[Role::Admin]).await
}

/// Route layer: the route needs the `auditor` role (401, then 403).
pub async fn needs_auditor(request: Request, next: Next) -> Response {
    needs_any(request, next, &[Role::Auditor]).await
}

/// Route layer: the route needs `admin` or `auditor` (401, then 403).
pub async fn needs_admin_or_auditor(request: Request, next: Next) -> Response {
    needs_any(request, next, &[Role::Admin, Role::Auditor]).await
}

async fn needs_any(request: Request, next: Next, roles: &[Role]) -> Response {
    match caller_of(&request).require_any_role(roles) {
        Ok(_) => next.run(request).await,
        Err(problem) => challenge_missing(problem.into_response()),
    }
}

fn challenge_missing(mut response: Response) -> Response {
    if response.status() == StatusCode::UNAUTHORIZED
        && !response.headers().contains_key(header::WWW_AUTHENTICATE)
    {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE),
        );
    }
    response
}

/// Middleware: every 401 answer carries `WWW-Authenticate` (handlers answer 401 through
/// [`Caller::require_account`], which cannot set headers).
pub async fn challenge(request: Request, next: Next) -> Response {
    challenge_missing(next.run(request).await)
}

/// The OpenAPI security scheme's name.
pub const BEARER_SCHEME: &str = "bearerAuth";

/// Documents bearer tokens in an OpenAPI document: adds the `bearerAuth` scheme, marks every
/// operation as needing it, and those in `public` (`(method, path)`, lowercase method) as
/// taking it optionally (anonymous, or a token that must then be valid).
pub fn document_bearer_auth(doc: &mut utoipa::openapi::OpenApi, public: &[(&str, &str)]) {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    let scheme = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("JWT")
        .description(Some(
            "An EdDSA access token from `POST /api/v1/auth/login` or `/auth/refresh`",
        ))
        .build();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(BEARER_SCHEME, SecurityScheme::Http(scheme));
    let bearer = || SecurityRequirement::new(BEARER_SCHEME, Vec::<String>::new());
    for (path, item) in &mut doc.paths.paths {
        let operations = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                let open = public
                    .iter()
                    .any(|(m, p)| *m == method && *p == path.as_str());
                operation.security = Some(if open {
                    vec![SecurityRequirement::default(), bearer()]
                } else {
                    vec![bearer()]
                });
                // Any route answers 401 to a refused token (public ones too), and a route that
                // needs an account 403 to one without the role or the right: both documented
                // on every operation they can reach, once, here.
                let responses = &mut operation.responses.responses;
                responses.entry("401".to_owned()).or_insert_with(|| {
                    problem_response("No valid access token (`WWW-Authenticate` says why)")
                });
                if !open {
                    responses.entry("403".to_owned()).or_insert_with(|| {
                        problem_response("The account lacks the role or the right")
                    });
                }
            }
        }
    }
}

/// A documented problem answer (the `Problem` schema each API's document declares).
fn problem_response(
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::response::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_checked_after_the_account() {
        assert_eq!(
            Caller::Anonymous
                .require_role(Role::Admin)
                .map(|_| ())
                .map_err(|p| p.status),
            Err(StatusCode::UNAUTHORIZED)
        );
        let user = Caller::Account(AccountCaller {
            account_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
            roles: vec![Role::User],
            amr: vec!["pwd".to_owned()],
        });
        assert_eq!(
            user.require_role(Role::Admin)
                .map(|_| ())
                .map_err(|p| p.status),
            Err(StatusCode::FORBIDDEN)
        );
        assert!(user.require_role(Role::User).is_ok());
        assert_eq!(Caller::Anonymous.actor(), "anonymous");
        assert_eq!(
            user.actor(),
            user.account_id()
                .map(|id| id.to_string())
                .unwrap_or_default()
        );
    }

    fn bearer(token: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {token}")).expect("test setup")
    }

    fn signed(now: DateTime<Utc>) -> (auth::SigningKeys, auth::IssuedToken) {
        let keys = auth::SigningKeys::from_pem(
            &auth::generate_signing_key_pem(),
            auth::TokenSettings::default(),
        )
        .expect("test setup");
        let issued = keys
            .issue(
                Uuid::now_v7(),
                Uuid::now_v7(),
                &[Role::User],
                &["pwd"],
                now,
                now,
            )
            .expect("test setup");
        (keys, issued)
    }

    #[test]
    fn a_cached_token_of_a_revoked_session_is_refused_at_once() {
        let now = Utc::now();
        let (keys, issued) = signed(now);
        let authenticator = Authenticator::new(keys.verifier(), RevocationView::new());
        let header = bearer(&issued.token);
        let caller = authenticator
            .authenticate(Some(&header), now)
            .expect("test setup");
        assert_eq!(caller.session_id(), Some(issued.claims.sid));
        assert_eq!(authenticator.token_cache().len(), 1);
        authenticator
            .revocations()
            .note_revoked_session(issued.claims.sid, now);
        let refused = authenticator
            .authenticate(Some(&header), now + chrono::TimeDelta::seconds(1))
            .map(|_| ())
            .map_err(|problem| problem.status);
        assert_eq!(refused, Err(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn a_cached_token_is_refused_once_it_expires() {
        let now = Utc::now();
        let (keys, issued) = signed(now);
        let authenticator = Authenticator::new(keys.verifier(), RevocationView::new());
        let header = bearer(&issued.token);
        assert!(authenticator.authenticate(Some(&header), now).is_ok());
        assert_eq!(authenticator.token_cache().len(), 1);
        let settings = auth::TokenSettings::default();
        let past = chrono::TimeDelta::from_std(settings.access_ttl + settings.leeway)
            .expect("test setup")
            + chrono::TimeDelta::seconds(1);
        let refused = authenticator
            .authenticate(Some(&header), now + past)
            .map(|_| ())
            .map_err(|problem| problem.status);
        assert_eq!(refused, Err(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn without_a_cache_every_token_is_still_verified() {
        let now = Utc::now();
        let (keys, issued) = signed(now);
        let authenticator =
            Authenticator::new(keys.verifier(), RevocationView::new()).with_token_cache(0);
        let header = bearer(&issued.token);
        assert!(authenticator.authenticate(Some(&header), now).is_ok());
        assert!(authenticator.token_cache().is_empty());
        let mut forged = issued.token.clone();
        forged.push('x');
        assert!(
            authenticator
                .authenticate(Some(&bearer(&forged)), now)
                .is_err()
        );
    }
}
