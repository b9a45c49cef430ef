//! The JSON body extractor shared by every POST route, and the admission steps around it.
//!
//! In order: the content type and encoding are checked; the body is read under
//! `--body-timeout` and `--max-body-bytes` (counted after decompression), reserving its bytes
//! against the memory budget as they arrive; a compute permit is taken (or the request waits
//! in the bounded queue, or is refused); then the body is parsed, off the runtime when large.
//! The permit and the reservation travel on in the [`Ticket`].

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::compress;
use super::ticket::Ticket;
use crate::admission::Reservation;
use crate::app::AppState;
use crate::error::ApiError;
use crate::middleware::observe::{BodyCounter, route_label};
use crate::middleware::wire::WireBytes;
use crate::offload::run_cpu;

/// The most a compressed body may inflate, relative to its bytes on the wire, once past
/// [`INFLATE_FREE_BYTES`]; further is treated as a decompression bomb (Apache's
/// `DeflateInflateRatioLimit` has the same default).
const MAX_INFLATE_RATIO: u64 = 200;

/// Inflated bytes allowed before [`MAX_INFLATE_RATIO`] applies.
const INFLATE_FREE_BYTES: u64 = 1 << 20;

/// Parsing holds the body and the decoded numbers together: at most this many bytes of
/// numbers per body byte (a one-digit number and its comma become four bytes).
const DECODE_BYTES_PER_BODY_BYTE: usize = 2;

/// A request body parsed from JSON into `T`, with the ticket that admitted it.
pub struct JsonBody<T>(pub T, pub Ticket);

impl<T> FromRequest<AppState> for JsonBody<T>
where
    T: DeserializeOwned + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        if !is_identity(req.headers()) {
            return Err(ApiError::UnsupportedEncoding);
        }
        let route = route_label(&req);
        let coding = compress::negotiate(req.headers());
        let counter = req.extensions().get::<BodyCounter>().cloned();
        let wire = req.extensions().get::<WireBytes>().cloned();
        let limits = &state.limits;
        let declared = declared_length(req.headers());
        if declared.is_some_and(|n| n > limits.max_body_bytes) {
            return Err(ApiError::PayloadTooLarge {
                limit: limits.max_body_bytes,
            });
        }

        let mut reservation = state.admission.reservation();
        if let Some(length) = declared {
            reservation.grow(length).map_err(|r| state.refused(r))?;
        }
        let read = read_body(req.into_body(), state, &mut reservation, counter, wire);
        let bytes = tokio::time::timeout(limits.body_timeout, read)
            .await
            .map_err(|_| {
                state.metrics.rejected("body_timeout");
                ApiError::BodyTimeout(limits.body_timeout)
            })??;

        let permit = state
            .admission
            .permit()
            .await
            .map_err(|r| state.refused(r))?;
        reservation
            .grow(bytes.len().saturating_mul(DECODE_BYTES_PER_BODY_BYTE))
            .map_err(|r| state.refused(r))?;
        let value = run_cpu(bytes.len(), move || parse(&bytes)).await??;
        Ok(JsonBody(
            value,
            Ticket::new(state, route, coding, permit, reservation),
        ))
    }
}

/// Reads the whole body, refusing it past `--max-body-bytes` and growing `reservation` as it
/// arrives (beyond any declared length already reserved).
async fn read_body(
    mut body: Body,
    state: &AppState,
    reservation: &mut Reservation,
    counter: Option<BodyCounter>,
    wire: Option<WireBytes>,
) -> Result<Bytes, ApiError> {
    let limit = state.limits.max_body_bytes;
    let mut buffer = BytesMut::with_capacity(reservation.bytes().min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|err| ApiError::MalformedJson(format!("could not read the body: {err}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if let Some(counter) = &counter {
            counter.add(data.len());
        }
        let total = buffer.len().saturating_add(data.len());
        if total > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        if let Some(wire) = &wire {
            let inflated = u64::try_from(total).unwrap_or(u64::MAX);
            if inflated > INFLATE_FREE_BYTES
                && inflated > wire.get().saturating_mul(MAX_INFLATE_RATIO)
            {
                return Err(ApiError::InflatesTooFar {
                    ratio: MAX_INFLATE_RATIO,
                });
            }
        }
        if total > reservation.bytes() {
            reservation.set(total).map_err(|r| state.refused(r))?;
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer.freeze())
}

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// No `Content-Encoding` left once supported encodings have been decoded, or `identity`.
fn is_identity(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .all(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("identity"))
        })
}

/// The `Content-Length`, when present and readable.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Parses a body that must be one JSON object.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::MalformedJson(
            "the body must be a JSON object".to_owned(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|err| ApiError::from_json(&err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised_with_parameters_and_any_case() {
        let mut headers = HeaderMap::new();
        for (value, want) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/jsonx", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_json(&headers), want, "{value}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn only_identity_or_no_content_encoding_is_left_for_the_parser() {
        let mut headers = HeaderMap::new();
        assert!(is_identity(&headers));
        headers.insert(header::CONTENT_ENCODING, "Identity".parse().unwrap());
        assert!(is_identity(&headers));
        headers.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(!is_identity(&headers));
    }

    #[test]
    fn bodies_that_are_not_objects_are_malformed() {
        for body in ["[1]", "", "  ", "\u{feff}{}", "null"] {
            let got = parse::<serde_json::Map<String, serde_json::Value>>(body.as_bytes());
            assert!(matches!(got, Err(ApiError::MalformedJson(_))), "{body:?}");
        }
    }
}
