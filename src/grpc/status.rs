//! The one place core errors become `tonic::Status`, with google.rpc details: ErrorInfo (reason,
//! domain `tokenmint`, metadata), BadRequest (one violation per bad field) and RequestInfo.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::{Error, ErrorCode};

/// The ErrorInfo domain of every tokenmint error.
pub const ERROR_DOMAIN: &str = "tokenmint";

/// Converts `error` into a status carrying `request_id`.
pub fn to_status(error: Error, request_id: &str) -> Status {
    let code = match error.code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::Aborted => Code::Aborted,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::Internal => Code::Internal,
    };
    let metadata: HashMap<String, String> = error.metadata.into_iter().collect();
    let mut details = ErrorDetails::new();
    details.set_error_info(error.reason, ERROR_DOMAIN, metadata);
    for violation in error.violations {
        details.add_bad_request_violation(violation.field, violation.description);
    }
    details.set_request_info(request_id, "");
    // The RPC's span (and so its log line) carries the reason; causes were logged where they arose.
    tracing::Span::current().record("tokenmint.error_reason", error.reason);
    Status::with_error_details(code, error.message, details)
}
