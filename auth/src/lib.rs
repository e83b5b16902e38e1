//! Accounts' building blocks for both APIs: EdDSA access tokens and the JWKS, Argon2id password
//! hashing and the password policy, opaque tokens, address normalisation and dev secrets.
//! Pure library: no database, no HTTP (ACCOUNTS.md is the contract).

pub mod dev;
mod email;
pub mod password;
pub mod recovery;
pub mod secret;
mod token;
pub mod totp;

pub use email::{EmailError, MAX_EMAIL_CHARS, normalize_email};
pub use token::{
    ACCESS_TOKEN_TYP, AccessClaims, IssuedToken, Jwk, Jwks, KeyError, Role, SigningKeys,
    TokenError, TokenSettings, TokenVerifier, generate_signing_key_pem, jwk_thumbprint,
};
