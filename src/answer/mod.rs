//! Answers of the similarity operations: a job's [`outcome::Outcome`] encoded as a native
//! JSON body ([`json`], floats in the encoding the client asked for, [`Encoding`]) or as an
//! Open Inference Protocol body ([`infer`], JSON or JSON followed by binary tensors), sent as
//! a response that holds its memory reservation until written ([`respond`]). Compression of
//! the bytes is [`crate::coding::compress_answer`]'s, done before `respond` in the
//! computation's thread. [`float`] writes a float32's text as serde_json (zmij) does, for
//! `json`'s nested arrays.

pub mod float;
pub mod infer;
pub mod json;
pub mod outcome;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};

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
    /// The body, uncompressed, as pieces sent one after another: a large tensor's text stays
    /// in the pieces it was formatted in ([`json`]), and a binary tensor in the result's own
    /// buffer ([`infer`]), rather than being copied into one buffer.
    pub pieces: Vec<Piece>,
    /// `Some(n)`: the first `n` bytes are JSON and binary tensors follow them (the Open
    /// Inference Protocol's binary tensor data); `None`: the bytes are JSON.
    pub json_length: Option<usize>,
}

impl Answer {
    /// A JSON body, in pieces.
    pub fn json(pieces: Vec<Vec<u8>>) -> Self {
        Answer {
            pieces: pieces.into_iter().map(Piece::Bytes).collect(),
            json_length: None,
        }
    }
}

/// A piece of an answer's body.
#[derive(Debug)]
pub enum Piece {
    /// Bytes.
    Bytes(Vec<u8>),
    /// `f32` values sent as their own memory: their little-endian bytes on a little-endian
    /// host, the only one [`Piece::floats`] makes this on.
    Floats(Vec<f32>),
}

impl Piece {
    /// `values` as their little-endian bytes: the values' own buffer on a little-endian
    /// host, else a copy.
    pub fn floats(values: Vec<f32>) -> Self {
        if cfg!(target_endian = "little") {
            Piece::Floats(values)
        } else {
            Piece::Bytes(values.iter().flat_map(|v| v.to_le_bytes()).collect())
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.as_ref().len()
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of memory it holds (its buffer's capacity, at least its length).
    pub fn held_bytes(&self) -> usize {
        match self {
            Piece::Bytes(bytes) => bytes.capacity(),
            Piece::Floats(values) => values.capacity() * size_of::<f32>(),
        }
    }
}

impl From<Vec<u8>> for Piece {
    fn from(bytes: Vec<u8>) -> Self {
        Piece::Bytes(bytes)
    }
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        match self {
            Piece::Bytes(bytes) => bytes,
            Piece::Floats(values) => bytemuck::cast_slice(values),
        }
    }
}

/// The header giving the length of the JSON that starts a body with binary tensors.
pub const INFERENCE_HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";

/// The `200` response carrying the `pieces` of a body (already in `coding`), each of which
/// keeps `held` (the request's memory reservation) alive until hyper has written it or given
/// up on the connection: `application/json`, or, when `json_length` is given,
/// `application/octet-stream` with `Inference-Header-Content-Length` (the length of the JSON
/// before compression). The body's length is known, so it is sent with `Content-Length`.
pub fn respond<H: Send + Sync + 'static>(
    coding: Option<Coding>,
    pieces: Vec<Piece>,
    json_length: Option<usize>,
    held: H,
) -> Response {
    let held = Arc::new(held);
    let pieces: Vec<Bytes> = pieces
        .into_iter()
        .map(|body| {
            Bytes::from_owner(Held {
                body,
                _held: Arc::clone(&held),
            })
        })
        .collect();
    let body = Body::new(Pieces::new(pieces));
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
/// `Bytes` handle of the last piece is dropped.
struct Held<H> {
    body: Piece,
    _held: Arc<H>,
}

/// A body sent as its pieces, one frame each, whose length is known.
struct Pieces {
    pieces: std::vec::IntoIter<Bytes>,
    /// Bytes of the pieces not yet sent.
    remaining: u64,
}

impl Pieces {
    fn new(pieces: Vec<Bytes>) -> Self {
        let remaining = pieces.iter().map(|piece| piece.len() as u64).sum();
        Pieces {
            pieces: pieces.into_iter(),
            remaining,
        }
    }
}

impl http_body::Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let piece = self.pieces.next();
        if let Some(piece) = &piece {
            self.remaining -= piece.len() as u64;
        }
        Poll::Ready(piece.map(|piece| Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.as_slice().is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl<H> AsRef<[u8]> for Held<H> {
    fn as_ref(&self) -> &[u8] {
        self.body.as_ref()
    }
}
