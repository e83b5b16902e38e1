//! A small HTTP/1 client over hyper-util's pooled legacy client: keep-alive connections,
//! `TCP_NODELAY`, a bounded wait per request, and whole-body answers.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Longest wait for one answer; a load loop never hangs on a stuck request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an operation of a load failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The request could not be sent or its answer not read.
    #[error("transport: {0}")]
    Transport(String),
    /// No answer within the request timeout.
    #[error("timed out")]
    Timeout,
    /// The answer had a status the operation does not accept.
    #[error("unexpected status {status}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// The start of the body, for diagnosis.
        body: String,
    },
    /// A baseline's database statement failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Anything else that makes the operation unusable (an answer missing a header, ...).
    #[error("{0}")]
    Invalid(String),
}

impl OpError {
    /// A short name of the failure's kind, for tallies: the status for an unexpected one.
    pub fn kind(&self) -> String {
        match self {
            Self::Transport(_) => "transport".to_owned(),
            Self::Timeout => "timed out".to_owned(),
            Self::Status { status, .. } => format!("status {status}"),
            Self::Database(_) => "database".to_owned(),
            Self::Invalid(_) => "other".to_owned(),
        }
    }
}

/// A whole HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// The answer itself when its status is one of `accepted`, else [`OpError::Status`].
    pub fn expect(self, accepted: &[u16]) -> Result<Self, OpError> {
        if accepted.contains(&self.status.as_u16()) {
            Ok(self)
        } else {
            Err(OpError::Status {
                status: self.status.as_u16(),
                body: String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned(),
            })
        }
    }

    /// A header as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// A cloneable HTTP client with a connection pool per host, and the `Authorization` header it
/// adds to every request, if any.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    authorization: Option<HeaderValue>,
}

impl Http {
    /// A client that keeps every idle connection (load loops reuse them all).
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Self {
            client,
            authorization: None,
        }
    }

    /// The same client (and pool) sending `Authorization: Bearer <token>` with every request.
    ///
    /// # Errors
    ///
    /// The token is not a valid header value.
    pub fn with_bearer(&self, token: &str) -> anyhow::Result<Self> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))?;
        value.set_sensitive(true);
        Ok(Self {
            client: self.client.clone(),
            authorization: Some(value),
        })
    }

    /// Sends one request and reads the whole answer.
    ///
    /// # Errors
    ///
    /// [`OpError::Transport`] when the request cannot be built or sent or the body not read,
    /// [`OpError::Timeout`] after [`REQUEST_TIMEOUT`].
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&'static str, &str)],
        body: Option<Bytes>,
    ) -> Result<Answer, OpError> {
        let mut builder = Request::builder().method(method).uri(url);
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        if let Some(value) = &self.authorization {
            builder = builder.header(http::header::AUTHORIZATION, value.clone());
        }
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|error| OpError::Invalid(format!("header {name}: {error}")))?;
            builder = builder.header(HeaderName::from_static(name), value);
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|error| OpError::Transport(error.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| OpError::Transport(error.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|error| OpError::Transport(error.to_string()))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| OpError::Timeout)?
    }

    /// `GET url` with `headers`.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<Answer, OpError> {
        self.send(Method::GET, url, headers, None).await
    }
}
