//! The gRPC edge: tonic handlers only. Each handler authenticates, converts the request, calls one
//! function of the issuance core and converts the answer. Errors become `tonic::Status` in
//! [`status`] and nowhere else.

pub mod auth;
pub mod bounds;
pub mod connection;
pub mod convert;
pub mod headers;
pub mod http;
pub mod load_shed;
pub mod observe;
pub mod rendered;
pub mod request_id;
pub mod status;
pub mod template_service;
pub mod token_service;

pub use template_service::TemplateApi;
pub use token_service::TokenApi;
