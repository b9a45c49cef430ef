//! Request bodies: checked from their headers, read, inflated and parsed into a route's
//! request type, whose fields are decoded by [`fields`].
//!
//! Use [`check_headers`] before anything else, [`read`] to receive the bytes into the
//! request's reservation (into a [`Buffer`], or another [`Sink`]), [`decode`] (off the
//! runtime) to inflate and parse them. Every request's body is wrapped in a [`Lingering`]
//! (`crate::middleware::observe`), so that one answered before it was read (refused from
//! its headers, unauthorised, over a limit, to an unknown route) is discarded as it still
//! arrives rather than reset. [`parse`] reads
//! tensors sent as nested arrays ahead of serde ([`read_ahead`]). The order of these
//! steps around admission is told in [`crate::admission`]. [`infer`] checks and decodes the
//! bodies of the Open Inference Protocol instead of [`check_headers`] and [`decode`].

pub mod fields;
pub mod infer;
pub mod kept;
mod read_ahead;
mod streaming;

pub use kept::KeptBuffers;

pub use read_ahead::TensorFields;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

use crate::admission::{Refusal, Reservation};
use crate::coding::{self, Coding};
use crate::error::ApiError;
use crate::metrics::{BodyCounter, Metrics};
use crate::tensor::text;

/// Bodies discarded at once, at most; past it a refused body is dropped at once (its client
/// may then see a reset rather than the answer).
const MAX_DISCARDS: usize = 1024;

/// Bytes of a body answered before it was read that are discarded at least (more when
/// `--max-body-bytes` is larger), so that a body refused for being over a small limit is
/// still read to its end; past it the connection is closed.
pub const MIN_LINGER_BYTES: usize = 64 << 20;

/// Bytes of a refused body that declared its length discarded at most, when its declared
/// length is more than [`MIN_LINGER_BYTES`] and `--max-body-bytes` (1 GiB): such a body is
/// read to its end, so that a client that sends it whole before it reads (as `httpx` does)
/// gets its 413 rather than a reset, however far over the limit it is, up to this.
pub const MAX_LINGER_BYTES: usize = 1 << 30;

/// Bytes of a body, declared `declared` bytes long, discarded at most when it is answered
/// before it is read, with `--max-body-bytes` of `limit`: at least [`MIN_LINGER_BYTES`] and
/// `limit`, and up to [`MAX_LINGER_BYTES`] its whole declared length.
pub fn linger_bytes(declared: Option<usize>, limit: usize) -> usize {
    let declared = declared.unwrap_or(0).min(MAX_LINGER_BYTES);
    limit.max(MIN_LINGER_BYTES).max(declared)
}

/// Bytes of a request's body still to be discarded at most if it is answered unread:
/// [`linger_bytes`] of its declared length, lowered to what it would be undeclared when the
/// request has no valid key (`middleware::auth`) or no good `Host` (`middleware::host`), is
/// refused as cross-origin
/// (`middleware::cross_origin`, which lowers it after the body was dropped: the discard reads
/// it at each chunk) or no route reads its body (`OPTIONS`), so that such a client cannot have
/// the server read a declared gigabyte.
/// `middleware::observe` puts it in the request's extensions.
#[derive(Debug, Clone)]
pub struct LingerBytes {
    bytes: Arc<AtomicUsize>,
    undeclared: usize,
}

impl LingerBytes {
    /// For a body declared `declared` bytes long, with `--max-body-bytes` of `limit`.
    pub fn new(declared: Option<usize>, limit: usize) -> Self {
        LingerBytes {
            bytes: Arc::new(AtomicUsize::new(linger_bytes(declared, limit))),
            undeclared: linger_bytes(None, limit),
        }
    }

    /// The declared length no longer counts: at most `--max-body-bytes` or
    /// [`MIN_LINGER_BYTES`] are discarded.
    pub fn ignore_declared_length(&self) {
        self.bytes.fetch_min(self.undeclared, Ordering::Relaxed);
    }

    /// The bytes discarded at most.
    pub fn get(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Bytes per second that all discarded bodies together are read at, at most (1 GiB/s). A
/// client whose body is refused is slowed to its share of
/// this, so clients that retry at once cannot make the server (or the network) spend more on
/// bodies it refuses; those that honour `Retry-After` are hardly slowed.
const DISCARD_BYTES_PER_SECOND: f64 = (1 << 30) as f64;

/// What all discarded bodies share: the pace they are read at (each chunk waits for its
/// turn) and a bound on how many are discarded at once.
#[derive(Debug)]
pub struct DiscardPace {
    /// When the next chunk may be read.
    next: Mutex<tokio::time::Instant>,
    /// One permit per body being discarded.
    slots: Arc<Semaphore>,
}

impl Default for DiscardPace {
    fn default() -> Self {
        DiscardPace {
            next: Mutex::new(tokio::time::Instant::now()),
            slots: Arc::new(Semaphore::new(MAX_DISCARDS)),
        }
    }
}

impl DiscardPace {
    /// Waits until `bytes` more may be read.
    async fn take(&self, bytes: usize) {
        let turn = {
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = tokio::time::Instant::now();
            let turn = (*next).max(now);
            *next = turn + Duration::from_secs_f64(bytes as f64 / DISCARD_BYTES_PER_SECOND);
            turn
        };
        tokio::time::sleep_until(turn).await;
    }
}

/// What a body is, from its headers alone.
#[derive(Debug, Clone, Copy)]
pub struct BodyHead {
    /// The `Content-Encoding` to inflate.
    pub coding: Option<Coding>,
    /// The `Content-Length`, when present and readable.
    pub declared: Option<usize>,
}

/// Checks the headers of a body to be parsed as JSON: 415 for another content type or
/// coding, 413 for a declared length over `limit` (`--max-body-bytes`).
pub fn check_headers(headers: &HeaderMap, limit: usize) -> Result<BodyHead, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    head(headers, limit)
}

/// The coding and declared length of a body, whatever its content type: 415 for an unknown
/// coding, 413 for a declared length over `limit`.
fn head(headers: &HeaderMap, limit: usize) -> Result<BodyHead, ApiError> {
    let coding = coding::request_coding(headers)?;
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(BodyHead { coding, declared })
}

/// Where a body's bytes go as they arrive: [`Buffer`] keeps them all, in one buffer;
/// [`infer::Arriving`] decodes binary tensors from them as they come.
pub trait Sink {
    /// Takes the body's next `data`, charging `reservation` for what it keeps beyond what
    /// it holds already.
    fn take(&mut self, data: &[u8], reservation: &mut Reservation) -> Result<(), Refusal>;

    /// [`Sink::take`] for a frame as it came from the connection, which a sink may keep
    /// rather than copy.
    fn take_frame(&mut self, data: Bytes, reservation: &mut Reservation) -> Result<(), Refusal> {
        self.take(&data, reservation)
    }
}

/// A body kept whole, in one buffer.
///
/// A body that arrives in one frame of its declared length (a small one, read with its
/// headers) is kept as that frame, not copied: a slice of the connection's read buffer,
/// which hyper bounds (about 400 KB) and which the frame holds until the body is parsed.
/// Otherwise a declared `Content-Length` (at most the limit, checked before, and reserved when the
/// request was admitted) sizes the buffer once, when the first bytes arrive, so the body is
/// copied once and never regrown; a large one gets a buffer [`KeptBuffers`] kept from an
/// earlier body when one fits, its pages already in memory, and gives it back when the
/// buffer is dropped nearly full but unfinished (its request refused or cancelled after the
/// body arrived). Without one, the buffer grows as `Vec` does and the reservation is charged
/// its capacity as the bytes arrive.
///
/// The reservation is the request's, not the buffer's: a buffer given back stays charged
/// until the request's reservation drops with it.
///
/// Made by [`Buffer::recording_brackets`], it also records the brackets of a body that may be
/// large (declared at least [`text::PARALLEL_BYTES`] long, or not declared) and is not
/// compressed, as its bytes are copied ([`text::Brackets`]), so that finding its tensors'
/// spans needs no second pass over it; the reservation is charged for the record too.
#[derive(Debug)]
pub struct Buffer {
    /// The whole body when it came in one frame of its declared length.
    frame: Option<Bytes>,
    bytes: Vec<u8>,
    declared: Option<usize>,
    limit: usize,
    kept: Arc<KeptBuffers>,
    /// Whether the body's brackets are recorded, into `brackets`.
    recording: bool,
    brackets: text::Brackets,
}

impl Buffer {
    /// An empty buffer for a body of `head` and at most `limit` bytes, taking large buffers
    /// from `kept` and giving them back when done with; it allocates nothing until bytes
    /// arrive.
    pub fn new(head: BodyHead, limit: usize, kept: &Arc<KeptBuffers>) -> Self {
        Buffer {
            frame: None,
            bytes: Vec::new(),
            declared: head.declared,
            limit,
            kept: Arc::clone(kept),
            recording: false,
            brackets: text::Brackets::default(),
        }
    }

    /// [`Buffer::new`] for a body whose tensors [`parse`] reads: one that may be large and is
    /// not compressed has its brackets recorded as it arrives, for [`decode`].
    pub fn recording_brackets(head: BodyHead, limit: usize, kept: &Arc<KeptBuffers>) -> Self {
        let mut buffer = Self::new(head, limit, kept);
        buffer.recording = head.coding.is_none()
            && head
                .declared
                .is_none_or(|length| length >= text::PARALLEL_BYTES);
        buffer
    }

    /// The body; its buffer goes back to [`KeptBuffers`] when the last of the bytes drops.
    pub fn into_bytes(self) -> Bytes {
        self.into_bytes_and_brackets().0
    }

    /// [`Buffer::into_bytes`], with the record of the body's brackets (empty for a body that
    /// was not recorded: [`text::Brackets::recorded`] tells whether it holds them all).
    pub fn into_bytes_and_brackets(mut self) -> (Bytes, text::Brackets) {
        let brackets = std::mem::take(&mut self.brackets);
        if let Some(frame) = self.frame.take() {
            return (frame, brackets);
        }
        // What is left for `drop` is an empty `Vec`, which is not kept.
        (self.kept.wrap(std::mem::take(&mut self.bytes)), brackets)
    }
}

impl Drop for Buffer {
    /// Gives an unfinished body's buffer (its request refused or cancelled) back to
    /// [`KeptBuffers`], which keeps it only when the bytes it holds nearly fill it: a body
    /// refused whole, not one that stopped short.
    fn drop(&mut self) {
        self.kept.keep(std::mem::take(&mut self.bytes));
    }
}

impl Sink for Buffer {
    fn take_frame(&mut self, data: Bytes, reservation: &mut Reservation) -> Result<(), Refusal> {
        let whole = self.frame.is_none() && self.bytes.is_empty();
        if whole && self.declared == Some(data.len()) && data.len() <= reservation.bytes() {
            self.frame = Some(data);
            return Ok(());
        }
        self.take(&data, reservation)
    }

    fn take(&mut self, data: &[u8], reservation: &mut Reservation) -> Result<(), Refusal> {
        if let Some(frame) = self.frame.take() {
            // More than the declared length: what came first joins the buffer.
            self.take(&frame, reservation)?;
        }
        let buffer = &mut self.bytes;
        if buffer.capacity() == 0
            && let Some(length) = self.declared.filter(|&n| n <= reservation.bytes())
        {
            // A kept buffer up to an eighth larger than the body is taken when the
            // reservation covers it or can grow to.
            *buffer = self
                .kept
                .take(length, kept::largest_for(length), |capacity| {
                    capacity <= reservation.bytes() || reservation.set(capacity).is_ok()
                });
            // Best effort: if the address space is short, the buffer grows as bytes arrive.
            let _ = buffer.try_reserve_exact(length);
        }
        let total = buffer.len().saturating_add(data.len());
        if total > buffer.capacity() {
            let grown = total
                .max(buffer.capacity().saturating_mul(2))
                .min(self.limit)
                .max(total);
            if grown > reservation.bytes() {
                reservation.set(grown)?;
            }
            buffer.reserve_exact(grown - buffer.len());
        }
        if buffer.capacity() >= streaming::STREAMED_BYTES {
            streaming::append(buffer, data);
        } else {
            buffer.extend_from_slice(data);
        }
        if self.recording {
            self.brackets.record(data);
            let held = buffer.capacity().saturating_add(self.brackets.held_bytes());
            if held > reservation.bytes() {
                reservation.set(held)?;
            }
        }
        Ok(())
    }
}

/// Whether reading a body failed because its connection ended before the body did (the
/// client went away: hyper reads an early end of the stream, or a reset), rather than
/// because of what was sent.
fn client_closed(err: &axum::Error) -> bool {
    use std::io::ErrorKind;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::UnexpectedEof
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
            );
        }
        if let Some(hyper) = err.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled())
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// `err` and its causes, `: `-separated without repeats: hyper's "error reading a body from
/// connection" alone does not say that a chunk's size was not hexadecimal.
fn causes(err: &axum::Error) -> String {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(err) = cause {
        let more = err.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = err.source();
    }
    text
}

/// Reads the whole (possibly compressed) body into `sink`, refusing it past `limit`, and
/// gives its length.
pub async fn read(
    mut body: Body,
    limit: usize,
    sink: &mut impl Sink,
    reservation: &mut Reservation,
    metrics: &Metrics,
    counter: Option<&BodyCounter>,
) -> Result<usize, ApiError> {
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| match client_closed(&err) {
            true => ApiError::ClientClosed,
            false => ApiError::MalformedJson(format!("could not read the body: {}", causes(&err))),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if let Some(counter) = counter {
            counter.add(data.len());
        }
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        sink.take_frame(data, reservation)
            .map_err(|refusal| metrics.refused(refusal))?;
    }
    Ok(total)
}

/// Inflates (when `coding` says so, up to `limit`) and parses a body; `brackets`, recorded as
/// it arrived ([`Buffer::recording_brackets`]), serve only when the record holds all of the
/// body's and it is not compressed. CPU work, to run off the runtime when large.
pub fn decode<T: TensorFields>(
    coding: Option<Coding>,
    bytes: &[u8],
    brackets: &text::Brackets,
    limit: usize,
) -> Result<T, ApiError> {
    match coding {
        Some(coding) => coding::inflate(coding, bytes, limit).and_then(|body| parse(&body)),
        None => parse_recorded(bytes, brackets.recorded(bytes.len())),
    }
}

/// Bytes a body of `len` bytes may inflate to under `limit`: itself when not compressed.
pub fn inflated_size(coding: Option<Coding>, len: usize, limit: usize) -> usize {
    match coding {
        Some(_) => coding::inflate_bound(len, limit),
        None => len,
    }
}

/// Parses a body that must be one JSON object: its tensor fields read ahead of serde when
/// it can ([`read_ahead`]), else all of it by serde, whose error is then the answer.
pub fn parse<T: TensorFields>(bytes: &[u8]) -> Result<T, ApiError> {
    parse_recorded(bytes, None)
}

/// [`parse`], with the record of all the body's brackets when there is one.
fn parse_recorded<T: TensorFields>(
    bytes: &[u8],
    brackets: Option<text::Recorded<'_>>,
) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::MalformedJson(
            "the body must be a JSON object".to_owned(),
        ));
    }
    if let Some(parsed) = read_ahead::parse(bytes, brackets) {
        return Ok(parsed);
    }
    serde_json::from_slice(bytes).map_err(|err| ApiError::from_json(&err))
}

/// A request's body that, dropped before its end (the request answered before its body was
/// read), reads and discards what still arrives, so that the client reads the answer rather
/// than a connection reset (a lingering close, as nginx does): at the shared `pace`, at most
/// [`Linger::bytes`], and no later than the body's own deadline (`--body-timeout` from its
/// headers), so that a slow body answered 408 is not waited for again. A client that sent
/// `Expect: 100-continue` and was answered before its body was asked for never sends it:
/// nothing is read. Nor when [`MAX_DISCARDS`] bodies are being discarded already, or for a
/// request that arrived while the server drains (its connections close with their answers).
pub struct Lingering {
    body: Body,
    ended: bool,
    /// Whether the body was asked for (after which a client expecting `100 Continue` sends
    /// it).
    polled: bool,
    expects_continue: bool,
    linger: Option<Linger>,
}

/// How a [`Lingering`] body is discarded.
pub struct Linger {
    /// When the body's time is up.
    pub until: tokio::time::Instant,
    /// Bytes read at most.
    pub bytes: LingerBytes,
    /// The pace all discarded bodies share.
    pub pace: Arc<DiscardPace>,
}

impl Lingering {
    /// `body`, discarded as `linger` says if dropped early.
    pub fn new(body: Body, headers: &HeaderMap, linger: Option<Linger>) -> Self {
        let expects_continue = headers
            .get(header::EXPECT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.eq_ignore_ascii_case("100-continue"));
        Lingering {
            body,
            ended: false,
            polled: false,
            expects_continue,
            linger,
        }
    }
}

impl http_body::Body for Lingering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.polled = true;
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(None | Some(Err(_))) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if self.ended
            || http_body::Body::is_end_stream(&self.body)
            || (self.expects_continue && !self.polled)
        {
            return;
        }
        let Some(Linger { until, bytes, pace }) = self.linger.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(slot) = Arc::clone(&pace.slots).try_acquire_owned() else {
            return;
        };
        let mut body = std::mem::take(&mut self.body);
        runtime.spawn(async move {
            let _slot = slot;
            let drain = async {
                // The limit is read at each chunk: a layer that refused the request after
                // dropping its body (`middleware::cross_origin`) lowers it on the way out.
                let mut taken = 0usize;
                while let Some(Ok(frame)) = body.frame().await {
                    let len = frame.data_ref().map_or(0, Bytes::len);
                    taken = taken.saturating_add(len);
                    if taken > bytes.get() {
                        break;
                    }
                    pace.take(len).await;
                }
            };
            let _ = tokio::time::timeout_at(until, drain).await;
        });
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

/// The `Content-Length`, when present and readable.
pub fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_refused_body_is_discarded_to_its_declared_length_up_to_a_gib() {
        let limit = 1 << 20;
        assert_eq!(linger_bytes(None, limit), MIN_LINGER_BYTES);
        assert_eq!(linger_bytes(Some(100 << 20), limit), 100 << 20);
        assert_eq!(linger_bytes(Some(5 << 30), limit), MAX_LINGER_BYTES);
        assert_eq!(linger_bytes(Some(10), 128 << 20), 128 << 20);
    }

    #[test]
    fn a_body_refused_for_its_request_is_discarded_only_to_the_limit_whatever_it_declared() {
        let limit = 1 << 20;
        let declared = LingerBytes::new(Some(5 << 30), limit);
        assert_eq!(declared.clone().get(), MAX_LINGER_BYTES);
        declared.ignore_declared_length();
        assert_eq!(declared.get(), MIN_LINGER_BYTES);
        let small = LingerBytes::new(Some(10), 128 << 20);
        small.ignore_declared_length();
        assert_eq!(small.get(), 128 << 20);
    }

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

    #[tokio::test(start_paused = true)]
    async fn discarded_bodies_share_one_pace() {
        let pace = DiscardPace::default();
        let start = tokio::time::Instant::now();
        let second = DISCARD_BYTES_PER_SECOND as usize;
        pace.take(second).await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first chunk goes at once"
        );
        pace.take(second / 2).await;
        pace.take(1).await;
        let waited = start.elapsed().as_secs_f64();
        assert!((1.49..1.51).contains(&waited), "{waited}");
    }

    /// A body whose chunks are sent through the returned channel (one waits at most), in a
    /// [`Lingering`] that lingers when `linger` says so, for a request with `headers`.
    fn lingering_body(
        headers: &HeaderMap,
        linger: bool,
    ) -> (Lingering, tokio::sync::mpsc::Sender<Bytes>) {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
        let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((Ok::<_, std::io::Error>(chunk), receiver))
        });
        let linger = linger.then(|| Linger {
            until: tokio::time::Instant::now() + Duration::from_secs(5),
            bytes: LingerBytes {
                bytes: Arc::new(AtomicUsize::new(1000)),
                undeclared: 500,
            },
            pace: Arc::new(DiscardPace::default()),
        });
        (
            Lingering::new(Body::from_stream(chunks), headers, linger),
            sender,
        )
    }

    /// Whether `sender`'s chunks are still taken: `chunks` of 100 bytes go through.
    async fn taken(sender: &tokio::sync::mpsc::Sender<Bytes>, chunks: usize) -> bool {
        for _ in 0..chunks {
            let sent = sender.send(Bytes::from(vec![b' '; 100])).await;
            if sent.is_err() {
                return false;
            }
        }
        true
    }

    #[tokio::test]
    async fn a_body_dropped_unread_is_discarded_up_to_its_bytes_and_then_let_go() {
        let (body, sender) = lingering_body(&HeaderMap::new(), true);
        drop(body);
        // 1000 bytes are read: ten chunks and the one waiting; then the body is dropped.
        assert!(taken(&sender, 11).await);
        assert!(!taken(&sender, 2).await);
    }

    #[tokio::test]
    async fn a_body_whose_time_is_up_is_let_go_at_once() {
        let (mut body, sender) = lingering_body(&HeaderMap::new(), true);
        if let Some(linger) = &mut body.linger {
            linger.until = tokio::time::Instant::now() - Duration::from_millis(1);
        }
        drop(body);
        assert!(!taken(&sender, 3).await);
    }

    #[tokio::test]
    async fn a_body_is_let_go_at_once_when_not_lingering_or_never_asked_of_a_client_expecting_100_continue()
     {
        let (body, sender) = lingering_body(&HeaderMap::new(), false);
        drop(body);
        assert!(!taken(&sender, 1).await);
        let mut expecting = HeaderMap::new();
        expecting.insert(header::EXPECT, "100-continue".parse().unwrap());
        let (body, sender) = lingering_body(&expecting, true);
        drop(body);
        assert!(!taken(&sender, 1).await);
        // Once asked for, its body comes, and is discarded when dropped early.
        let (mut body, sender) = lingering_body(&expecting, true);
        sender.send(Bytes::from_static(b"[")).await.unwrap();
        assert!(body.frame().await.is_some());
        drop(body);
        assert!(taken(&sender, 3).await);
    }

    /// Any JSON object.
    type Anything = serde_json::Map<String, serde_json::Value>;

    impl TensorFields for Anything {
        const TENSORS: &'static [&'static str] = &[];
    }

    /// A memory budget of `budget` bytes, and buffers kept up to `kept_bytes`.
    fn budget_and_kept(
        budget: usize,
        kept_bytes: usize,
    ) -> (Arc<crate::admission::Admission>, Arc<KeptBuffers>) {
        let admission = crate::admission::Admission::new(1, 0, budget);
        let metrics = Arc::new(crate::metrics::Metrics::new(
            Arc::clone(&admission),
            Arc::new(crate::tables::Tables::new(None)),
        ));
        (admission, Arc::new(KeptBuffers::new(kept_bytes, metrics)))
    }

    /// The head of an uncompressed body of `declared` bytes (`None`: chunked).
    fn declaring(declared: Option<usize>) -> BodyHead {
        BodyHead {
            coding: None,
            declared,
        }
    }

    #[test]
    fn a_buffer_allocates_only_what_is_reserved_and_only_once_bytes_arrive() {
        let (admission, kept) = budget_and_kept(1 << 20, 0);
        let mut reservation = admission.reservation();
        let mut buffer = Buffer::new(declaring(Some(1000)), 1 << 20, &kept);
        assert_eq!(buffer.bytes.capacity(), 0, "nothing before the bytes");
        reservation.set(1000).unwrap();
        buffer.take(b"{}", &mut reservation).unwrap();
        assert_eq!(buffer.bytes.capacity(), 1000, "sized once, as declared");
        // Past the declared length, each growth is charged first.
        buffer.take(&[b' '; 1500], &mut reservation).unwrap();
        assert!(buffer.bytes.capacity() <= reservation.bytes());
        assert_eq!(buffer.into_bytes().len(), 1502);
    }

    #[test]
    fn a_body_in_one_frame_of_its_declared_length_is_kept_as_that_frame_not_copied() {
        let (admission, kept) = budget_and_kept(1 << 20, 0);
        let mut reservation = admission.reservation();
        reservation.set(5).unwrap();
        let frame = Bytes::from_static(b"{\"a\"}");
        let mut buffer = Buffer::new(declaring(Some(5)), 1 << 20, &kept);
        buffer.take_frame(frame.clone(), &mut reservation).unwrap();
        assert_eq!(buffer.bytes.capacity(), 0, "no buffer of its own");
        let bytes = buffer.into_bytes();
        assert_eq!(bytes.as_ptr(), frame.as_ptr(), "the frame itself");

        // Frames that are not the whole body are copied into one buffer, in order.
        for (first, declared) in [(&b"{\"a\""[..], Some(5)), (b"{\"a\"}", None)] {
            let mut buffer = Buffer::new(declaring(declared), 1 << 20, &kept);
            buffer
                .take_frame(Bytes::copy_from_slice(first), &mut reservation)
                .unwrap();
            buffer
                .take_frame(Bytes::from_static(b"}"), &mut reservation)
                .unwrap();
            assert!(buffer.frame.is_none());
            let bytes = buffer.into_bytes();
            assert_eq!(&bytes[..first.len()], first);
            assert_eq!(bytes.len(), first.len() + 1);
        }
        // One more frame after a whole one (a body longer than declared): both kept, in order.
        let mut buffer = Buffer::new(declaring(Some(5)), 1 << 20, &kept);
        buffer.take_frame(frame.clone(), &mut reservation).unwrap();
        buffer
            .take_frame(Bytes::from_static(b" "), &mut reservation)
            .unwrap();
        assert_eq!(&buffer.into_bytes()[..], b"{\"a\"} ");
    }

    #[test]
    fn a_large_body_streamed_into_its_buffer_is_the_bytes_sent_in_frames_of_any_size() {
        let (admission, kept) = budget_and_kept(64 << 20, 0);
        let body: Vec<u8> = (0..3 * streaming::STREAMED_BYTES as u32 / 2)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for declared in [Some(body.len()), None] {
            let mut reservation = admission.reservation();
            if declared.is_some() {
                reservation.set(body.len()).unwrap();
            }
            let mut buffer = Buffer::new(declaring(declared), 64 << 20, &kept);
            // Frames of uneven lengths, short and long, as a connection gives them.
            let mut at = 0;
            for length in [1, 7, 8192, 417_792, 33].into_iter().cycle() {
                if at == body.len() {
                    break;
                }
                let end = (at + length).min(body.len());
                buffer.take(&body[at..end], &mut reservation).unwrap();
                if declared.is_some() {
                    assert_eq!(buffer.bytes.capacity(), body.len(), "sized once, streamed");
                }
                at = end;
            }
            assert!(buffer.bytes.capacity() >= streaming::STREAMED_BYTES);
            assert!(buffer.into_bytes() == body, "declared {declared:?}");
        }
    }

    #[test]
    fn the_brackets_of_a_body_that_may_be_large_are_recorded_as_its_frames_are_copied() {
        let (admission, kept) = budget_and_kept(64 << 20, 0);
        let mut reservation = admission.reservation();
        reservation.set(8 << 20).unwrap();
        let row = format!("[{}]", vec!["-0.12345678901234567"; 64].join(", "));
        let body = format!("{{\"a\": [{}]}}", vec![row; 1000].join(", "));
        assert!(body.len() >= text::PARALLEL_BYTES);
        let start = body.find('[').unwrap();
        for declared in [Some(body.len()), None] {
            let mut buffer = Buffer::recording_brackets(declaring(declared), 64 << 20, &kept);
            for frame in body.as_bytes().chunks(65_536) {
                buffer
                    .take_frame(Bytes::copy_from_slice(frame), &mut reservation)
                    .unwrap();
            }
            let (bytes, brackets) = buffer.into_bytes_and_brackets();
            let recorded = brackets.recorded(bytes.len()).unwrap();
            let spanned = text::span_recorded(&bytes, start, recorded).unwrap();
            assert_eq!(Some(spanned), text::span(&bytes, start), "{declared:?}");
        }
        // Not those of a small body (its tensors are read as the walk meets them), of a
        // compressed one, of one kept as its one frame, or of one not made to record them.
        let small = &body.as_bytes()[..1000];
        let compressed = BodyHead {
            coding: Some(Coding::Gzip),
            declared: None,
        };
        for (head, bytes, frames, recording) in [
            (declaring(Some(1000)), small, 100, true),
            (compressed, body.as_bytes(), 65_536, true),
            (
                declaring(Some(body.len())),
                body.as_bytes(),
                body.len(),
                true,
            ),
            (declaring(None), body.as_bytes(), 65_536, false),
        ] {
            let mut buffer = if recording {
                Buffer::recording_brackets(head, 64 << 20, &kept)
            } else {
                Buffer::new(head, 64 << 20, &kept)
            };
            for frame in bytes.chunks(frames) {
                buffer
                    .take_frame(Bytes::copy_from_slice(frame), &mut reservation)
                    .unwrap();
            }
            let (bytes, brackets) = buffer.into_bytes_and_brackets();
            assert!(brackets.recorded(bytes.len()).is_none(), "{head:?}");
        }
        // A frame kept whole and one more after it: both recorded, in order.
        let mut buffer = Buffer::recording_brackets(declaring(Some(body.len())), 64 << 20, &kept);
        for frame in [body.as_bytes(), &b" "[..]] {
            buffer
                .take_frame(Bytes::copy_from_slice(frame), &mut reservation)
                .unwrap();
        }
        let (bytes, brackets) = buffer.into_bytes_and_brackets();
        let recorded = brackets.recorded(bytes.len()).unwrap();
        let spanned = text::span_recorded(&bytes, start, recorded);
        assert_eq!(spanned, text::span(&bytes, start));
        // The reservation was charged for the record too.
        assert!(reservation.bytes() >= bytes.len() + brackets.held_bytes());
    }

    #[test]
    fn a_kept_buffer_a_little_larger_is_taken_only_when_the_reservation_can_cover_it() {
        const BODY: usize = 4 << 20;
        const KEPT: usize = BODY + BODY / 10;
        for (budget, taken) in [(8 << 20, true), (BODY, false)] {
            let (admission, kept) = budget_and_kept(budget, 64 << 20);
            drop(kept.wrap(vec![0; KEPT]));
            let mut reservation = admission.reservation();
            reservation.set(BODY).unwrap();
            let mut buffer = Buffer::new(declaring(Some(BODY)), 8 << 20, &kept);
            buffer.take(b"{", &mut reservation).unwrap();
            if taken {
                assert_eq!(buffer.bytes.capacity(), KEPT);
                assert_eq!(reservation.bytes(), KEPT, "charged for the whole buffer");
                assert_eq!(kept.kept_bytes(), 0);
            } else {
                assert_eq!(buffer.bytes.capacity(), BODY, "a buffer of its own");
                assert_eq!(reservation.bytes(), BODY);
                assert_eq!(kept.kept_bytes(), KEPT, "the kept buffer stays kept");
            }
        }
    }

    #[test]
    fn a_kept_buffer_the_reservation_cannot_cover_is_freed_when_it_would_have_been() {
        const BODY: usize = 4 << 20;
        const KEPT: usize = BODY + BODY / 10;
        let (admission, kept) = budget_and_kept(BODY, 64 << 20);
        drop(kept.wrap(vec![0; KEPT]));
        let kept_at = Instant::now();
        // Any new time given to the kept buffer from here on would be later than this.
        std::thread::sleep(Duration::from_millis(5));
        let mut reservation = admission.reservation();
        reservation.set(BODY).unwrap();
        let mut buffer = Buffer::new(declaring(Some(BODY)), 8 << 20, &kept);
        buffer.take(b"{", &mut reservation).unwrap();
        assert_eq!(kept.kept_bytes(), KEPT);
        kept.trim(kept_at + kept::KEPT_FOR);
        assert_eq!(
            kept.kept_bytes(),
            0,
            "not kept longer for having been looked at"
        );
    }

    #[test]
    fn a_chunked_body_s_buffer_is_kept_only_when_not_much_larger_than_the_body() {
        const MIB: usize = 1 << 20;
        // Grown by doubling: 1, 2, 4, 4 MiB for 1, 2, 3, 4 MiB of body.
        for (chunks, kept_after) in [(3, 0), (4, 4 * MIB)] {
            let (admission, kept) = budget_and_kept(1 << 30, 64 << 20);
            let mut reservation = admission.reservation();
            let mut buffer = Buffer::new(declaring(None), 64 << 20, &kept);
            for _ in 0..chunks {
                buffer.take(&[b' '; MIB], &mut reservation).unwrap();
            }
            assert_eq!(buffer.bytes.capacity(), 4 * MIB);
            drop(buffer.into_bytes());
            assert_eq!(kept.kept_bytes(), kept_after, "{chunks} MiB of body");
        }
    }

    #[test]
    fn a_refused_body_s_buffer_goes_back_to_be_kept_once_and_a_short_one_does_not() {
        const BODY: usize = 4 << 20;
        let (admission, kept) = budget_and_kept(1 << 30, 64 << 20);
        let mut reservation = admission.reservation();
        reservation.set(BODY).unwrap();
        // A body that stopped short of its declared length: its buffer is mostly untouched
        // pages, not worth pushing kept buffers out for.
        let mut buffer = Buffer::new(declaring(Some(BODY)), 8 << 20, &kept);
        buffer.take(b"{", &mut reservation).unwrap();
        drop(buffer);
        assert_eq!(kept.kept_bytes(), 0, "a body cut short leaves nothing kept");
        // A body that arrived whole and was then refused or cancelled.
        let mut buffer = Buffer::new(declaring(Some(BODY)), 8 << 20, &kept);
        buffer.take(&[b' '; BODY], &mut reservation).unwrap();
        let first = buffer.bytes.as_ptr();
        drop(buffer);
        assert_eq!(kept.kept_bytes(), BODY, "a refused body's buffer is kept");
        // The next body of that length takes it, and gives it back once, through its bytes.
        let mut buffer = Buffer::new(declaring(Some(BODY)), 8 << 20, &kept);
        buffer.take(&[b' '; BODY], &mut reservation).unwrap();
        assert_eq!(buffer.bytes.as_ptr(), first);
        assert_eq!(kept.kept_bytes(), 0);
        let bytes = buffer.into_bytes();
        assert_eq!(kept.kept_bytes(), 0, "not while its bytes are in use");
        drop(bytes);
        assert_eq!(kept.kept_bytes(), BODY);
    }

    #[test]
    fn bodies_that_are_not_objects_are_malformed() {
        for body in ["[1]", "", "  ", "\u{feff}{}", "null"] {
            let got = parse::<Anything>(body.as_bytes());
            assert!(matches!(got, Err(ApiError::MalformedJson(_))), "{body:?}");
        }
    }
}
