//! Validated text shared by every aggregate's values.

/// Why a piece of text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Empty after trimming, or longer than allowed.
    #[error("must be {min} to {max} characters")]
    Length {
        /// Fewest characters allowed.
        min: usize,
        /// Most characters allowed.
        max: usize,
    },
    /// Contains NUL or another control character PostgreSQL or a reader would choke on.
    #[error("must not contain control characters")]
    ControlCharacter,
}

/// Trims `raw` and checks it is `min..=max` characters of text without control characters
/// (tabs and line breaks are allowed when `multiline`).
pub fn checked(raw: &str, min: usize, max: usize, multiline: bool) -> Result<String, TextError> {
    let trimmed = raw.trim();
    let allowed = |c: char| !c.is_control() || (multiline && matches!(c, '\n' | '\r' | '\t'));
    if !trimmed.chars().all(allowed) || raw.contains('\0') {
        return Err(TextError::ControlCharacter);
    }
    let length = trimmed.chars().count();
    if length < min || length > max {
        return Err(TextError::Length { min, max });
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_counted_in_characters() {
        assert_eq!(checked("  héllo  ", 1, 5, false), Ok("héllo".to_owned()));
    }

    #[test]
    fn blank_text_is_too_short() {
        assert_eq!(
            checked("   ", 1, 5, false),
            Err(TextError::Length { min: 1, max: 5 })
        );
    }

    #[test]
    fn nul_is_refused_even_inside_multiline_text() {
        assert_eq!(
            checked("a\0b", 0, 5, true),
            Err(TextError::ControlCharacter)
        );
        assert_eq!(checked("a\0", 0, 5, true), Err(TextError::ControlCharacter));
    }

    #[test]
    fn line_breaks_are_text_only_where_multiline() {
        assert!(checked("a\nb", 0, 5, true).is_ok());
        assert_eq!(
            checked("a\nb", 0, 5, false),
            Err(TextError::ControlCharacter)
        );
    }
}
