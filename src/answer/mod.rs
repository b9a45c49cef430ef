//! Answers of the similarity operations: a job's [`outcome::Outcome`] encoded as a native
//! JSON body ([`json`], floats in the encoding the client asked for, [`Encoding`]) or as an
//! Open Inference Protocol body ([`infer`], JSON or JSON followed by binary tensors), sent as
//! a response that holds its memory reservation until written ([`respond`]). Compression of
//! the bytes is [`crate::coding::compress_answer`]'s, done before `respond` in the
//! computation's thread.

pub mod infer;
pub mod json;
pub mod outcome;

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

/// The bytes of an answer, and what they are.
#[derive(Debug)]
pub struct Answer {
    /// The body, uncompressed.
    pub bytes: Vec<u8>,
    /// `Some(n)`: the first `n` bytes are JSON and binary tensors follow them (the Open
    /// Inference Protocol's binary tensor data); `None`: the bytes are JSON.
    pub json_length: Option<usize>,
}

impl Answer {
    /// A JSON body.
    pub fn json(bytes: Vec<u8>) -> Self {
        Answer {
            bytes,
            json_length: None,
        }
    }
}

/// The header giving the length of the JSON that starts a body with binary tensors.
pub const INFERENCE_HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";

/// The `200` response carrying `body` (already in `coding`), which keeps `held` (the
/// request's memory reservation) alive until hyper has written the bytes or given up on the
/// connection: `application/json`, or, when `json_length` is given, `application/octet-stream`
/// with `Inference-Header-Content-Length` (the length of the JSON before compression).
pub fn respond<H: Send + Sync + 'static>(
    coding: Option<Coding>,
    body: Vec<u8>,
    json_length: Option<usize>,
    held: H,
) -> Response {
    let body = Body::from(Bytes::from_owner(Held { body, _held: held }));
    let content_type = match json_length {
        Some(_) => "application/octet-stream",
        None => "application/json",
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    if let Some(length) = json_length {
        headers.insert(INFERENCE_HEADER_CONTENT_LENGTH, HeaderValue::from(length));
    }
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
