//! Content codings (gzip, zstd), both ways: the one home of compression.
//!
//! - Request bodies: [`request_coding`] reads `Content-Encoding`; [`inflate`] inflates a body
//!   with the decompression-bomb bounds, called where the body is parsed (off the runtime).
//! - Similarity answers: [`negotiate`] picks a coding from `Accept-Encoding`, and
//!   [`compress_answer`] compresses the answer in the computation's thread (a 48 MB JSON
//!   matrix takes about a second to gzip; on a runtime thread that second would stall other
//!   requests).
//! - Every other route: [`layer`] compresses their small answers; it leaves alone responses
//!   that already carry `Content-Encoding`.

use std::io::{Read, Write};

use axum::http::{HeaderMap, header};
use tower_http::compression::predicate::{And, DefaultPredicate, Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};

use crate::error::ApiError;

/// Answers smaller than this are sent as they are.
const MIN_BYTES: usize = 1024;

/// The most a compressed body may inflate relative to its size, once past
/// [`INFLATE_FREE_BYTES`]; further is treated as a decompression bomb (Apache's
/// `DeflateInflateRatioLimit` has the same default).
const MAX_INFLATE_RATIO: usize = 200;

/// Inflated bytes allowed before [`MAX_INFLATE_RATIO`] applies.
const INFLATE_FREE_BYTES: usize = 1 << 20;

/// The largest zstd window accepted in request bodies (2^27 = 128 MiB is zstd's own default
/// limit; 2^23 = 8 MiB is what its compressor uses up to level 19).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// A content coding both sides support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `gzip`, at the fastest level.
    Gzip,
    /// `zstd`, at level 1.
    Zstd,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Zstd => "zstd",
        }
    }

    /// The coding a `Content-Encoding` token names.
    pub fn from_token(token: &str) -> Option<Self> {
        match token.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "zstd" => Some(Coding::Zstd),
            _ => None,
        }
    }

    /// `body` inflated, or `None` if it inflates to more than `bound` bytes (reading stops
    /// there).
    pub fn decompress(self, body: &[u8], bound: usize) -> std::io::Result<Option<Vec<u8>>> {
        let cap = u64::try_from(bound).unwrap_or(u64::MAX).saturating_add(1);
        let mut out = Vec::new();
        match self {
            Coding::Gzip => {
                flate2::read::MultiGzDecoder::new(body)
                    .take(cap)
                    .read_to_end(&mut out)?;
            }
            Coding::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::with_buffer(body)?;
                decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                decoder.take(cap).read_to_end(&mut out)?;
            }
        }
        Ok((out.len() <= bound).then_some(out))
    }

    /// `body` compressed.
    pub fn compress(self, body: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Coding::Gzip => {
                let out = Vec::with_capacity(body.len() / 2);
                let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
                encoder.write_all(body)?;
                encoder.finish()
            }
            Coding::Zstd => zstd::bulk::compress(body, 1),
        }
    }
}

/// The coding `Accept-Encoding` prefers among those simserve has: highest `q` first, zstd
/// on ties; `q=0` refuses a coding; `*` stands for any coding not named.
pub fn negotiate(headers: &HeaderMap) -> Option<Coding> {
    let mut best: Option<(u16, Coding)> = None;
    let mut named = [false; 2];
    let mut wildcard: Option<u16> = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim();
            // `q` is case-insensitive (RFC 9110's weight is `;` `q=` in ABNF, whose
            // literals are).
            let q = parts
                .filter_map(|p| p.trim().split_once('='))
                .filter(|(key, _)| key.trim().eq_ignore_ascii_case("q"))
                .find_map(|(_, value)| quality(value.trim()))
                .unwrap_or(1000);
            if name == "*" {
                wildcard = Some(q);
                continue;
            }
            let Some(coding) = Coding::from_token(name) else {
                continue;
            };
            named[coding as usize] = true;
            consider(&mut best, q, coding);
        }
    }
    if let Some(q) = wildcard {
        for coding in [Coding::Zstd, Coding::Gzip] {
            if !named[coding as usize] {
                consider(&mut best, q, coding);
            }
        }
    }
    best.map(|(_, coding)| coding)
}

fn consider(best: &mut Option<(u16, Coding)>, q: u16, coding: Coding) {
    let better = match *best {
        None => true,
        Some((held, held_coding)) => {
            q > held || (q == held && coding == Coding::Zstd && held_coding != Coding::Zstd)
        }
    };
    if q > 0 && better {
        *best = Some((q, coding));
    }
}

/// A `q` value in thousandths (`0.5` → 500), or `None` if malformed.
fn quality(text: &str) -> Option<u16> {
    let q: f32 = text.trim().parse().ok()?;
    (0.0..=1.0)
        .contains(&q)
        .then(|| (q * 1000.0).round() as u16)
}

/// The request body's `Content-Encoding`: none (or `identity`), gzip or zstd; anything else,
/// including several codings, is 415.
pub fn request_coding(headers: &HeaderMap) -> Result<Option<Coding>, ApiError> {
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

/// The most bytes a compressed body of `len` bytes may inflate to under `limit`
/// (`--max-body-bytes`).
pub fn inflate_bound(len: usize, limit: usize) -> usize {
    len.saturating_mul(MAX_INFLATE_RATIO)
        .max(INFLATE_FREE_BYTES)
        .min(limit)
}

/// Inflates a request body, refusing output past `limit` (`--max-body-bytes`, 413) or
/// [`MAX_INFLATE_RATIO`] (413), and bytes that are not `coding` (400).
pub fn inflate(coding: Coding, bytes: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
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

/// An answer's pieces in `coding` (then one piece) when it is worth compressing, with the
/// coding used.
pub fn compress_answer<P: AsRef<[u8]> + From<Vec<u8>>>(
    coding: Option<Coding>,
    pieces: Vec<P>,
) -> Result<(Option<Coding>, Vec<P>), ApiError> {
    let len: usize = pieces.iter().map(|piece| piece.as_ref().len()).sum();
    match coding {
        Some(coding) if len >= MIN_BYTES => {
            // Compressing costs far more than joining the pieces first.
            let joined: Vec<u8>;
            let body = match &pieces[..] {
                [body] => body.as_ref(),
                _ => {
                    joined = pieces
                        .iter()
                        .map(AsRef::as_ref)
                        .collect::<Vec<_>>()
                        .concat();
                    &joined
                }
            };
            coding
                .compress(body)
                .map(|packed| (Some(coding), vec![P::from(packed)]))
                .map_err(|err| ApiError::Internal(format!("could not compress: {err}")))
        }
        _ => Ok((None, pieces)),
    }
}

/// Drops an `Accept-Encoding` that accepts none of the codings simserve has, so that the
/// answer is sent as it is. Such a header may also refuse `identity` (`identity;q=0`,
/// `*;q=0`); RFC 9110 (12.5.3) lets a server then send the answer without a coding rather
/// than 406, which `tower_http`'s compression would send with the answer's own body and
/// headers (and the metrics and log would count as the answer's status).
pub async fn ignore_unmet_accept_encoding(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if request.headers().contains_key(header::ACCEPT_ENCODING)
        && negotiate(request.headers()).is_none()
    {
        request.headers_mut().remove(header::ACCEPT_ENCODING);
    }
    next.run(request).await
}

/// The compression layer for the routes that are not similarity operations (their answers
/// are small, so compressing them on the runtime costs little). Like [`compress_answer`], it
/// leaves answers under [`MIN_BYTES`] as they are: gzip would make them larger, and a small
/// similarity answer, left alone there, would be compressed here, out of the metrics' sight.
pub fn layer() -> CompressionLayer<And<DefaultPredicate, SizeAbove>> {
    CompressionLayer::new()
        .quality(CompressionLevel::Fastest)
        .compress_when(DefaultPredicate::new().and(SizeAbove::new(MIN_BYTES as u64)))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn with(accept: &str) -> Option<Coding> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, accept.parse().unwrap());
        negotiate(&headers)
    }

    #[test]
    fn the_preferred_acceptable_coding_is_chosen() {
        assert_eq!(negotiate(&HeaderMap::new()), None);
        assert_eq!(with("identity"), None);
        assert_eq!(with("br"), None);
        assert_eq!(with("gzip"), Some(Coding::Gzip));
        assert_eq!(with("gzip, deflate, br, zstd"), Some(Coding::Zstd));
        assert_eq!(with("zstd;q=0.5, gzip"), Some(Coding::Gzip));
        assert_eq!(with("zstd;q=0, gzip;q=0.1"), Some(Coding::Gzip));
        assert_eq!(with("gzip;q=0"), None);
        assert_eq!(with("*"), Some(Coding::Zstd));
        assert_eq!(with("zstd;q=0, *;q=0.3"), Some(Coding::Gzip));
        assert_eq!(with("gzip;q=nonsense"), Some(Coding::Gzip));
        assert_eq!(with("gzip;Q=0"), None);
        assert_eq!(with("zstd;Q=0, gzip;q=0.5"), Some(Coding::Gzip));
        assert_eq!(with("zstd; q = 0 , gzip"), Some(Coding::Gzip));
    }

    #[test]
    fn compressed_bodies_inflate_to_the_original() {
        let body = br#"{"scores":[0.5,0.25,0.125]}"#.repeat(100);
        let gz = Coding::Gzip.compress(&body).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
        let zs = Coding::Zstd.compress(&body).unwrap();
        assert_eq!(zstd::decode_all(&zs[..]).unwrap(), body);
        assert!(zs.len() < body.len() / 10);
    }

    #[test]
    fn one_known_content_coding_or_none_is_accepted() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_ENCODING, value.parse().unwrap());
            request_coding(&headers)
        };
        assert_eq!(request_coding(&HeaderMap::new()).unwrap(), None);
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
            inflate(Coding::Gzip, &bomb, 64 << 20),
            Err(ApiError::InflatesTooFar { ratio: 200 })
        ));
        let plain = br#"{"a": [[1, 2]]}"#;
        let packed = Coding::Zstd.compress(plain).unwrap();
        assert_eq!(inflate(Coding::Zstd, &packed, 64 << 20).unwrap(), plain);
        assert!(matches!(
            inflate(Coding::Zstd, &packed, 4),
            Err(ApiError::PayloadTooLarge { limit: 4 })
        ));
        assert!(matches!(
            inflate(Coding::Gzip, b"\x1f\x8b nonsense", 64 << 20),
            Err(ApiError::MalformedJson(_))
        ));
    }
}
