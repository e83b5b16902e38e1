//! `GET /auth/jwks.json`: the public keys access tokens are verified with (ACCOUNTS.md,
//! "Tokens"), for clients and other services that check tokens themselves.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Key rotation waits this long between steps, so every cached copy has the new key first.
const CACHE_CONTROL_JWKS: &str = "public, max-age=300";

/// The JWKS route; anonymous.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks))
}

/// The key set (RFC 7517). Documentation only: the body is `auth::Jwks`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Jwks)]
pub struct JwksDoc {
    /// Every verifying key, the signing one first.
    pub keys: Vec<JwkDoc>,
}

/// One Ed25519 public key (RFC 8037). Documentation only.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Jwk)]
pub struct JwkDoc {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// The key id: its RFC 7638 thumbprint, as tokens name it in `kid`.
    pub kid: String,
    /// Always `EdDSA`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// The public keys access tokens are signed with.
#[utoipa::path(
    get,
    path = "/auth/jwks.json",
    tag = "auth",
    operation_id = "jwks",
    responses(
        (status = 200, description = "The key set", body = JwksDoc, headers(
            ("Cache-Control" = String, description = "public, max-age=300"),
        )),
    )
)]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.authenticator().verifier().jwks()).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL_JWKS));
    response
}
