//! The gRPC edge: tonic handlers only. Each handler authenticates, parses the request into a typed
//! command ([`requests`]), calls one function of the issuance core and converts the answer
//! ([`convert`]). Errors become `tonic::Status` in
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
pub mod requests;
pub mod small_frames;
pub mod status;
pub mod template_service;
pub mod token_service;

pub use template_service::TemplateApi;
pub use token_service::TokenApi;
