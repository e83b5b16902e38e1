//! Address normalisation, the one form addresses are stored, compared and rate-limited in.

/// Longest address accepted, in characters (RFC 5321's path limit less the brackets).
pub const MAX_EMAIL_CHARS: usize = 254;

/// Why an address was refused (422).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Longer than 254 characters after trimming.
    #[error("the email address must have at most 254 characters")]
    TooLong,
    /// Not exactly one `@` between a non-empty local part and domain.
    #[error("the email address must have one @ between a local part and a domain")]
    Invalid,
}

/// Trims and lowercases an address and checks its shape; deliverability is proven by the
/// verification mail, not by parsing.
pub fn normalize_email(input: &str) -> Result<String, EmailError> {
    let email = input.trim().to_lowercase();
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Err(EmailError::TooLong);
    }
    let mut parts = email.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(local), Some(domain), None) if !local.is_empty() && !domain.is_empty() => Ok(email),
        _ => Err(EmailError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_lowercases() {
        assert_eq!(
            normalize_email("  Alice@Example.COM\n"),
            Ok("alice@example.com".to_owned())
        );
        assert_eq!(
            normalize_email("ÉLODIE@exemple.fr"),
            Ok("élodie@exemple.fr".to_owned())
        );
    }

    #[test]
    fn needs_exactly_one_at_with_both_sides() {
        for bad in [
            "",
            "   ",
            "alice",
            "@example.com",
            "alice@",
            "a@b@c",
            "@",
            "alice@@example.com",
        ] {
            assert_eq!(normalize_email(bad), Err(EmailError::Invalid), "{bad:?}");
        }
        assert_eq!(normalize_email("a@b"), Ok("a@b".to_owned()));
    }

    #[test]
    fn at_most_254_characters_after_trimming() {
        let domain = "@example.com";
        let local = |n: usize| "a".repeat(n - domain.len());
        let exact = format!("{}{domain}", local(254));
        assert_eq!(normalize_email(&format!("  {exact}  ")), Ok(exact.clone()));
        assert_eq!(
            normalize_email(&format!("{}{domain}", local(255))),
            Err(EmailError::TooLong)
        );
        // Characters, not bytes: 254 two-byte characters still fit.
        let wide = format!("{}{domain}", "é".repeat(254 - domain.len()));
        assert_eq!(normalize_email(&wide), Ok(wide.clone()));
    }
}
