//! Recovery codes (ACCOUNTS.md, "TOTP and recovery codes"): 12 lowercase Crockford base32
//! characters in groups of four (`k7m2-x9qp-4hra`, 60 bits), matched ignoring case, spaces
//! and hyphens. Each is stored as its own Argon2id hash of the normalized form, since 60 bits
//! is under the 112 that would let a plain hash do (ASVS 6.5.2).

use rand::RngCore as _;

/// How many codes a set holds.
pub const SET_SIZE: usize = 10;
/// Characters of a code, without hyphens.
pub const CODE_CHARS: usize = 12;

/// Crockford's base32 alphabet, lowercase: no `i`, `l`, `o` or `u`, so nothing reads as
/// something else.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new code, formatted for display: `xxxx-xxxx-xxxx`.
pub fn generate() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    let mut bits = u64::from_le_bytes(bytes);
    let mut out = String::with_capacity(CODE_CHARS + 2);
    for index in 0..CODE_CHARS {
        if index > 0 && index % 4 == 0 {
            out.push('-');
        }
        out.push(char::from(ALPHABET[(bits & 31) as usize]));
        bits >>= 5;
    }
    out
}

/// A set of [`SET_SIZE`] new codes.
pub fn generate_set() -> Vec<String> {
    (0..SET_SIZE).map(|_| generate()).collect()
}

/// The form that is hashed and compared: case, spaces and hyphens dropped, Crockford's
/// look-alikes (`i`, `l` → `1`, `o` → `0`) read as the digits. `None` when what is left
/// cannot be a code, so nothing is hashed for it.
pub fn normalize(input: &str) -> Option<String> {
    let mut out = String::with_capacity(CODE_CHARS);
    for c in input.chars() {
        let c = match c.to_ascii_lowercase() {
            ' ' | '-' | '\t' => continue,
            'i' | 'l' => '1',
            'o' => '0',
            c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        if out.len() == CODE_CHARS {
            return None;
        }
        out.push(c);
    }
    (out.len() == CODE_CHARS).then_some(out)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_twelve_crockford_characters_in_groups_of_four() {
        for code in generate_set() {
            assert_eq!(code.len(), 14, "{code}");
            let groups: Vec<&str> = code.split('-').collect();
            assert_eq!(groups.len(), 3);
            assert!(groups.iter().all(|g| g.len() == 4));
            assert!(code.bytes().all(|b| b == b'-' || ALPHABET.contains(&b)));
        }
        let set = generate_set();
        let mut unique = set.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), SET_SIZE);
    }

    #[test]
    fn codes_match_ignoring_case_spaces_and_hyphens() {
        let code = "k7m2-x9qp-4hra";
        let normal = normalize(code).unwrap();
        assert_eq!(normal, "k7m2x9qp4hra");
        for typed in [
            "K7M2-X9QP-4HRA",
            "k7m2 x9qp 4hra",
            "k7m2x9qp4hra",
            " k7m2-x9qp 4HRA ",
        ] {
            assert_eq!(
                normalize(typed).as_deref(),
                Some(normal.as_str()),
                "{typed}"
            );
        }
        assert_eq!(normalize("1o1o-1o1o-1o1o"), normalize("I0L0-i0l0-1O1O"));
    }

    #[test]
    fn what_cannot_be_a_code_is_refused_before_any_hash() {
        for typed in [
            "",
            "k7m2-x9qp-4hr",
            "k7m2-x9qp-4hra-a",
            "k7m2-x9qp-4hrü",
            "k7m2_x9qp_4hra",
            "uuuu-uuuu-uuuu",
        ] {
            assert_eq!(normalize(typed), None, "{typed}");
        }
    }
}
