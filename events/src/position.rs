//! Positions in the global log and the opaque consistency tokens built from them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// A point in the commit-safe order of the global log: the writing transaction's id, then the
/// event's global position. Ordering is lexicographic, which is the order readers see.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPosition {
    /// The `xid8` of the transaction that appended the event (as a bigint).
    pub tx_id: i64,
    /// The event's `global_position`.
    pub position: i64,
}

impl LogPosition {
    /// The position before the first event.
    pub const START: Self = Self {
        tx_id: 0,
        position: 0,
    };
}

/// An opaque token naming the log position a command's events reached; a query carrying it
/// waits until the projection it reads has applied that position.
///
/// A token may also name the aggregate type of the event at that position. A projection that
/// reads that type must move its checkpoint over the position, so the query API can wait for
/// its announcement alone instead of first asking the database whether there is anything to
/// apply at all (docs/decisions/0021-typed-consistency-tokens.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyToken {
    /// Where the command's last event stands (`START` when it appended nothing).
    pub position: LogPosition,
    /// The aggregate type of the event at `position`, when the issuer said.
    pub last_type: Option<String>,
}

/// A consistency token or cursor that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed token")]
pub struct MalformedToken;

/// The first byte of a typed token: never an ASCII digit, which every untyped token starts with.
const TYPED: u8 = 1;

/// The longest aggregate type a typed token carries: with the tag and two positions it keeps
/// every token within 64 URL-safe characters. A longer name makes an untyped token.
const MAX_TYPE_LEN: usize = 31;

/// The longest token accepted (the contract's bound).
const MAX_TOKEN_LEN: usize = 64;

impl ConsistencyToken {
    /// A token naming `position` alone.
    pub fn at(position: LogPosition) -> Self {
        Self {
            position,
            last_type: None,
        }
    }

    /// A token naming `position` and the aggregate type of the event there.
    pub fn after(position: LogPosition, aggregate_type: &str) -> Self {
        Self {
            position,
            last_type: Some(aggregate_type.to_owned()),
        }
    }

    /// Encodes the token for a header or JSON body.
    pub fn encode(&self) -> String {
        match self.last_type.as_deref().filter(|name| is_type_name(name)) {
            Some(name) => {
                let mut raw = Vec::with_capacity(17 + name.len());
                raw.push(TYPED);
                raw.extend_from_slice(&self.position.tx_id.to_be_bytes());
                raw.extend_from_slice(&self.position.position.to_be_bytes());
                raw.extend_from_slice(name.as_bytes());
                URL_SAFE_NO_PAD.encode(raw)
            }
            None => encode_position(self.position),
        }
    }

    /// Decodes a token produced by [`ConsistencyToken::encode`], typed or not (tokens issued
    /// before types were added are untyped).
    pub fn decode(token: &str) -> Result<Self, MalformedToken> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(MalformedToken);
        }
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| MalformedToken)?;
        let Some((&TYPED, rest)) = raw.split_first() else {
            return decode_text(&raw).map(Self::at);
        };
        let (tx, rest) = rest.split_first_chunk::<8>().ok_or(MalformedToken)?;
        let (position, name) = rest.split_first_chunk::<8>().ok_or(MalformedToken)?;
        let position = LogPosition {
            tx_id: i64::from_be_bytes(*tx),
            position: i64::from_be_bytes(*position),
        };
        let name = std::str::from_utf8(name).map_err(|_| MalformedToken)?;
        if position.tx_id < 0 || position.position < 0 || !is_type_name(name) {
            return Err(MalformedToken);
        }
        Ok(Self::after(position, name))
    }
}

/// Whether `name` can travel in a typed token: 1 to [`MAX_TYPE_LEN`] ASCII letters, digits
/// or underscores, as aggregate types are named.
fn is_type_name(name: &str) -> bool {
    (1..=MAX_TYPE_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// Encodes a position as an opaque, URL-safe string (also the audit cursor).
pub fn encode_position(position: LogPosition) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", position.tx_id, position.position))
}

/// Decodes a string produced by [`encode_position`].
pub fn decode_position(token: &str) -> Result<LogPosition, MalformedToken> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(MalformedToken);
    }
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| MalformedToken)?;
    decode_text(&raw)
}

/// Reads `tx_id.position`, the text of an untyped token.
fn decode_text(raw: &[u8]) -> Result<LogPosition, MalformedToken> {
    let text = std::str::from_utf8(raw).map_err(|_| MalformedToken)?;
    let (tx, pos) = text.split_once('.').ok_or(MalformedToken)?;
    let tx_id: i64 = tx.parse().map_err(|_| MalformedToken)?;
    let position: i64 = pos.parse().map_err(|_| MalformedToken)?;
    if tx_id < 0 || position < 0 {
        return Err(MalformedToken);
    }
    Ok(LogPosition { tx_id, position })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAR: LogPosition = LogPosition {
        tx_id: i64::MAX,
        position: i64::MAX,
    };

    #[test]
    fn tokens_round_trip_typed_or_not() {
        let at = LogPosition {
            tx_id: 981,
            position: 17,
        };
        for token in [
            ConsistencyToken::at(at),
            ConsistencyToken::after(at, "SupportTicket"),
            ConsistencyToken::after(LogPosition::START, "Project"),
            ConsistencyToken::after(FAR, &"T".repeat(MAX_TYPE_LEN)),
        ] {
            assert_eq!(ConsistencyToken::decode(&token.encode()), Ok(token));
        }
    }

    #[test]
    fn a_token_issued_before_types_decodes_untyped() {
        let at = LogPosition {
            tx_id: 981,
            position: 17,
        };
        assert_eq!(
            ConsistencyToken::decode(&encode_position(at)),
            Ok(ConsistencyToken::at(at))
        );
    }

    #[test]
    fn every_token_keeps_to_the_contracts_shape() {
        for token in [
            ConsistencyToken::at(FAR),
            ConsistencyToken::after(FAR, &"T".repeat(MAX_TYPE_LEN)),
        ] {
            let text = token.encode();
            assert!(text.len() <= MAX_TOKEN_LEN, "{text}");
            assert!(
                text.bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'),
                "{text}"
            );
        }
    }

    #[test]
    fn a_type_that_cannot_travel_makes_an_untyped_token() {
        let at = LogPosition {
            tx_id: 3,
            position: 4,
        };
        for name in ["", "Has space", "Ünicode", &"T".repeat(MAX_TYPE_LEN + 1)] {
            let token = ConsistencyToken::after(at, name);
            assert_eq!(
                ConsistencyToken::decode(&token.encode()),
                Ok(ConsistencyToken::at(at)),
                "{name:?}"
            );
        }
    }

    #[test]
    fn garbage_is_not_a_token() {
        let typed = |tx: i64, position: i64, name: &[u8]| {
            let mut raw = vec![TYPED];
            raw.extend_from_slice(&tx.to_be_bytes());
            raw.extend_from_slice(&position.to_be_bytes());
            raw.extend_from_slice(name);
            URL_SAFE_NO_PAD.encode(raw)
        };
        let bad_typed = [
            typed(-1, 2, b"Project"),
            typed(1, -2, b"Project"),
            typed(1, 2, b""),
            typed(1, 2, b"Pro ject"),
            typed(1, 2, &[0xff, 0xfe]),
            URL_SAFE_NO_PAD.encode([TYPED, 0, 0, 0]),
        ];
        let plain = ["", "!!!", "MTIz", "LTEuMg", &"A".repeat(100)];
        for bad in plain
            .iter()
            .copied()
            .chain(bad_typed.iter().map(String::as_str))
        {
            assert_eq!(ConsistencyToken::decode(bad), Err(MalformedToken), "{bad}");
        }
    }

    #[test]
    fn positions_order_by_transaction_first() {
        let early_tx_late_position = LogPosition {
            tx_id: 5,
            position: 90,
        };
        let late_tx_early_position = LogPosition {
            tx_id: 6,
            position: 3,
        };
        assert!(early_tx_late_position < late_tx_early_position);
    }
}
