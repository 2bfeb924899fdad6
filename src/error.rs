//! The one error type of tokenmint's core: what went wrong, for whom it is the caller's fault, and
//! the structured context a client needs. `grpc::status` turns it into a `tonic::Status` with
//! google.rpc details; nothing else does.

use std::fmt;

/// The class of failure, which decides the gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed or breaks a rule (INVALID_ARGUMENT).
    InvalidArgument,
    /// No valid caller credentials (UNAUTHENTICATED).
    Unauthenticated,
    /// The caller may not do this (PERMISSION_DENIED).
    PermissionDenied,
    /// The resource does not exist for this caller (NOT_FOUND).
    NotFound,
    /// The resource exists already (ALREADY_EXISTS).
    AlreadyExists,
    /// The resource is not in a state that allows this (FAILED_PRECONDITION).
    FailedPrecondition,
    /// A limit of this server is reached; retry later or elsewhere (RESOURCE_EXHAUSTED).
    ResourceExhausted,
    /// The operation was cut off and should be resumed from where it stood (ABORTED).
    Aborted,
    /// A dependency (the database) is unavailable; retrying may help (UNAVAILABLE).
    Unavailable,
    /// A bug or an invariant broken on our side (INTERNAL).
    Internal,
}

/// Stable, machine-readable reasons, sent as `google.rpc.ErrorInfo.reason`.
pub mod reason {
    /// A lifetime field is out of range or both are given.
    pub const CONFLICTING_LIFETIME: &str = "CONFLICTING_LIFETIME";
    /// The requested lifetime exceeds the configured maximum.
    pub const LIFETIME_TOO_LONG: &str = "LIFETIME_TOO_LONG";
    /// The requested lifetime is zero, negative, or in the past.
    pub const INVALID_LIFETIME: &str = "INVALID_LIFETIME";
    /// The label is missing or empty.
    pub const LABEL_REQUIRED: &str = "LABEL_REQUIRED";
    /// The label is longer than 100 characters or contains control characters.
    pub const INVALID_LABEL: &str = "INVALID_LABEL";
    /// The description is too long or contains control characters.
    pub const INVALID_DESCRIPTION: &str = "INVALID_DESCRIPTION";
    /// A scope is not in the catalog.
    pub const INVALID_SCOPE: &str = "INVALID_SCOPE";
    /// A scope is not allowed in this environment (`all` in production).
    pub const SCOPE_NOT_ALLOWED: &str = "SCOPE_NOT_ALLOWED";
    /// An IP address or CIDR block does not parse.
    pub const INVALID_IP_ADDRESS: &str = "INVALID_IP_ADDRESS";
    /// Production tokens must be IP-restricted.
    pub const IP_RESTRICTION_REQUIRED: &str = "IP_RESTRICTION_REQUIRED";
    /// A spending limit amount is not a non-negative decimal integer of at most 78 digits.
    pub const INVALID_LIMIT: &str = "INVALID_LIMIT";
    /// A coin ticker is malformed.
    pub const INVALID_COIN: &str = "INVALID_COIN";
    /// The same coin appears twice in the spending limits.
    pub const DUPLICATE_COIN: &str = "DUPLICATE_COIN";
    /// An id does not have the expected form.
    pub const INVALID_ID: &str = "INVALID_ID";
    /// An enterprise id is malformed.
    pub const INVALID_ENTERPRISE_ID: &str = "INVALID_ENTERPRISE_ID";
    /// A page token is not one this service issued.
    pub const INVALID_PAGE_TOKEN: &str = "INVALID_PAGE_TOKEN";
    /// A page size is negative (sizes above the maximum are reduced to it).
    pub const INVALID_PAGE_SIZE: &str = "INVALID_PAGE_SIZE";
    /// An update mask names a field that cannot be updated.
    pub const INVALID_UPDATE_MASK: &str = "INVALID_UPDATE_MASK";
    /// An update changes nothing.
    pub const EMPTY_UPDATE: &str = "EMPTY_UPDATE";
    /// A repeated request field holds more entries than the configured cap (`requests.*`); the
    /// metadata names the `field`, its `max` and the request's `count`.
    pub const TOO_MANY_ITEMS: &str = "TOO_MANY_ITEMS";
    /// A filter value is not allowed.
    pub const INVALID_FILTER: &str = "INVALID_FILTER";
    /// A template name is missing or blank.
    pub const TEMPLATE_NAME_REQUIRED: &str = "TEMPLATE_NAME_REQUIRED";
    /// A template name is too long or contains control characters.
    pub const INVALID_TEMPLATE_NAME: &str = "INVALID_TEMPLATE_NAME";
    /// The caller already has a template with this name.
    pub const TEMPLATE_NAME_TAKEN: &str = "TEMPLATE_NAME_TAKEN";
    /// The template changed since the version the caller read.
    pub const TEMPLATE_VERSION_MISMATCH: &str = "TEMPLATE_VERSION_MISMATCH";
    /// A token minted from a template asks for more than the template allows.
    pub const EXCEEDS_TEMPLATE: &str = "EXCEEDS_TEMPLATE";
    /// The template message is missing from an update.
    pub const TEMPLATE_REQUIRED: &str = "TEMPLATE_REQUIRED";
    /// The template does not exist or belongs to someone else.
    pub const TEMPLATE_NOT_FOUND: &str = "TEMPLATE_NOT_FOUND";
    /// The token does not exist, was deleted, or belongs to someone else.
    pub const TOKEN_NOT_FOUND: &str = "TOKEN_NOT_FOUND";
    /// No status list has this id.
    pub const STATUS_LIST_NOT_FOUND: &str = "STATUS_LIST_NOT_FOUND";
    /// Too many status list requests are waiting for a render; retry shortly.
    pub const STATUS_LIST_BUSY: &str = "STATUS_LIST_BUSY";
    /// A change-stream cursor is not one the server handed out.
    pub const INVALID_CURSOR: &str = "INVALID_CURSOR";
    /// The change log no longer holds the changes after a stream's cursor (pruned, or missed by
    /// the server): resync from the status lists, then watch from an empty cursor.
    pub const CHANGE_CURSOR_EXPIRED: &str = "CHANGE_CURSOR_EXPIRED";
    /// The change log went back in time (a database restored from a backup): resync from the
    /// status lists, then watch from an empty cursor.
    pub const CHANGE_LOG_REWOUND: &str = "CHANGE_LOG_REWOUND";
    /// A change stream fell too far behind the server's changes: resume from its last cursor.
    pub const CHANGE_STREAM_TOO_SLOW: &str = "CHANGE_STREAM_TOO_SLOW";
    /// The server already serves as many change streams as it may (`changes.max_streams`).
    pub const TOO_MANY_CHANGE_STREAMS: &str = "TOO_MANY_CHANGE_STREAMS";
    /// The server is shutting down: retry on another server, or resume later.
    pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";
    /// The lifecycle transition is not allowed from the token's current state.
    pub const INVALID_TRANSITION: &str = "INVALID_TRANSITION";
    /// The new (or re-enabled) token would exceed the calling token in some dimension (lifetime,
    /// networks, spending limits, enterprise); the metadata's `field` names which.
    pub const EXCEEDS_CALLER: &str = "EXCEEDS_CALLER";
    /// A stored bound (a template's or calling token's IP list) no longer parses: nothing is
    /// minted under it until it is fixed.
    pub const UNREADABLE_RESTRICTION: &str = "UNREADABLE_RESTRICTION";
    /// A cascading revoke of the same user's tokens is still running.
    pub const CASCADE_IN_PROGRESS: &str = "CASCADE_IN_PROGRESS";
    /// The new token would hold a scope its creator does not hold.
    pub const SCOPE_NOT_HELD: &str = "SCOPE_NOT_HELD";
    /// Only an admin caller may do this.
    pub const ADMIN_REQUIRED: &str = "ADMIN_REQUIRED";
    /// The user is not a member of the enterprise.
    pub const NOT_ENTERPRISE_MEMBER: &str = "NOT_ENTERPRISE_MEMBER";
    /// The caller's token lacks the scope this RPC needs.
    pub const MISSING_SCOPE: &str = "MISSING_SCOPE";
    /// The caller's token may not be used from its address.
    pub const IP_NOT_ALLOWED: &str = "IP_NOT_ALLOWED";
    /// No `authorization: Bearer` metadata.
    pub const CREDENTIALS_MISSING: &str = "CREDENTIALS_MISSING";
    /// The bearer token is not valid (the metadata says why).
    pub const INVALID_CREDENTIALS: &str = "INVALID_CREDENTIALS";
    /// The resource changed concurrently too often; retrying may succeed.
    pub const CONCURRENT_CHANGE: &str = "CONCURRENT_CHANGE";
    /// The database could not be reached or failed.
    pub const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";
    /// An unexpected internal failure.
    pub const INTERNAL: &str = "INTERNAL";
}

/// One invalid request field, reported as a google.rpc.BadRequest field violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request, e.g. `scopes[2]`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// A failure with its class, reason, message and context. The message is safe to show a client:
/// it never contains a raw token or key material.
#[derive(Debug, Clone)]
pub struct Error {
    /// The class of failure.
    pub code: ErrorCode,
    /// The stable reason (one of [`reason`]).
    pub reason: &'static str,
    /// A human-readable explanation for the caller.
    pub message: String,
    /// Context for ErrorInfo.metadata (e.g. the bad scope's name).
    pub metadata: Vec<(String, String)>,
    /// Bad fields, for BadRequest.
    pub violations: Vec<FieldViolation>,
}

/// Result with tokenmint's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shortens a value echoed back in an error message (at most `max` characters): a hostile
/// request must not make its error as large as itself.
pub(crate) fn truncate(raw: &str, max: usize) -> String {
    raw.chars().take(max).collect()
}

impl Error {
    /// A new error of `code` with `reason` and `message`.
    pub fn new(code: ErrorCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            metadata: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// An INVALID_ARGUMENT error about one request field.
    pub fn invalid(
        field: impl Into<String>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        let field = field.into();
        Self::new(ErrorCode::InvalidArgument, reason, message.clone())
            .with_violation(field, message)
    }

    /// A PERMISSION_DENIED error.
    pub fn denied(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, reason, message)
    }

    /// A NOT_FOUND error for a token id.
    pub fn token_not_found(id: impl fmt::Display) -> Self {
        let id = id.to_string();
        Self::new(
            ErrorCode::NotFound,
            reason::TOKEN_NOT_FOUND,
            format!("token {id} not found"),
        )
        .with_meta("token_id", id)
    }

    /// A NOT_FOUND error for a status list id.
    pub fn status_list_not_found(id: impl fmt::Display) -> Self {
        let id = truncate(&id.to_string(), 64);
        Self::new(
            ErrorCode::NotFound,
            reason::STATUS_LIST_NOT_FOUND,
            format!("status list {id} not found"),
        )
        .with_meta("list_id", id)
    }

    /// A NOT_FOUND error for a template id.
    pub fn template_not_found(id: impl fmt::Display) -> Self {
        let id = truncate(&id.to_string(), 64);
        Self::new(
            ErrorCode::NotFound,
            reason::TEMPLATE_NOT_FOUND,
            format!("template {id} not found"),
        )
        .with_meta("template_id", id)
    }

    /// An UNAVAILABLE error for a database failure; the cause is logged, not returned.
    pub fn store(cause: impl fmt::Display) -> Self {
        tracing::error!(error = format!("{cause:#}"), "database operation failed");
        Self::new(
            ErrorCode::Unavailable,
            reason::STORE_UNAVAILABLE,
            "the token store is unavailable; retry later",
        )
    }

    /// An INTERNAL error; the cause is logged, not returned.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = format!("{cause:#}"), "internal error");
        Self::new(ErrorCode::Internal, reason::INTERNAL, "internal error")
    }

    /// Adds a key/value pair to the ErrorInfo metadata.
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Adds a BadRequest field violation.
    pub fn with_violation(
        mut self,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        self.violations.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
        self
    }

    /// Prefixes every field violation's path with `prefix.` (for nested messages).
    pub fn nested_in(mut self, prefix: &str) -> Self {
        for v in &mut self.violations {
            v.field = format!("{prefix}.{}", v.field);
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

impl std::error::Error for Error {}

/// Collects the errors of several independent field checks so that one response names every bad
/// field. The first error decides the code and the ErrorInfo reason.
#[derive(Debug, Default)]
pub struct Violations {
    first: Option<Error>,
}

impl Violations {
    /// Records `result`'s error (if any) and returns its value.
    pub fn check<T>(&mut self, result: Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                match &mut self.first {
                    None => self.first = Some(error),
                    Some(first) => {
                        first.violations.extend(error.violations);
                        for (k, v) in error.metadata {
                            if !first.metadata.iter().any(|(fk, _)| *fk == k) {
                                first.metadata.push((k, v));
                            }
                        }
                    }
                }
                None
            }
        }
    }

    /// Fails with the collected error, if any check failed.
    pub fn finish(self) -> Result<()> {
        match self.first {
            Some(mut error) if error.violations.len() > 1 => {
                let all: Vec<String> = error
                    .violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect();
                error.message = format!("{} invalid fields: {}", all.len(), all.join("; "));
                Err(error)
            }
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
