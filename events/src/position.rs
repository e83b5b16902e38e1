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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsistencyToken(pub LogPosition);

/// A consistency token or cursor that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed token")]
pub struct MalformedToken;

impl ConsistencyToken {
    /// Encodes the token for a header or JSON body.
    pub fn encode(&self) -> String {
        encode_position(self.0)
    }

    /// Decodes a token produced by [`ConsistencyToken::encode`].
    pub fn decode(token: &str) -> Result<Self, MalformedToken> {
        decode_position(token).map(Self)
    }
}

/// Encodes a position as an opaque, URL-safe string (also the audit cursor).
pub fn encode_position(position: LogPosition) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", position.tx_id, position.position))
}

/// Decodes a string produced by [`encode_position`].
pub fn decode_position(token: &str) -> Result<LogPosition, MalformedToken> {
    if token.len() > 64 {
        return Err(MalformedToken);
    }
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| MalformedToken)?;
    let text = std::str::from_utf8(&raw).map_err(|_| MalformedToken)?;
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

    #[test]
    fn a_token_round_trips() {
        let token = ConsistencyToken(LogPosition {
            tx_id: 981,
            position: 17,
        });
        assert_eq!(ConsistencyToken::decode(&token.encode()), Ok(token));
    }

    #[test]
    fn garbage_is_not_a_token() {
        for bad in ["", "!!!", "MTIz", "LTEuMg", &"A".repeat(100)] {
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
