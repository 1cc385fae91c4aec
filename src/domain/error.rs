//! Rejection codes: why the domain refused a command. The HTTP layer maps each code to
//! its status in one table (`src/http/problem.rs`).

use serde::{Deserialize, Serialize};

/// Every error code of the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    VersionConflict,
    InsufficientStock,
    InvalidTransition,
    IdempotencyInProgress,
    AlreadyExists,
    IdempotencyKeyReused,
    Unprocessable,
    PayloadTooLarge,
    RateLimited,
    Overloaded,
    NotReady,
    /// A feed cursor older than the retention (410; not in the v1 contract's list).
    CursorExpired,
    /// A feed cursor from an earlier journal history, before a restore or a repair
    /// (410; not in the v1 contract's list).
    CursorHistoryChanged,
    /// Cluster mode: the brand's partition has no owner this node can reach now (a
    /// takeover is under way) — 503, retry (not in the v1 contract's list).
    PartitionUnavailable,
    /// Cluster mode: the route is not available in cluster mode yet (501; not in the v1
    /// contract's list).
    NotInClusterMode,
    /// A channel the brand has not configured, while it has configured others (422;
    /// not in the v1 contract's list).
    UnknownChannel,
    /// A path that exists, with a method it does not take (405, with `Allow`).
    MethodNotAllowed,
    /// A request target longer than the server reads (414).
    UriTooLong,
    /// A request head with too many or too large header fields (431).
    HeadersTooLarge,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 23] = [
        ErrorCode::InvalidRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::VersionConflict,
        ErrorCode::InsufficientStock,
        ErrorCode::InvalidTransition,
        ErrorCode::IdempotencyInProgress,
        ErrorCode::AlreadyExists,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::Unprocessable,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Overloaded,
        ErrorCode::NotReady,
        ErrorCode::CursorExpired,
        ErrorCode::CursorHistoryChanged,
        ErrorCode::PartitionUnavailable,
        ErrorCode::NotInClusterMode,
        ErrorCode::UnknownChannel,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UriTooLong,
        ErrorCode::HeadersTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::VersionConflict => "version_conflict",
            ErrorCode::InsufficientStock => "insufficient_stock",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::IdempotencyInProgress => "idempotency_in_progress",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::Unprocessable => "unprocessable",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::CursorExpired => "cursor_expired",
            ErrorCode::CursorHistoryChanged => "cursor_history_changed",
            ErrorCode::PartitionUnavailable => "partition_unavailable",
            ErrorCode::NotInClusterMode => "not_in_cluster_mode",
            ErrorCode::UnknownChannel => "unknown_channel",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::HeadersTooLarge => "headers_too_large",
        }
    }
}

/// A line that could not be covered, reported with `insufficient_stock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Shortage {
    pub sku: super::Id,
    pub requested: i64,
    pub available: i64,
}

/// A field that failed validation, reported with `invalid_request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), detail: detail.into() }
    }
}

/// Why a command was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub detail: String,
    pub shortages: Vec<Shortage>,
    pub errors: Vec<FieldError>,
}

impl Rejection {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Rejection { code, detail: detail.into(), shortages: Vec::new(), errors: Vec::new() }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Rejection::new(ErrorCode::NotFound, detail)
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.detail),
            many => format!("{} fields are invalid; see errors", many.len()),
        };
        Rejection { code: ErrorCode::InvalidRequest, detail, shortages: Vec::new(), errors }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}
