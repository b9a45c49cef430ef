//! Answers of the similarity operations: results encoded as JSON bodies ([`json`]) in the
//! encoding the client asked for ([`Encoding`]), sent as a response that holds its memory
//! reservation until written ([`respond`]). Compression of the bytes is
//! [`crate::coding::compress_answer`]'s, done before `respond` in the computation's thread.

pub mod json;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::coding::Coding;

/// How float tensors are written back (`response_encoding`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// Nested JSON arrays.
    #[default]
    Json,
    /// Base64 tensor objects of little-endian `float32`.
    Base64,
}

/// The `200 application/json` response carrying `body` (already in `coding`), which keeps
/// `held` (the request's memory reservation) alive until hyper has written the bytes or
/// given up on the connection.
pub fn respond<H: Send + Sync + 'static>(
    coding: Option<Coding>,
    body: Vec<u8>,
    held: H,
) -> Response {
    let body = Body::from(Bytes::from_owner(Held { body, _held: held }));
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(coding) = coding {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
    }
    response
}

/// Response bytes that own what must live as long as they do: released when the last
/// `Bytes` handle is dropped.
struct Held<H> {
    body: Vec<u8>,
    _held: H,
}

impl<H> AsRef<[u8]> for Held<H> {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}
