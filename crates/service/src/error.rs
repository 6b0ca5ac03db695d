//! The one error type of the application layer and its meaning. The server maps [`ErrorKind`]
//! to an HTTP status in one table; the body is always an OperationOutcome.

use musubi_fhir::outcome::{OutcomeIssue, Severity, operation_outcome};
use musubi_store::StoreError;
use serde_json::Value;

/// What kind of failure (maps to one HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed (bad JSON, unknown parameter, wrong type).
    BadRequest,
    /// 401: no or bad credentials.
    Unauthorized,
    /// 403: authenticated, but the gate refuses a write.
    Forbidden,
    /// 404: no such resource — or one the caller may not see (never revealed).
    NotFound,
    /// 405: the interaction is not supported on this type.
    MethodNotAllowed,
    /// 406: a format Musubi does not produce (XML).
    NotAcceptable,
    /// 409: a concurrent write won.
    Conflict,
    /// 410: the resource was deleted.
    Gone,
    /// 412: If-Match did not match.
    PreconditionFailed,
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 415: not FHIR JSON.
    UnsupportedMediaType,
    /// 422: valid JSON that breaks the FHIR / JP Core / JP-CLINS rules.
    Unprocessable,
    /// 429: too many attempts (logins); try again after `retry_after_s` seconds
    /// (`Retry-After`).
    TooManyRequests {
        /// Seconds to wait.
        retry_after_s: u32,
    },
    /// 500: a fault in Musubi (logged; no internals in the body).
    Internal,
    /// 503: the store is unavailable.
    Unavailable,
}

impl ErrorKind {
    /// The FHIR IssueType code used when the error has no more specific one.
    pub fn issue_code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "invalid",
            ErrorKind::Unauthorized => "login",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not-found",
            ErrorKind::MethodNotAllowed | ErrorKind::NotAcceptable | ErrorKind::UnsupportedMediaType => "not-supported",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Gone => "deleted",
            ErrorKind::PreconditionFailed => "conflict",
            ErrorKind::PayloadTooLarge => "too-costly",
            ErrorKind::Unprocessable => "processing",
            ErrorKind::TooManyRequests { .. } => "throttled",
            ErrorKind::Internal => "exception",
            ErrorKind::Unavailable => "transient",
        }
    }
}

/// An error with the issues to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The kind.
    pub kind: ErrorKind,
    /// The issues (at least one).
    pub issues: Vec<OutcomeIssue>,
}

impl ApiError {
    /// An error of `kind` with one message (Japanese, for people).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError { kind, issues: vec![OutcomeIssue::error(kind.issue_code(), message)] }
    }

    /// An error of `kind` naming an element.
    pub fn at(kind: ErrorKind, expression: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { kind, issues: vec![OutcomeIssue::error(kind.issue_code(), message).at(expression)] }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// 404, the same text whether the resource is missing or hidden.
    pub fn not_found(rtype: &str, id: &str) -> Self {
        Self::new(ErrorKind::NotFound, format!("{rtype}/{id} は見つかりません"))
    }

    /// 500 for a fault; the detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            ErrorKind::Internal,
            "サーバー内部でエラーが発生しました。時間をおいて再度お試しください。問題が続く場合は運営事務局へ連絡してください。",
        )
    }

    /// The OperationOutcome body.
    pub fn outcome(&self) -> Value {
        operation_outcome(&self.issues)
    }

    /// The first message (for audit records).
    pub fn summary(&self) -> String {
        self.issues.iter().find(|i| i.severity == Severity::Error).map(|i| i.diagnostics.clone()).unwrap_or_default()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.summary())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { key, .. } => ApiError::new(
                ErrorKind::Conflict,
                format!("{key} は同時に別の更新が行われました。最新版を取得して再度送信してください。"),
            ),
            StoreError::Constraint(m) => {
                tracing::warn!(error = %m, "constraint violated");
                ApiError::new(ErrorKind::Conflict, "同じ識別子のリソースが既に存在します")
            }
            StoreError::Closed => ApiError::new(ErrorKind::Unavailable, "サーバーは停止処理中です"),
            other => ApiError::internal(other),
        }
    }
}
