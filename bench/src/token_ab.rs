//! `--token-ab`: what verifying the access token of every request costs, with the services'
//! verified-token cache on and off (`AUTH_TOKEN_CACHE=0`), in one run ([`crate::ab`]).
//!
//! There is no figure without a token: every project route needs one, and no public route
//! does the same work. The difference in CPU per request between the variants is the
//! verification the cache saves.

use crate::ab::{Ab, Variant};

/// The comparison: cache on (the default), then off.
pub fn ab() -> Ab {
    Ab {
        label: "tokens",
        database: "chronicle_bench_tokens",
        variants: vec![
            Variant {
                name: "cache on",
                env: Vec::new(),
            },
            Variant {
                name: "cache off",
                env: vec![("AUTH_TOKEN_CACHE", "0".to_owned())],
            },
        ],
    }
}
