//! `chronicle keygen`: fresh secrets for a deployment (ACCOUNTS.md, "Keys").

/// What `chronicle keygen` prints: a new Ed25519 signing key in PKCS#8 PEM (for
/// `AUTH_SIGNING_KEYS` or `AUTH_SIGNING_KEYS_FILE`) and an `AUTH_SECRET_KEY=` line (32 random
/// bytes, base64). Key parsers skip text outside PEM blocks, so the whole output may be saved
/// as the keys file.
pub fn keygen_text() -> String {
    format!(
        "{}AUTH_SECRET_KEY={}\n",
        auth::generate_signing_key_pem(),
        auth::secret::SecretKey::generate().to_base64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_a_usable_signing_key_and_secret_key() {
        let text = keygen_text();
        let keys = auth::SigningKeys::from_pem(&text, auth::TokenSettings::default())
            .expect("the output parses as a key set");
        assert_eq!(keys.jwks().keys.len(), 1);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("AUTH_SECRET_KEY="))
            .expect("an AUTH_SECRET_KEY line");
        auth::secret::SecretKey::from_base64(line).expect("32 bytes of base64");
        assert_ne!(keygen_text(), text, "every run is fresh");
    }
}
