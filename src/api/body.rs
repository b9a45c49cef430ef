//! The JSON body extractor shared by every POST route, and the admission steps around it.
//!
//! In order: the content type and encoding are checked; the body is read under
//! `--body-timeout` and `--max-body-bytes`, reserving the buffer's bytes against the memory
//! budget as they arrive; a compute permit is taken (or the request waits in the bounded
//! queue, or is refused); the memory that inflating and parsing may take is reserved; then the
//! body is inflated (gzip, zstd) and parsed, off the runtime when large. The permit and the
//! reservation travel on in the [`Ticket`], and stay with the work if the request is dropped
//! while it runs.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::compress::{self, Coding};
use super::ticket::Ticket;
use crate::admission::Reservation;
use crate::app::AppState;
use crate::error::ApiError;
use crate::middleware::observe::{BodyCounter, route_label};
use crate::offload::run_cpu;

/// The most a compressed body may inflate relative to its size, once past
/// [`INFLATE_FREE_BYTES`]; further is treated as a decompression bomb (Apache's
/// `DeflateInflateRatioLimit` has the same default).
const MAX_INFLATE_RATIO: usize = 200;

/// Inflated bytes allowed before [`MAX_INFLATE_RATIO`] applies.
const INFLATE_FREE_BYTES: usize = 1 << 20;

/// Parsing holds the body and what it decodes to together: at most this many bytes per body
/// byte (`"",` in `item_ids` becomes a 24-byte `String`; `1,` in a tensor a 4-byte float).
const DECODE_BYTES_PER_BODY_BYTE: usize = 8;

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
        let encoding = content_coding(req.headers())?;
        let route = route_label(&req);
        let accepted = compress::negotiate(req.headers());
        let counter = req.extensions().get::<BodyCounter>().cloned();
        let limits = &state.limits;
        let declared = declared_length(req.headers());
        if declared.is_some_and(|n| n > limits.max_body_bytes) {
            return Err(ApiError::PayloadTooLarge {
                limit: limits.max_body_bytes,
            });
        }

        let mut reservation = state.admission.reservation();
        let read = read_body(req.into_body(), state, declared, &mut reservation, counter);
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
        let limit = limits.max_body_bytes;
        let inflated = match encoding {
            Some(_) => inflate_bound(bytes.len(), limit),
            None => bytes.len(),
        };
        reservation
            .grow(inflated.saturating_mul(DECODE_BYTES_PER_BODY_BYTE + 1))
            .map_err(|r| state.refused(r))?;
        // The permit and the reservation go with the work, so that a request dropped while
        // it parses keeps both until the parse actually ends.
        let held = (permit, reservation);
        let (parsed, (permit, reservation)) = run_cpu(inflated, move || {
            let parsed = match encoding {
                Some(coding) => decompress(coding, &bytes, limit).and_then(|body| parse(&body)),
                None => parse(&bytes),
            };
            (parsed, held)
        })
        .await?;
        Ok(JsonBody(
            parsed?,
            Ticket::new(state, route, accepted, permit, reservation),
        ))
    }
}

/// Reads the whole (possibly compressed) body, refusing it past `--max-body-bytes` and
/// charging `reservation` for the memory it takes as the bytes arrive.
///
/// A declared `Content-Length` (at most the limit, checked before) sizes the buffer once,
/// so the body is copied once and never regrown; its pages take memory only as bytes are
/// written into them, so it is charged for the bytes received, not the length declared.
/// Without one, the buffer grows as `Vec` does and is charged its capacity.
async fn read_body(
    mut body: Body,
    state: &AppState,
    declared: Option<usize>,
    reservation: &mut Reservation,
    counter: Option<BodyCounter>,
) -> Result<Bytes, ApiError> {
    let limit = state.limits.max_body_bytes;
    let mut buffer: Vec<u8> = Vec::new();
    if let Some(length) = declared {
        // Best effort: if the address space is short, the buffer grows as bytes arrive.
        let _ = buffer.try_reserve_exact(length);
    }
    let presized = buffer.capacity();
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
        if total > buffer.capacity() {
            let grown = total.max(buffer.capacity().saturating_mul(2)).min(limit);
            reservation.set(grown).map_err(|r| state.refused(r))?;
            buffer.reserve_exact(grown - buffer.len());
        } else if buffer.capacity() == presized {
            reservation.set(total).map_err(|r| state.refused(r))?;
        }
        buffer.extend_from_slice(&data);
    }
    Ok(Bytes::from(buffer))
}

/// The most bytes a compressed body of `len` bytes may inflate to.
fn inflate_bound(len: usize, limit: usize) -> usize {
    len.saturating_mul(MAX_INFLATE_RATIO)
        .max(INFLATE_FREE_BYTES)
        .min(limit)
}

/// Inflates `bytes`, refusing output past `--max-body-bytes` or [`MAX_INFLATE_RATIO`].
fn decompress(coding: Coding, bytes: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let bound = inflate_bound(bytes.len(), limit);
    match coding.decompress(bytes, bound) {
        Ok(Some(body)) => Ok(body),
        Ok(None) if bound < limit => Err(ApiError::InflatesTooFar {
            ratio: MAX_INFLATE_RATIO,
        }),
        Ok(None) => Err(ApiError::PayloadTooLarge { limit }),
        Err(err) => Err(ApiError::MalformedJson(format!(
            "could not decompress the {} body: {err}",
            coding.token()
        ))),
    }
}

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The body's `Content-Encoding`: none (or `identity`), gzip or zstd; anything else,
/// including several codings, is 415.
fn content_coding(headers: &HeaderMap) -> Result<Option<Coding>, ApiError> {
    let mut codings = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let value = value.to_str().map_err(|_| ApiError::UnsupportedEncoding)?;
        codings.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity")),
        );
    }
    match codings.as_slice() {
        [] => Ok(None),
        [one] => Coding::from_token(one)
            .map(Some)
            .ok_or(ApiError::UnsupportedEncoding),
        _ => Err(ApiError::UnsupportedEncoding),
    }
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
    fn one_known_content_coding_or_none_is_accepted() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_ENCODING, value.parse().unwrap());
            content_coding(&headers)
        };
        assert_eq!(content_coding(&HeaderMap::new()).unwrap(), None);
        assert_eq!(with("Identity").unwrap(), None);
        assert_eq!(with("GZIP").unwrap(), Some(Coding::Gzip));
        assert_eq!(with("zstd").unwrap(), Some(Coding::Zstd));
        assert!(with("br").is_err());
        assert!(with("gzip, gzip").is_err());
    }

    #[test]
    fn inflation_is_bounded_by_the_ratio_past_the_first_mebibyte_and_by_the_limit() {
        assert_eq!(inflate_bound(10, 64 << 20), 1 << 20);
        assert_eq!(inflate_bound(100 << 10, 64 << 20), 200 * (100 << 10));
        assert_eq!(inflate_bound(1 << 20, 64 << 20), 64 << 20);
        let bomb = Coding::Gzip.compress(&vec![b' '; 8 << 20]).unwrap();
        assert!(matches!(
            decompress(Coding::Gzip, &bomb, 64 << 20),
            Err(ApiError::InflatesTooFar { ratio: 200 })
        ));
        let plain = br#"{"a": [[1, 2]]}"#;
        let packed = Coding::Zstd.compress(plain).unwrap();
        assert_eq!(decompress(Coding::Zstd, &packed, 64 << 20).unwrap(), plain);
        assert!(matches!(
            decompress(Coding::Zstd, &packed, 4),
            Err(ApiError::PayloadTooLarge { limit: 4 })
        ));
        assert!(matches!(
            decompress(Coding::Gzip, b"\x1f\x8b nonsense", 64 << 20),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[test]
    fn bodies_that_are_not_objects_are_malformed() {
        for body in ["[1]", "", "  ", "\u{feff}{}", "null"] {
            let got = parse::<serde_json::Map<String, serde_json::Value>>(body.as_bytes());
            assert!(matches!(got, Err(ApiError::MalformedJson(_))), "{body:?}");
        }
    }
}
