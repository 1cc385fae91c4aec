//! RFC 9457 problem responses. [`status_for`] is the one table from error code to
//! HTTP status: the body and the status can never disagree.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::error::{FieldError, Shortage};
use crate::domain::{ErrorCode, Rejection};

/// The HTTP status of each error code.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::VersionConflict
        | ErrorCode::InsufficientStock
        | ErrorCode::InvalidTransition
        | ErrorCode::IdempotencyInProgress
        | ErrorCode::AlreadyExists => StatusCode::CONFLICT,
        ErrorCode::IdempotencyKeyReused | ErrorCode::Unprocessable | ErrorCode::UnknownChannel => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Overloaded | ErrorCode::NotReady | ErrorCode::PartitionUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::NotInClusterMode => StatusCode::NOT_IMPLEMENTED,
        ErrorCode::CursorExpired | ErrorCode::CursorHistoryChanged => StatusCode::GONE,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::UriTooLong => StatusCode::URI_TOO_LONG,
        ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    }
}

/// A short, fixed title per code.
pub fn title_for(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidRequest => "The request is invalid",
        ErrorCode::Unauthorized => "A valid bearer token is required",
        ErrorCode::Forbidden => "This token may not do that",
        ErrorCode::NotFound => "Not found",
        ErrorCode::VersionConflict => "The version does not match",
        ErrorCode::InsufficientStock => "Not enough stock",
        ErrorCode::InvalidTransition => "That change is not allowed in the current state",
        ErrorCode::IdempotencyInProgress => "A request with this Idempotency-Key is still running",
        ErrorCode::AlreadyExists => "Already exists",
        ErrorCode::IdempotencyKeyReused => "The Idempotency-Key was used for another request",
        ErrorCode::Unprocessable => "The request cannot be processed",
        ErrorCode::PayloadTooLarge => "The request body is too large",
        ErrorCode::RateLimited => "Too many requests",
        ErrorCode::Overloaded => "The server is overloaded",
        ErrorCode::NotReady => "The server is not ready",
        ErrorCode::CursorExpired => "The cursor is older than the feed's retention",
        ErrorCode::CursorHistoryChanged => "The cursor is from an earlier history of the feed",
        ErrorCode::PartitionUnavailable => "The brand's partition is changing owner",
        ErrorCode::NotInClusterMode => "Not available in cluster mode yet",
        ErrorCode::UnknownChannel => "The brand has no such channel",
        ErrorCode::MethodNotAllowed => "This path does not take that method",
        ErrorCode::UriTooLong => "The request target is too long",
        ErrorCode::HeadersTooLarge => "The request's header fields are too large",
    }
}

/// A problem response.
#[derive(Debug, Clone)]
pub struct Problem {
    pub code: ErrorCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub shortages: Vec<Shortage>,
    pub retry_after_s: Option<u64>,
    /// RFC 9457 extension members beyond `errors` and `shortages` (e.g. `/readyz`'s
    /// `workers`).
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    code: ErrorCode,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    shortages: &'a [Shortage],
    #[serde(flatten)]
    extensions: &'a serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        let retry_after_s = match code {
            ErrorCode::RateLimited | ErrorCode::Overloaded | ErrorCode::NotReady | ErrorCode::PartitionUnavailable => Some(1),
            _ => None,
        };
        Problem { code, detail: detail.into(), errors: Vec::new(), shortages: Vec::new(), retry_after_s, extensions: Default::default() }
    }

    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Problem::from(Rejection::invalid(vec![FieldError::new(field, detail)]))
    }

    pub fn invalid_fields(errors: Vec<FieldError>) -> Self {
        Problem::from(Rejection::invalid(errors))
    }

    pub fn unauthorized() -> Self {
        Problem::new(ErrorCode::Unauthorized, "send `Authorization: Bearer <token>` with a valid, unrevoked token")
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(ErrorCode::Forbidden, detail)
    }

    pub fn not_ready() -> Self {
        Problem::new(ErrorCode::NotReady, "the server is recovering its state from the journal; retry shortly")
    }

    pub fn overloaded(detail: impl Into<String>) -> Self {
        Problem::new(ErrorCode::Overloaded, detail)
    }

    pub fn with_retry_after(mut self, s: u64) -> Self {
        self.retry_after_s = Some(s);
        self
    }

    /// Adds an extension member to the body.
    pub fn with_extension(mut self, name: &str, value: serde_json::Value) -> Self {
        self.extensions.insert(name.to_string(), value);
        self
    }

    /// Adds the `next` cursor a consumer resyncs from (with `cursor_history_changed`).
    pub fn with_next(self, next: String) -> Self {
        self.with_extension("next", serde_json::Value::String(next))
    }
}

impl From<Rejection> for Problem {
    fn from(r: Rejection) -> Self {
        let mut p = Problem::new(r.code, r.detail);
        p.errors = r.errors;
        p.shortages = r.shortages;
        p
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        status_for(self.code)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if let Some(s) = self.retry_after_s {
            res.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        res.body(self.body())
    }
}

impl Problem {
    /// The problem+json body.
    pub fn body(&self) -> Vec<u8> {
        let body = Body {
            kind: format!("/problems/{}", self.code.as_str()),
            title: title_for(self.code),
            status: status_for(self.code).as_u16(),
            detail: &self.detail,
            code: self.code,
            errors: &self.errors,
            shortages: &self.shortages,
            extensions: &self.extensions,
        };
        serde_json::to_vec(&body).expect("problem serialises")
    }

    /// The whole HTTP/1.1 response, for the connection guard that answers before
    /// actix-web sees the request (`http::guard`); the connection closes after it.
    pub fn raw_response(&self) -> Vec<u8> {
        let status = status_for(self.code);
        let body = self.body();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes();
        out.extend(body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_client_or_server_error_status() {
        for code in ErrorCode::ALL {
            let s = status_for(code);
            // 501 only for a route cluster mode does not serve yet: the one 5xx that is
            // neither overload nor a passing state, and says so.
            let not_implemented = code == ErrorCode::NotInClusterMode && s == StatusCode::NOT_IMPLEMENTED;
            assert!(s.is_client_error() || s == StatusCode::SERVICE_UNAVAILABLE || not_implemented, "{code:?}");
            let p = Problem::new(code, "x");
            assert_eq!(p.retry_after_s.is_some(), s.as_u16() == 429 || s.as_u16() == 503, "{code:?}");
        }
    }
}
