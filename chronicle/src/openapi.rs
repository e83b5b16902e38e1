//! `chronicle openapi`: the one OpenAPI document of both APIs (FRONTEND.md, "One OpenAPI
//! document"), merged from each API's part without a database. It is committed at
//! `openapi/chronicle.json`, which both APIs serve; `tests/openapi.rs` fails when the two
//! differ.

use serde_json::{Value, json};
use service_kit::openapi::MergeError;

/// The document's frame: version, title and what a reader must know first.
fn frame() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Chronicle API",
            "version": "1",
            "description": "Both sides of Chronicle in one document. Commands (POST, PATCH, \
                DELETE) are served by the command API, reads (GET) by the query API; a gateway \
                routes by method, and both serve this document at /api/v1/openapi.json. Errors \
                are application/problem+json (RFC 9457): the Problem schema, or \
                PreconditionFailed for a 412.",
        },
    })
}

/// The merged document, as JSON.
///
/// # Errors
///
/// A schema, response or tag name is declared by both APIs with different contents, or an
/// operation is described twice ([`MergeError`]): never silently dropped.
pub fn document() -> Result<Value, MergeError> {
    let parts = [
        serde_json::to_value(command_api::document())
            .map_err(|error| MergeError::Malformed(error.to_string()))?,
        serde_json::to_value(query_api::document())
            .map_err(|error| MergeError::Malformed(error.to_string()))?,
    ];
    service_kit::openapi::merge(frame(), &parts)
}

/// Writes `text` to `path` through a temporary file beside it, so the file is never seen
/// half-written. (Redirecting stdout onto the committed file would empty it before cargo
/// builds service-kit, which embeds it.)
///
/// # Errors
///
/// The file cannot be written or renamed.
pub fn write(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("renaming onto {}", path.display()))
}

/// The merged document as the committed file holds it: pretty JSON and a final newline.
///
/// # Errors
///
/// As [`document`].
pub fn document_text() -> Result<String, MergeError> {
    let document = document()?;
    let mut text = serde_json::to_string_pretty(&document)
        .map_err(|error| MergeError::Malformed(error.to_string()))?;
    text.push('\n');
    Ok(text)
}
