//! The one place API errors become HTTP responses.
//!
//! Every error body is `{"code": "<stable machine code>", "message": "<for humans>", "field":
//! "<json path>"?}`. Codes are part of the API contract (see `docs/api-errors.md`); messages are
//! not. User-input errors are logged at debug, dependency failures at warn, bugs at error.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use philo_accounts::AccountsError;
use philo_events::log::LogError;
use philo_events::{DecodeError, ValidationError};
use philo_streams::read::ReadError;
use serde::Serialize;
use utoipa::ToSchema;

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema, PartialEq)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unknown_field`, `token_expired`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// JSON path of the offending field, when one field is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error on its way to becoming a response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                field: None,
            },
            retry_after: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unauthorized(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }
    pub fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub fn too_large(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }
    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
            .retry_after(Duration::from_secs(1))
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = %self.body.code, message = %self.body.message, "request failed");
        } else {
            tracing::debug!(code = %self.body.code, message = %self.body.message, "request refused");
        }
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        let status = match e.code {
            "malformed_json" | "not_an_object" => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let mut err = ApiError::new(status, e.code, e.message);
        err.body.field = e.field;
        err
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        let mut err = ApiError::unprocessable(e.code, e.message);
        err.body.field = e.field;
        err
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::RecordTooLarge { .. } => {
                ApiError::too_large("payload_too_large", e.to_string())
            }
            LogError::InvalidPosition(_) => {
                ApiError::bad_request("invalid_position", e.to_string()).field("after")
            }
            // The log could not take the write: nothing was acknowledged, so the client may
            // safely retry.
            _ => ApiError::unavailable(
                "log_unavailable",
                format!("the action log is unavailable: {e}"),
            ),
        }
    }
}

impl From<AccountsError> for ApiError {
    fn from(e: AccountsError) -> Self {
        let code = e.code();
        match &e {
            AccountsError::Invalid { field, message, .. } => {
                ApiError::unprocessable(code, message.clone()).field(*field)
            }
            AccountsError::Conflict { field, .. } => {
                ApiError::new(StatusCode::CONFLICT, code, e.to_string()).field(*field)
            }
            AccountsError::InvalidCredentials | AccountsError::Unauthorized { .. } => {
                ApiError::unauthorized(code, e.to_string())
            }
            AccountsError::Forbidden { message, .. } => ApiError::forbidden(code, message.clone()),
            AccountsError::NotFound { message, .. } => ApiError::not_found(code, message.clone()),
            AccountsError::Unavailable(_) => {
                ApiError::unavailable(code, "the accounts database is unavailable")
            }
            AccountsError::Config(_) | AccountsError::Internal(_) => {
                tracing::error!(error = %e, "accounts failure");
                ApiError::internal("internal error")
            }
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            // The handler names the cursor parameter when it knows which one it was.
            ReadError::InvalidCursor => ApiError::bad_request("invalid_cursor", e.to_string()),
            ReadError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            // The views' store failed underneath: a server fault, not bad input.
            ReadError::Store(e) => {
                tracing::error!(error = %e, "reading the views failed");
                ApiError::internal("internal error")
            }
        }
    }
}
