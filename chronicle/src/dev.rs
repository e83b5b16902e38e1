//! What the one-process dev runner adds so that it starts with no setup: signing keys and the
//! secret key generated once into `.chronicle/dev-secrets/` (git-ignored) when none is
//! configured, and the bootstrap admin's dev defaults.

use command_api::auth::settings::{AuthSettings, AuthSettingsError, BootstrapAdmin, Secret};

/// Where the dev runner keeps the keys it generated.
pub const DEV_SECRETS_DIR: &str = ".chronicle/dev-secrets";

/// The bootstrap admin's address when `AUTH_BOOTSTRAP_ADMIN_EMAIL` is unset.
pub const DEV_ADMIN_EMAIL: &str = "admin@chronicle.test";

/// The bootstrap admin's password when `AUTH_BOOTSTRAP_ADMIN_PASSWORD` is unset.
pub const DEV_ADMIN_PASSWORD: &str = "chronicle-dev-admin";

/// The accounts' settings of the dev runner: the environment's, with generated keys where
/// none are configured (a warning says so) and the dev bootstrap admin where none is named.
///
/// # Errors
///
/// A variable does not parse, or the dev secrets cannot be read or written.
pub fn auth_settings() -> anyhow::Result<AuthSettings> {
    let configured = [
        "AUTH_SIGNING_KEYS",
        "AUTH_SIGNING_KEYS_FILE",
        "AUTH_SECRET_KEY",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()));
    let mut settings = if configured {
        AuthSettings::from_env()?
    } else {
        let secrets = auth::dev::load_or_generate(std::path::Path::new(DEV_SECRETS_DIR))?;
        tracing::warn!(
            dir = DEV_SECRETS_DIR,
            "no AUTH_SIGNING_KEYS or AUTH_SECRET_KEY configured: using dev secrets (never do \
             this in production)"
        );
        AuthSettings::from_env_with(
            Some(Secret::new(secrets.signing_pem)),
            Some(Secret::new(secrets.secret_key.to_base64())),
        )
        .map_err(|error: AuthSettingsError| anyhow::anyhow!(error))?
    };
    if settings.bootstrap_admin.is_none() {
        settings.bootstrap_admin = Some(BootstrapAdmin {
            email: DEV_ADMIN_EMAIL.to_owned(),
            password: Secret::new(DEV_ADMIN_PASSWORD),
        });
    }
    Ok(settings)
}

/// Whether mails are logged: `AUTH_MAIL_LOG`, on unless set otherwise.
pub fn mail_log() -> bool {
    std::env::var("AUTH_MAIL_LOG").map_or(true, |value| value.trim() != "false")
}
