//! Native answer bodies (`application/json` bytes): [`encode`] writes an [`Outcome`] through
//! [`dense`] for scores and matrices or [`neighbours`] for top-k / threshold lists; float
//! tensors as nested JSON arrays or base64 tensor objects.
//!
//! Bodies are serialised straight from the result buffers; nothing goes through
//! `serde_json::Value`. A large dense tensor's text is formatted in pieces on the compute
//! threads and sent as those pieces, never copied into one buffer.

use base64::Engine;
use ndarray::{ArrayView, Dimension};
use rayon::prelude::*;
use serde::Serialize;
use serde::ser::{Error as _, SerializeMap, Serializer};

use super::outcome::{Computed, Outcome};
use super::{Encoding, float};
use crate::compute::{Metric, Neighbours};
use crate::error::ApiError;
use crate::tensor::BASE64;

/// A dense float tensor written in the requested encoding.
pub struct Dense<'a> {
    encoding: Encoding,
    shape: &'a [usize],
    data: &'a [f32],
}

impl<'a> Dense<'a> {
    /// `data` is row-major with `shape`.
    pub fn new(encoding: Encoding, shape: &'a [usize], data: &'a [f32]) -> Self {
        Dense {
            encoding,
            shape,
            data,
        }
    }
}

impl Serialize for Dense<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.encoding {
            Encoding::Json => Nested {
                shape: self.shape,
                data: self.data,
            }
            .serialize(serializer),
            Encoding::Base64 => {
                let mut text = Vec::new();
                append_base64(&mut text, self.data).map_err(S::Error::custom)?;
                let text = std::str::from_utf8(&text).map_err(S::Error::custom)?;
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry("dtype", "float32")?;
                map.serialize_entry("shape", self.shape)?;
                map.serialize_entry("data", text)?;
                map.end()
            }
        }
    }
}

/// Row-major data as nested arrays following `shape`.
struct Nested<'a> {
    shape: &'a [usize],
    data: &'a [f32],
}

impl Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.shape {
            [] | [_] => serializer.collect_seq(self.data),
            [outer, inner @ ..] => {
                // Rows may be empty (`[n, 0]`), so walk the outer axis rather than the data.
                let stride = inner.iter().product::<usize>();
                serializer.collect_seq((0..*outer).map(|i| {
                    Nested {
                        shape: inner,
                        data: self
                            .data
                            .get(i * stride..(i + 1) * stride)
                            .unwrap_or_default(),
                    }
                }))
            }
        }
    }
}

/// The tables an answer read, as `{"name": "version"}` (no entry when it read none).
#[derive(Debug, Clone, Copy, Default)]
pub struct Versions<'a>(pub &'a [(String, String)]);

impl Versions<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Versions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, version)| (name, version)))
    }
}

/// Serialises `outcome` as the native answer, in the pieces to send one after another.
pub fn encode(outcome: &Outcome) -> Result<Vec<Vec<u8>>, ApiError> {
    let tables = Versions(&outcome.tables);
    match &outcome.result {
        Computed::Dense { field, values } => dense(
            outcome.metric,
            outcome.encoding,
            *field,
            values.shape(),
            values.view(),
            tables,
        ),
        Computed::Neighbours { sets, batched, ids } => {
            let ids = ids.as_ref().map(|(field, ids)| {
                let ids: IdOf = ids.as_ref();
                (*field, ids)
            });
            let listed = Listed { ids, tables };
            neighbours(outcome.metric, outcome.encoding, sets, *batched, listed).map(|b| vec![b])
        }
    }
}

/// Which field of a dense body holds the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseField {
    /// `scores`: one score per pair.
    Scores,
    /// `matrix`: every row against every row.
    Matrix,
}

/// Serialises a dense result: `values` written row-major under `shape` (which may drop
/// leading axes of length 1), with the versions of the `tables` it read.
///
/// The body is `{"metric", "shape", "scores" | "matrix", "tables"?}`, written field by field
/// so that a large tensor's text can be formatted in pieces on the compute threads
/// ([`write_nested`]).
pub fn dense<D: Dimension>(
    metric: Metric,
    encoding: Encoding,
    field: DenseField,
    shape: &[usize],
    values: ArrayView<f32, D>,
    tables: Versions,
) -> Result<Vec<Vec<u8>>, ApiError> {
    let values = values.as_standard_layout();
    let data = values
        .as_slice()
        .ok_or_else(|| ApiError::Internal("a standard-layout array is not contiguous".into()))?;
    let mut out = Written::default();
    let text = &mut out.text;
    text.extend_from_slice(b"{\"metric\":");
    write(text, metric.name())?;
    text.extend_from_slice(b",\"shape\":");
    write(text, shape)?;
    text.extend_from_slice(match field {
        DenseField::Scores => b",\"scores\":",
        DenseField::Matrix => b",\"matrix\":",
    });
    match encoding {
        Encoding::Json => write_nested(&mut out, shape, data),
        Encoding::Base64 => {
            // What `Dense` writes, without escaping a string that never needs it.
            text.extend_from_slice(b"{\"dtype\":\"float32\",\"shape\":");
            write(text, shape)?;
            text.extend_from_slice(b",\"data\":\"");
            append_base64(text, data).map_err(ApiError::Internal)?;
            text.extend_from_slice(b"\"}");
        }
    }
    let text = &mut out.text;
    if !tables.is_empty() {
        text.extend_from_slice(b",\"tables\":");
        write(text, &tables)?;
    }
    text.push(b'}');
    Ok(out.pieces())
}

/// A body being written in pieces: those done, and the text being appended to, which
/// follows them.
#[derive(Default)]
pub(super) struct Written {
    done: Vec<Vec<u8>>,
    /// The text being appended to.
    pub(super) text: Vec<u8>,
}

impl Written {
    /// Sends `piece` as it is, after what was written so far.
    fn piece(&mut self, piece: Vec<u8>) {
        self.done.push(std::mem::take(&mut self.text));
        self.done.push(piece);
    }

    /// The body's pieces, in order; none empty.
    pub(super) fn pieces(mut self) -> Vec<Vec<u8>> {
        self.done.push(self.text);
        self.done.retain(|piece| !piece.is_empty());
        self.done
    }
}

/// Numbers from which [`write_nested`] formats a tensor in pieces on the compute threads:
/// below it (about 2 MB of text), handing pieces to the pool costs more than it saves.
pub const PARALLEL_NUMBERS: usize = 1 << 17;

/// Bytes of text a number usually takes: what a piece's buffer is sized for (with its comma,
/// a score in [-1, 1] such as `-0.12345679,` takes about 12). A number takes at most
/// [`float::TEXT_BYTES`] and its comma, and rows of one number add their brackets, so a
/// buffer of unusual numbers is regrown; the estimate's bytes per number
/// ([`crate::admission::estimate`]) allow for that.
const USUAL_TEXT_BYTES_PER_NUMBER: usize = 16;

/// Pieces per thread a large tensor's text is cut into, so that a thread that finishes
/// early finds another.
const PIECES_PER_THREAD: usize = 4;

/// Appends `data` (row-major, of `shape`) to `out` as nested arrays: the text serde writes,
/// formatted in pieces of whole rows on the compute threads when the tensor is large, and
/// sent as those pieces.
pub(super) fn write_nested(out: &mut Written, shape: &[usize], data: &[f32]) {
    let rows = shape.first().copied().unwrap_or(0);
    let threads = rayon::current_num_threads();
    let stride = data.len().checked_div(rows).unwrap_or(0);
    if data.len() < PARALLEL_NUMBERS || threads < 2 || rows < 2 || stride == 0 {
        append_nested(&mut out.text, shape, data, &mut Scratch::default());
        return;
    }
    let per_piece = rows.div_ceil(threads * PIECES_PER_THREAD);
    let pieces: Vec<Vec<u8>> = data
        .par_chunks(per_piece * stride)
        .map(|piece| {
            let mut piece_shape = shape.to_vec();
            piece_shape[0] = piece.len() / stride;
            // And the room `append_numbers` makes past the text of the last numbers.
            let capacity =
                piece.len() * USUAL_TEXT_BYTES_PER_NUMBER + NUMBERS_AT_A_TIME * NUMBER_ROOM;
            let mut text = Vec::with_capacity(capacity);
            append_nested(&mut text, &piece_shape, piece, &mut Scratch::default());
            text
        })
        .collect();
    // Each piece is `[row,…]`: the first one's `[` opens the tensor and the last one's `]`
    // closes it; between pieces, a `[` becomes the comma and a `]` goes.
    let last = pieces.len().saturating_sub(1);
    for (i, mut piece) in pieces.into_iter().enumerate() {
        if i > 0
            && let Some(open) = piece.first_mut()
        {
            *open = b',';
        }
        if i < last {
            piece.pop();
        }
        out.piece(piece);
    }
}

/// Appends `data` (row-major, of `shape`) to `out` as nested arrays: the text serde writes
/// for [`Nested`] (each float its shortest form, `null` when not finite), without a call
/// through serde's writer for every number and comma. `scratch` is [`append_numbers`]'s, made
/// once for all the rows.
fn append_nested(out: &mut Vec<u8>, shape: &[usize], data: &[f32], scratch: &mut Scratch) {
    out.push(b'[');
    match shape {
        [] | [_] => append_numbers(out, data, scratch),
        [outer, inner @ ..] => {
            // Rows may be empty (`[n, 0]`), so walk the outer axis rather than the data.
            let stride = inner.iter().product::<usize>();
            for i in 0..*outer {
                if i > 0 {
                    out.push(b',');
                }
                let row = data.get(i * stride..(i + 1) * stride).unwrap_or_default();
                append_nested(out, inner, row, scratch);
            }
        }
    }
    out.push(b']');
}

/// Numbers [`append_numbers`] makes room for at a time: few enough that the room made past
/// the text stays small and in cache.
const NUMBERS_AT_A_TIME: usize = 256;

/// The decimals of a run of numbers, which [`append_numbers`] works out before writing them:
/// made once per tensor or piece, not once per row, since rows may be short (`[n, 1]`).
struct Scratch([float::Decimal; NUMBERS_AT_A_TIME]);

impl Default for Scratch {
    fn default() -> Self {
        Self([float::Decimal::default(); NUMBERS_AT_A_TIME])
    }
}

/// Bytes of room [`append_numbers`] makes for a number: what [`float::write_decimal`] needs
/// to write it, which has room for the comma after its text.
const NUMBER_ROOM: usize = float::ROOM_BYTES;
const _: () = assert!(NUMBER_ROOM > float::TEXT_BYTES);

/// Appends `values` to `out`, separated by commas: each its shortest text (zmij's,
/// [`float`]), `null` when not finite.
///
/// The run's shortest decimals are worked out first, eight or four at a time where the
/// processor can ([`float::decimals`]). Room for the longest text is made for the run at
/// once; each number is written into its room in fixed-size stores and the next one starts
/// where its text ends, and what is left of the room is cut off. No call copies or fills a
/// number's bytes one by one.
fn append_numbers(out: &mut Vec<u8>, values: &[f32], Scratch(decimals): &mut Scratch) {
    for (run, values) in values.chunks(NUMBERS_AT_A_TIME).enumerate() {
        if run > 0 {
            out.push(b',');
        }
        float::decimals(values, decimals);
        let start = out.len();
        out.resize(start + values.len() * NUMBER_ROOM, 0);
        let text = &mut out[start..];
        let mut end = 0;
        for (&value, &decimal) in values.iter().zip(decimals.iter()) {
            let Some(room) = text
                .get_mut(end..)
                .and_then(|room| room.first_chunk_mut::<NUMBER_ROOM>())
            else {
                // Never: each number takes at most `TEXT_BYTES + 1` of its `NUMBER_ROOM`.
                debug_assert!(false, "no room left for a number");
                break;
            };
            let length = if value.is_finite() {
                float::write_decimal(value, decimal, room)
            } else {
                room[..4].copy_from_slice(b"null");
                4
            };
            room[length] = b',';
            end += length + 1;
        }
        // Without the last comma.
        out.truncate(start + end.saturating_sub(1));
    }
}

/// Floats encoded at a time by [`append_base64`]: whole groups of three bytes, so that the
/// chunks' texts join without padding.
const BASE64_FLOATS: usize = 3 * 1024;

/// Bytes [`append_base64`] leaves free after the text, for the rest of the body.
const BASE64_SLACK: usize = 256;

/// Appends the standard base64 of `data`'s little-endian bytes to `out`, a chunk at a time:
/// no byte copy of the tensor is made.
fn append_base64(out: &mut Vec<u8>, data: &[f32]) -> Result<(), String> {
    let start = out.len();
    let text_len = data
        .len()
        .checked_mul(4)
        .and_then(|bytes| base64::encoded_len(bytes, true))
        .ok_or("a tensor too large to encode")?;
    // Room for what follows the text too (its quote, the body's end), so that the body is
    // not regrown, and copied, for its last bytes.
    out.reserve(text_len + BASE64_SLACK);
    out.resize(start + text_len, 0);
    let mut bytes = [0u8; BASE64_FLOATS * 4];
    let mut at = start;
    for chunk in data.chunks(BASE64_FLOATS) {
        let bytes = &mut bytes[..chunk.len() * 4];
        let (slots, _) = bytes.as_chunks_mut::<4>();
        for (slot, value) in slots.iter_mut().zip(chunk) {
            *slot = value.to_le_bytes();
        }
        at += BASE64
            .encode_slice(bytes, &mut out[at..])
            .map_err(|err| format!("could not encode the response: {err}"))?;
    }
    Ok(())
}

/// Appends `value` as JSON to `out`.
pub(super) fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), ApiError> {
    serde_json::to_writer(out, value)
        .map_err(|err| ApiError::Internal(format!("could not encode the response: {err}")))
}

/// Where the ids of listed rows go in a neighbours answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdsField {
    /// `items` (user-item: the items' ids).
    Items,
    /// `ids` (matrix: the ids of `b`'s rows, or `a`'s against itself).
    Ids,
}

/// The id of each listed index.
pub trait IdLookup: Sync {
    /// The id of index `index` (empty if it has none).
    fn id_of(&self, index: usize) -> &str;
}

impl IdLookup for crate::tensor::Strings {
    fn id_of(&self, index: usize) -> &str {
        self.get(index)
    }
}

impl IdLookup for crate::tables::Embeddings {
    fn id_of(&self, index: usize) -> &str {
        self.id(index).unwrap_or_default()
    }
}

/// The ids of listed indices.
pub type IdOf<'a> = &'a dyn IdLookup;

/// What a neighbours answer carries besides indices and scores.
#[derive(Clone, Copy, Default)]
pub struct Listed<'a> {
    /// The ids of the listed rows, and where they go.
    pub ids: Option<(IdsField, IdOf<'a>)>,
    /// The tables read and their versions.
    pub tables: Versions<'a>,
}

/// Serialises top-k / threshold results for one or (`batched`) several sets.
///
/// When every row holds the same number of entries the body has a `shape` and `scores` is one
/// tensor; otherwise rows differ in length, there is no `shape`, and in base64 each row's
/// scores are a tensor of their own. `listed.ids` adds `items` or `ids`, the ids of the listed
/// indices; `listed.tables` the versions of the tables read.
pub fn neighbours(
    metric: Metric,
    encoding: Encoding,
    sets: &[Neighbours],
    batched: bool,
    listed: Listed,
) -> Result<Vec<u8>, ApiError> {
    let rows = || sets.iter().flat_map(|s| s.indices.rows());
    let width = rows().next().map_or(0, <[usize]>::len);
    let shape = rows().all(|row| row.len() == width).then(|| {
        let n = sets.first().map_or(0, |s| s.indices.len());
        let mut shape = vec![n, width];
        if batched {
            shape.insert(0, sets.len());
        }
        shape
    });
    let flat: Vec<f32> = match shape {
        Some(_) => sets
            .iter()
            .flat_map(|s| s.scores.rows().flatten().copied())
            .collect(),
        None => Vec::new(),
    };
    let part = |part| PerSet {
        sets,
        batched,
        part,
    };
    let body = NeighboursBody {
        metric: metric.name(),
        shape: shape.as_deref(),
        indices: part(Listing::Indices),
        scores: match &shape {
            Some(shape) => Scores::Dense(Dense::new(encoding, shape, &flat)),
            None => Scores::Ragged(part(Listing::Scores(encoding))),
        },
        items: match listed.ids {
            Some((IdsField::Items, id_of)) => Some(part(Listing::Ids(id_of))),
            _ => None,
        },
        ids: match listed.ids {
            Some((IdsField::Ids, id_of)) => Some(part(Listing::Ids(id_of))),
            _ => None,
        },
        tables: listed.tables,
    };
    to_response(&body)
}

#[derive(Serialize)]
struct NeighboursBody<'a> {
    metric: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    shape: Option<&'a [usize]>,
    indices: PerSet<'a>,
    scores: Scores<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<PerSet<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ids: Option<PerSet<'a>>,
    #[serde(skip_serializing_if = "Versions::is_empty")]
    tables: Versions<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Scores<'a> {
    Dense(Dense<'a>),
    Ragged(PerSet<'a>),
}

/// Which list of a neighbours result to write.
#[derive(Clone, Copy)]
enum Listing<'a> {
    Indices,
    Scores(Encoding),
    Ids(IdOf<'a>),
}

/// One part of every set's rows, nested one level deeper when `batched`.
struct PerSet<'a> {
    sets: &'a [Neighbours],
    batched: bool,
    part: Listing<'a>,
}

impl Serialize for PerSet<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rows_of = |set| SetRows {
            set,
            part: self.part,
        };
        match self.sets {
            [set] if !self.batched => rows_of(set).serialize(serializer),
            sets => serializer.collect_seq(sets.iter().map(rows_of)),
        }
    }
}

/// One part of one set's rows.
struct SetRows<'a> {
    set: &'a Neighbours,
    part: Listing<'a>,
}

impl Serialize for SetRows<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let set = self.set;
        match self.part {
            Listing::Indices => serializer.collect_seq(set.indices.rows()),
            Listing::Scores(encoding) => {
                serializer.collect_seq(set.scores.rows().map(|row| Vector(encoding, row)))
            }
            Listing::Ids(ids) => {
                serializer.collect_seq(set.indices.rows().map(|row| IdRow(ids, row)))
            }
        }
    }
}

/// The ids of one row's indices.
struct IdRow<'a>(IdOf<'a>, &'a [usize]);

impl Serialize for IdRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let IdRow(id_of, row) = *self;
        serializer.collect_seq(row.iter().map(|&i| id_of.id_of(i)))
    }
}

/// A rank-1 float tensor in the requested encoding.
struct Vector<'a>(Encoding, &'a [f32]);

impl Serialize for Vector<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Dense::new(self.0, &[self.1.len()], self.1).serialize(serializer)
    }
}

/// Writes `body` as the bytes of an `application/json` response.
fn to_response<T: Serialize>(body: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(body)
        .map_err(|err| ApiError::Internal(format!("could not encode the response: {err}")))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    /// `data` of `shape` as nested arrays by [`append_nested`] (after other text, which it
    /// must leave alone) and by serde ([`Nested`]).
    fn written_by_hand_and_by_serde(shape: &[usize], data: &[f32]) -> (Vec<u8>, Vec<u8>) {
        let mut by_hand = b"x".to_vec();
        append_nested(&mut by_hand, shape, data, &mut Scratch::default());
        assert_eq!(by_hand.first(), Some(&b'x'));
        let by_serde = serde_json::to_vec(&Nested { shape, data }).unwrap();
        (by_hand.split_off(1), by_serde)
    }

    #[test]
    fn nested_arrays_keep_empty_rows() {
        let json = |shape: &[usize], data: &[f32]| {
            serde_json::to_string(&Dense::new(Encoding::Json, shape, data)).unwrap()
        };
        assert_eq!(json(&[2, 0], &[]), "[[],[]]");
        assert_eq!(json(&[1, 2, 0], &[]), "[[[],[]]]");
        assert_eq!(
            json(&[2, 2], &[1.0, 2.0, 3.0, 4.0]),
            "[[1.0,2.0],[3.0,4.0]]"
        );
        assert_eq!(json(&[3], &[0.5, 1.0, 2.0]), "[0.5,1.0,2.0]");
    }

    #[test]
    fn nested_arrays_written_by_hand_are_the_text_serde_writes() {
        let values = [
            0.0,
            -0.0,
            1.0,
            -0.1,
            1e-45,
            1.17e-38,
            3.4028235e38,
            -123_456.79,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.33333334,
        ];
        for shape in [
            vec![],
            vec![0],
            vec![5],
            vec![0, 3],
            vec![2, 0],
            vec![1, 2, 0],
            vec![3, 4],
            vec![2, 3, 2],
            vec![1, 1, 1, 12],
        ] {
            let len: usize = shape.iter().product();
            let data: Vec<f32> = values.iter().copied().cycle().take(len).collect();
            let (by_hand, by_serde) = written_by_hand_and_by_serde(&shape, &data);
            assert_eq!(
                String::from_utf8_lossy(&by_hand),
                String::from_utf8_lossy(&by_serde),
                "{shape:?}"
            );
        }
    }

    #[test]
    fn a_large_tensor_formatted_in_pieces_is_the_text_serde_writes() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for shape in [
            vec![PARALLEL_NUMBERS + 7],
            vec![2, PARALLEL_NUMBERS / 2 + 1],
            vec![1001, 131],
            vec![7, 151, 131],
        ] {
            let len: usize = shape.iter().product();
            let data: Vec<f32> = (0..len).map(|i| (i as f32).sin() * 1e-3).collect();
            let mut out = Written::default();
            pool.install(|| write_nested(&mut out, &shape, &data));
            let pieces = out.pieces();
            assert!(pieces.len() >= 2, "{shape:?} is written in pieces");
            let pieces = pieces.concat();
            let whole = serde_json::to_vec(&Nested {
                shape: &shape,
                data: &data,
            })
            .unwrap();
            assert!(pieces == whole, "{shape:?}");
        }
    }

    #[test]
    fn rows_written_in_runs_of_room_are_the_text_serde_writes() {
        // The longest texts (16 bytes, `-0.0000010000001`), exponents, non-finite values and
        // any bits, in rows around the run length (the 256th number is one of the longest).
        let longest = -1.000_000_1e-6f32;
        assert_eq!(
            zmij::Buffer::new().format_finite(longest),
            "-0.0000010000001"
        );
        let mut state = 0x9E37_79B9u32;
        let mut next_bits = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for len in [
            1,
            NUMBERS_AT_A_TIME - 1,
            NUMBERS_AT_A_TIME,
            NUMBERS_AT_A_TIME + 1,
            3 * NUMBERS_AT_A_TIME + 7,
        ] {
            let data: Vec<f32> = (0..len)
                .map(|i| match i % 5 {
                    0 => longest,
                    1 => f32::from_bits(next_bits()),
                    2 => -1.234_568e12,
                    3 if i % 3 == 0 => f32::NAN,
                    _ => -1.234_567_9e-38,
                })
                .collect();
            for shape in [vec![len], vec![1, len], vec![len, 1]] {
                let (by_hand, by_serde) = written_by_hand_and_by_serde(&shape, &data);
                assert_eq!(
                    String::from_utf8_lossy(&by_hand),
                    String::from_utf8_lossy(&by_serde),
                    "{shape:?}"
                );
            }
        }
    }

    #[test]
    fn base64_tensors_written_in_chunks_are_the_base64_of_their_bytes() {
        for len in [
            0,
            1,
            2,
            3,
            BASE64_FLOATS - 1,
            BASE64_FLOATS,
            2 * BASE64_FLOATS + 5,
        ] {
            let data: Vec<f32> = (0..len).map(|i| (i as f32).cos() * 1e3).collect();
            let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            let mut text = b"x".to_vec();
            append_base64(&mut text, &data).unwrap();
            assert_eq!(
                text[1..],
                *STANDARD.encode(&bytes).as_bytes(),
                "{len} floats"
            );
            if len == 0 {
                continue;
            }
            let body = dense(
                Metric::Dot,
                Encoding::Base64,
                DenseField::Scores,
                &[len],
                ndarray::ArrayView1::from(&data[..]),
                Versions::default(),
            )
            .unwrap();
            let [body] = <[Vec<u8>; 1]>::try_from(body).unwrap();
            assert!(
                body.capacity() < body.len() + 2 * BASE64_SLACK,
                "not regrown"
            );
            let tensor = serde_json::to_string(&Dense::new(Encoding::Base64, &[len], &data));
            let want = format!(
                r#"{{"metric":"dot","shape":[{len}],"scores":{}}}"#,
                tensor.unwrap()
            );
            assert_eq!(String::from_utf8(body).unwrap(), want, "{len} floats");
        }
    }

    #[test]
    fn a_dense_body_is_what_a_serde_struct_would_write() {
        let matrix = ndarray::arr2(&[[1.0f32, -0.5], [0.25, 2.0]]);
        let versions = [("items".to_owned(), "abc".to_owned())];
        let body = dense(
            Metric::Cosine,
            Encoding::Json,
            DenseField::Matrix,
            &[2, 2],
            matrix.view(),
            Versions(&versions),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(body.concat()).unwrap(),
            r#"{"metric":"cosine","shape":[2,2],"matrix":[[1.0,-0.5],[0.25,2.0]],"tables":{"items":"abc"}}"#
        );
    }

    /// Answers of every shape and value read back, and held to the text serde writes for the
    /// same nested vectors: dense bodies (nested arrays or base64; small, or large and written
    /// in pieces on the compute threads) and neighbours bodies. Run with more cases by
    /// `PROPTEST_CASES=3000 cargo test properties` (CI does).
    ///
    /// Which of the float writer's kernels works out the decimals is the processor's
    /// ([`float::decimals`] takes the widest it has), but the widest hands the numbers left
    /// over after its lanes to the narrower ones: with AVX-512, eight at a time, the four to
    /// seven left by the AVX2 kernel, the last one to three (and runs shorter than four) one
    /// at a time. Rows of every length, in runs of up to 256, so reach every kernel this
    /// processor can run.
    pub(in crate::answer) mod properties {
        use std::collections::BTreeMap;
        use std::sync::LazyLock;

        use base64::engine::general_purpose::STANDARD;
        use ndarray::{ArrayViewD, IxDyn};
        use proptest::collection::vec;
        use proptest::prelude::*;
        use serde::Deserialize;
        use serde_json::value::RawValue;

        use super::*;
        use crate::tensor::Strings;

        /// Pools of one to four threads, made once: a large tensor is written in pieces on
        /// two threads or more.
        pub(in crate::answer) static POOLS: LazyLock<Vec<rayon::ThreadPool>> =
            LazyLock::new(|| {
                (1..=4)
                    .map(|threads| {
                        rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap()
                    })
                    .collect()
            });

        /// Floats the writer treats apart: zeros of both signs, the least and greatest
        /// subnormals, the least normal, the extremes, a longest text, and both sides of the
        /// switches between fixed and exponent notation.
        const EDGES: [f32; 14] = [
            0.0,
            -0.0,
            1e-45,
            1.175_494_2e-38,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            -1.000_000_1e-6,
            1e-6,
            9.999_999e-7,
            999_999_900_000.0,
            1e13,
            0.1,
            1.0,
        ];

        /// `value` when finite, else the float of its bits without the exponent's top bit.
        fn finite(value: f32) -> f32 {
            if value.is_finite() {
                value
            } else {
                f32::from_bits(value.to_bits() & !(1 << 30))
            }
        }

        /// The float `steps` floats up from `value` (down when negative).
        fn stepped(value: f32, steps: i32) -> f32 {
            let step = |v: f32| {
                if steps > 0 {
                    v.next_up()
                } else {
                    v.next_down()
                }
            };
            (0..steps.unsigned_abs()).fold(value, |v, _| step(v))
        }

        /// A finite float of every kind: an edge or a few steps from one, a subnormal, a
        /// power of ten, a score, or any finite bits; either sign.
        pub(in crate::answer) fn value() -> impl Strategy<Value = f32> {
            prop_oneof![
                3 => any::<u32>().prop_map(|bits| finite(f32::from_bits(bits))),
                1 => prop::sample::select(EDGES.to_vec()),
                1 => (prop::sample::select(EDGES.to_vec()), -3i32..=3)
                    .prop_map(|(edge, steps)| finite(stepped(edge, steps))),
                1 => (1u32..0x0080_0000, any::<bool>())
                    .prop_map(|(bits, negative)| f32::from_bits(bits | u32::from(negative) << 31)),
                1 => (-45i32..=38, any::<bool>()).prop_map(|(exponent, negative)| {
                    let sign = if negative { "-" } else { "" };
                    format!("{sign}1e{exponent}").parse::<f32>().unwrap()
                }),
                2 => -1f32..=1f32,
            ]
        }

        /// A tensor of rank 1 to 3 and its values: rows of every length (empty ones too, and
        /// runs past the 256 numbers worked out at a time), below [`PARALLEL_NUMBERS`].
        fn tensor() -> impl Strategy<Value = (Vec<usize>, Vec<f32>)> {
            prop_oneof![
                (0usize..300).prop_map(|n| vec![n]),
                (0usize..12, 0usize..40).prop_map(|(n, m)| vec![n, m]),
                (0usize..5, 0usize..5, 0usize..12).prop_map(|(n, m, k)| vec![n, m, k]),
            ]
            .prop_flat_map(|shape| {
                let len = shape.iter().product::<usize>();
                (Just(shape), vec(value(), len))
            })
        }

        /// A shape of at least [`PARALLEL_NUMBERS`] values and two rows or more: written in
        /// pieces.
        pub(in crate::answer) fn large_shape() -> impl Strategy<Value = Vec<usize>> {
            let at_least = |rows: usize| PARALLEL_NUMBERS.div_ceil(rows);
            prop_oneof![
                (0usize..3000).prop_map(|more| vec![PARALLEL_NUMBERS + more]),
                (2usize..400, 0usize..50).prop_map(move |(n, more)| vec![n, at_least(n) + more]),
                (2usize..40, 1usize..8, 0usize..20).prop_map(move |(n, m, more)| vec![
                    n,
                    m,
                    at_least(n * m) + more
                ]),
            ]
        }

        /// `len` floats of every kind from `seed` (too many to draw one by one), those of
        /// `palette` among them.
        pub(in crate::answer) fn filled(len: usize, seed: u64, palette: &[f32]) -> Vec<f32> {
            let mut state = seed | 1;
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let bits = (state >> 32) as u32;
                    match state % 4 {
                        0 => palette[bits as usize % palette.len()],
                        1 => finite(f32::from_bits(bits)),
                        _ => bits as f32 / u32::MAX as f32 * 2.0 - 1.0,
                    }
                })
                .collect()
        }

        /// Tables read and their versions (any text), as an answer lists them.
        pub(in crate::answer) fn tables() -> impl Strategy<Value = BTreeMap<String, String>> {
            let name = prop::sample::select(vec!["items".to_owned(), "users".to_owned()]);
            prop::collection::btree_map(name, ".{0,6}", 0..=2)
        }

        pub(in crate::answer) fn metric() -> impl Strategy<Value = Metric> {
            prop::sample::select(vec![
                Metric::Cosine,
                Metric::Dot,
                Metric::Euclidean,
                Metric::Manhattan,
            ])
        }

        /// A base64 tensor object, as serde writes it.
        #[derive(Serialize)]
        struct Base64Tensor {
            dtype: &'static str,
            shape: Vec<usize>,
            data: String,
        }

        impl Base64Tensor {
            fn of(shape: Vec<usize>, data: &[f32]) -> Self {
                let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
                Base64Tensor {
                    dtype: "float32",
                    shape,
                    data: STANDARD.encode(bytes),
                }
            }
        }

        /// A float tensor as serde writes it: nested vectors, or a base64 object.
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Floats {
            One(Vec<f32>),
            Two(Vec<Vec<f32>>),
            Three(Vec<Vec<Vec<f32>>>),
            Base64(Base64Tensor),
        }

        /// `n` rows of `m` of `data`'s values.
        fn rows(data: &[f32], n: usize, m: usize) -> Vec<Vec<f32>> {
            (0..n).map(|i| data[i * m..(i + 1) * m].to_vec()).collect()
        }

        /// `data` (row-major, of `shape`, rank 1 to 3) as nested vectors.
        fn nested_vectors(shape: &[usize], data: &[f32]) -> Floats {
            match *shape {
                [n, m, k] => Floats::Three(
                    (0..n)
                        .map(|i| rows(&data[i * m * k..(i + 1) * m * k], m, k))
                        .collect(),
                ),
                [n, m] => Floats::Two(rows(data, n, m)),
                _ => Floats::One(data.to_vec()),
            }
        }

        /// Whether `value` is arrays nested as `shape`, numbers innermost.
        fn nested_as(value: &serde_json::Value, shape: &[usize]) -> bool {
            match shape {
                [] => value.is_number(),
                [len, inner @ ..] => value.as_array().is_some_and(|items| {
                    items.len() == *len && items.iter().all(|item| nested_as(item, inner))
                }),
            }
        }

        /// Where `written` and `want` first differ, with the bytes around it.
        pub(in crate::answer) fn difference(written: &[u8], want: &[u8]) -> String {
            let at = written
                .iter()
                .zip(want)
                .position(|(w, v)| w != v)
                .unwrap_or(written.len().min(want.len()));
            let around = |text: &[u8]| {
                String::from_utf8_lossy(&text[at.saturating_sub(40)..(at + 40).min(text.len())])
                    .into_owned()
            };
            format!("byte {at}: {:?}, serde {:?}", around(written), around(want))
        }

        /// The bits of the numbers of `text` (JSON arrays of numbers), in order, each read by
        /// the standard library (rounding once, correctly).
        pub(in crate::answer) fn numbers(
            text: &str,
        ) -> Result<Vec<u32>, std::num::ParseFloatError> {
            text.split(['[', ']', ','])
                .filter(|number| !number.is_empty())
                .map(|number| number.parse::<f32>().map(f32::to_bits))
                .collect()
        }

        /// The bits of the floats of `tensor`, a base64 tensor object, checked to be of
        /// `shape`.
        fn decoded(tensor: &serde_json::Value, shape: &[usize]) -> Result<Vec<u32>, TestCaseError> {
            prop_assert_eq!(tensor["dtype"].as_str(), Some("float32"));
            prop_assert_eq!(&tensor["shape"], &serde_json::json!(shape));
            let bytes = STANDARD.decode(tensor["data"].as_str().unwrap_or_default())?;
            let (floats, rest) = bytes.as_chunks::<4>();
            prop_assert!(rest.is_empty());
            Ok(floats.iter().map(|&b| u32::from_le_bytes(b)).collect())
        }

        /// Checks that `bits` are those of `data`, saying where they first differ.
        pub(in crate::answer) fn assert_bits(
            bits: &[u32],
            data: &[f32],
        ) -> Result<(), TestCaseError> {
            let want: Vec<u32> = data.iter().map(|v| v.to_bits()).collect();
            let differ = bits.iter().zip(&want).position(|(b, w)| b != w);
            prop_assert!(
                bits.len() == want.len() && differ.is_none(),
                "{} values read, {} written; value {:?} read as {:?}",
                bits.len(),
                want.len(),
                differ,
                differ.map(|at| (f32::from_bits(bits[at]), f32::from_bits(want[at])))
            );
            Ok(())
        }

        /// Checks `text`, a float tensor written as `encoding`: it is JSON nested as `shape`
        /// (or a base64 object of `shape`), and its values are `data` bit for bit.
        fn assert_floats(
            text: &str,
            encoding: Encoding,
            shape: &[usize],
            data: &[f32],
        ) -> Result<(), TestCaseError> {
            let parsed: serde_json::Value = serde_json::from_str(text)?;
            let bits = match encoding {
                Encoding::Json => {
                    prop_assert!(nested_as(&parsed, shape), "not nested as {:?}", shape);
                    numbers(text)?
                }
                Encoding::Base64 => decoded(&parsed, shape)?,
            };
            assert_bits(&bits, data)
        }

        /// Whether `a` and `b` are arrays nested alike, numbers innermost.
        fn nested_alike(a: &serde_json::Value, b: &serde_json::Value) -> bool {
            match (a.as_array(), b.as_array()) {
                (Some(a), Some(b)) => {
                    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| nested_alike(a, b))
                }
                (None, None) => a.is_number() && b.is_number(),
                _ => false,
            }
        }

        /// The bits of the floats of base64 tensors of one row each, in arrays nested as
        /// `indices`.
        fn decoded_rows(
            value: &serde_json::Value,
            indices: &serde_json::Value,
        ) -> Result<Vec<u32>, TestCaseError> {
            match (value.as_array(), indices.as_array()) {
                (Some(values), Some(indices)) if values.len() == indices.len() => {
                    let mut bits = Vec::new();
                    for (value, indices) in values.iter().zip(indices) {
                        bits.extend(decoded_rows(value, indices)?);
                    }
                    Ok(bits)
                }
                (None, Some(row)) if row.iter().all(serde_json::Value::is_number) => {
                    decoded(value, &[row.len()])
                }
                _ => Err(TestCaseError::fail(format!(
                    "{value} is not listed as {indices}"
                ))),
            }
        }

        /// A dense body as it reads back: its tensor's text left as it is.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct DenseRead<'a> {
            metric: String,
            shape: Vec<usize>,
            #[serde(borrow, default)]
            scores: Option<&'a RawValue>,
            #[serde(borrow, default)]
            matrix: Option<&'a RawValue>,
            #[serde(default)]
            tables: BTreeMap<String, String>,
        }

        /// A dense body as serde writes it.
        #[derive(Serialize)]
        struct DenseWant<'a> {
            metric: &'static str,
            shape: &'a [usize],
            #[serde(skip_serializing_if = "Option::is_none")]
            scores: Option<Floats>,
            #[serde(skip_serializing_if = "Option::is_none")]
            matrix: Option<Floats>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            tables: &'a BTreeMap<String, String>,
        }

        /// What [`dense`] writes of `data` (of `shape`), on a pool of `threads` threads,
        /// checked: it parses, its fields are those given, its tensor holds `data` bit for
        /// bit in `shape`, and it is the text serde writes of the same nested vectors.
        /// Gives the body's pieces.
        fn assert_dense_body(
            metric: Metric,
            encoding: Encoding,
            field: DenseField,
            shape: &[usize],
            data: &[f32],
            tables: &BTreeMap<String, String>,
            threads: usize,
        ) -> Result<Vec<Vec<u8>>, TestCaseError> {
            let versions: Vec<(String, String)> =
                tables.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
            let view = ArrayViewD::from_shape(IxDyn(shape), data)?;
            let pieces = POOLS[threads - 1]
                .install(|| dense(metric, encoding, field, shape, view, Versions(&versions)))?;
            let body = pieces.concat();
            let read: DenseRead = serde_json::from_slice(&body)?;
            prop_assert_eq!(read.metric, metric.name());
            prop_assert_eq!(&read.shape, shape);
            prop_assert_eq!(&read.tables, tables);
            let (named, other) = match field {
                DenseField::Scores => (read.scores, read.matrix),
                DenseField::Matrix => (read.matrix, read.scores),
            };
            prop_assert!(other.is_none(), "both fields");
            let named = named.ok_or_else(|| TestCaseError::fail(format!("no {field:?}")))?;
            assert_floats(named.get(), encoding, shape, data)?;
            let floats = match encoding {
                Encoding::Json => nested_vectors(shape, data),
                Encoding::Base64 => Floats::Base64(Base64Tensor::of(shape.to_vec(), data)),
            };
            let (scores, matrix) = match field {
                DenseField::Scores => (Some(floats), None),
                DenseField::Matrix => (None, Some(floats)),
            };
            let want = serde_json::to_vec(&DenseWant {
                metric: metric.name(),
                shape,
                scores,
                matrix,
                tables,
            })?;
            prop_assert!(body == want, "{}", difference(&body, &want));
            Ok(pieces)
        }

        fn field() -> impl Strategy<Value = DenseField> {
            prop::sample::select(vec![DenseField::Scores, DenseField::Matrix])
        }

        fn encoding() -> impl Strategy<Value = Encoding> {
            prop::sample::select(vec![Encoding::Json, Encoding::Base64])
        }

        proptest! {
            #[test]
            fn every_written_answer_reads_back_bit_for_bit_as_the_text_serde_writes(
                (shape, data) in tensor(),
                metric in metric(),
                encoding in encoding(),
                field in field(),
                tables in tables(),
                threads in 1usize..=4,
            ) {
                assert_dense_body(metric, encoding, field, &shape, &data, &tables, threads)?;
            }
        }

        /// Runs `test` on a case of `strategy` for every hundred that `PROPTEST_CASES` (or
        /// proptest's default) asks of the other properties, two at least: each case here
        /// writes and reads some 130,000 numbers. (Within `proptest!`, `PROPTEST_CASES` would
        /// set the number of cases whatever the configuration says.)
        pub(in crate::answer) fn run_large<S: Strategy>(
            strategy: S,
            test: impl Fn(S::Value) -> Result<(), TestCaseError>,
        ) {
            let cases = (ProptestConfig::default().cases / 100).max(2);
            let config = ProptestConfig {
                cases,
                ..ProptestConfig::default()
            };
            if let Err(err) = proptest::test_runner::TestRunner::new(config).run(&strategy, test) {
                panic!("{err}");
            }
        }

        #[test]
        fn every_answer_written_in_pieces_on_the_compute_threads_reads_back_bit_for_bit() {
            let cases = (
                large_shape(),
                any::<u64>(),
                vec(value(), 1..32),
                field(),
                2usize..=4,
            );
            run_large(cases, |(shape, seed, palette, field, threads)| {
                let data = filled(shape.iter().product(), seed, &palette);
                let tables = BTreeMap::new();
                let pieces = assert_dense_body(
                    Metric::Cosine,
                    Encoding::Json,
                    field,
                    &shape,
                    &data,
                    &tables,
                    threads,
                )?;
                // The fields before, two pieces of the tensor or more, and the end.
                prop_assert!(pieces.len() >= 4, "{} pieces", pieces.len());
                Ok(())
            });
        }

        /// A set's rows, each row's entries as (index, score).
        pub(in crate::answer) type Set = Vec<Vec<(usize, f32)>>;

        /// Each set's rows.
        pub(in crate::answer) type Sets = Vec<Set>;

        /// Neighbours of one set, or (`batched`) of up to three sets of the same number of
        /// rows, with indices below 20 (the ids there are): every row of one length, or
        /// each of its own.
        pub(in crate::answer) fn neighbour_sets() -> impl Strategy<Value = (bool, Sets)> {
            (
                any::<bool>(),
                1usize..=3,
                0usize..5,
                prop::option::of(0usize..6),
            )
                .prop_flat_map(|(batched, sets, rows, width)| {
                    let sets = if batched { sets } else { 1 };
                    let entries = width.map_or(0..6, |width| width..width + 1);
                    let row = vec((0usize..20, value()), entries);
                    (Just(batched), vec(vec(row, rows), sets))
                })
        }

        /// Lists as nested vectors: one set's, or (`batched`) each set's.
        #[derive(Serialize)]
        #[serde(untagged)]
        enum PerSetWant<T> {
            One(T),
            Each(Vec<T>),
        }

        fn per_set<T>(sets: &[Set], batched: bool, each: impl Fn(&Set) -> T) -> PerSetWant<T> {
            match sets {
                [set] if !batched => PerSetWant::One(each(set)),
                sets => PerSetWant::Each(sets.iter().map(each).collect()),
            }
        }

        /// The ids of the listed indices, each the `names` at its index.
        fn ids_of<'a>(
            sets: &[Set],
            batched: bool,
            names: &'a [String],
        ) -> PerSetWant<Vec<Vec<&'a str>>> {
            per_set(sets, batched, |set| {
                set.iter()
                    .map(|row| row.iter().map(|&(i, _)| names[i].as_str()).collect())
                    .collect()
            })
        }

        /// A neighbours body's scores as serde writes them.
        #[derive(Serialize)]
        #[serde(untagged)]
        enum ScoresWant {
            Nested(PerSetWant<Vec<Vec<f32>>>),
            Tensor(Base64Tensor),
            Rows(PerSetWant<Vec<Base64Tensor>>),
        }

        /// A neighbours body as serde writes it.
        #[derive(Serialize)]
        struct NeighboursWant<'a> {
            metric: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            shape: Option<Vec<usize>>,
            indices: PerSetWant<Vec<Vec<usize>>>,
            scores: ScoresWant,
            #[serde(skip_serializing_if = "Option::is_none")]
            items: Option<PerSetWant<Vec<Vec<&'a str>>>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            ids: Option<PerSetWant<Vec<Vec<&'a str>>>>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            tables: &'a BTreeMap<String, String>,
        }

        /// A neighbours body as it reads back: its scores' text left as it is.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NeighboursRead<'a> {
            metric: String,
            #[serde(default)]
            shape: Option<Vec<usize>>,
            indices: serde_json::Value,
            #[serde(borrow)]
            scores: &'a RawValue,
            #[serde(default)]
            items: Option<serde_json::Value>,
            #[serde(default)]
            ids: Option<serde_json::Value>,
            #[serde(default)]
            tables: BTreeMap<String, String>,
        }

        proptest! {
            #[test]
            fn every_neighbours_answer_reads_back_bit_for_bit_as_the_text_serde_writes(
                (batched, sets) in neighbour_sets(),
                metric in metric(),
                encoding in encoding(),
                ids in prop::option::of((any::<bool>(), vec(".{0,6}", 20))),
                tables in tables(),
            ) {
                let listed_sets: Vec<Neighbours> = sets
                    .iter()
                    .map(|set| Neighbours {
                        indices: set.iter().map(|row| row.iter().map(|&(i, _)| i)).collect(),
                        scores: set.iter().map(|row| row.iter().map(|&(_, s)| s)).collect(),
                    })
                    .collect();
                let names = ids.as_ref().map(|(items, names)| {
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    (*items, Strings::try_from(&names[..]).unwrap())
                });
                let versions: Vec<(String, String)> =
                    tables.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
                let listed = Listed {
                    ids: names.as_ref().map(|(items, names)| {
                        let field = if *items { IdsField::Items } else { IdsField::Ids };
                        (field, names as IdOf)
                    }),
                    tables: Versions(&versions),
                };
                let body = neighbours(metric, encoding, &listed_sets, batched, listed)?;
                let read: NeighboursRead = serde_json::from_slice(&body)?;

                // What the body must hold.
                let rows = sets.iter().flatten();
                let width = rows.clone().next().map_or(0, Vec::len);
                let shape = rows.clone().all(|row| row.len() == width).then(|| {
                    let rows = sets.first().map_or(0, Vec::len);
                    if batched { vec![sets.len(), rows, width] } else { vec![rows, width] }
                });
                let indices = per_set(&sets, batched, |set| {
                    set.iter().map(|row| row.iter().map(|&(i, _)| i).collect()).collect()
                });
                let scores_of = |set: &Set| -> Vec<Vec<f32>> {
                    set.iter().map(|row| row.iter().map(|&(_, s)| s).collect()).collect()
                };
                let all_scores: Vec<f32> = rows.flat_map(|row| row.iter().map(|&(_, s)| s)).collect();

                prop_assert_eq!(read.metric, metric.name());
                prop_assert_eq!(&read.shape, &shape);
                prop_assert_eq!(&read.indices, &serde_json::to_value(&indices)?);
                prop_assert_eq!(&read.tables, &tables);
                let (want_items, want_ids) = match &ids {
                    Some((true, names)) => (Some(ids_of(&sets, batched, names)), None),
                    Some((false, names)) => (None, Some(ids_of(&sets, batched, names))),
                    None => (None, None),
                };
                prop_assert_eq!(&read.items, &want_items.as_ref().map(serde_json::to_value).transpose()?);
                prop_assert_eq!(&read.ids, &want_ids.as_ref().map(serde_json::to_value).transpose()?);
                let scores = match (encoding, &shape) {
                    (Encoding::Json, _) => {
                        let text = read.scores.get();
                        let parsed: serde_json::Value = serde_json::from_str(text)?;
                        prop_assert!(nested_alike(&parsed, &read.indices), "{} {}", text, read.indices);
                        assert_bits(&numbers(text)?, &all_scores)?;
                        ScoresWant::Nested(per_set(&sets, batched, scores_of))
                    }
                    (Encoding::Base64, Some(shape)) => {
                        assert_floats(read.scores.get(), Encoding::Base64, shape, &all_scores)?;
                        ScoresWant::Tensor(Base64Tensor::of(shape.clone(), &all_scores))
                    }
                    (Encoding::Base64, None) => {
                        let parsed: serde_json::Value = serde_json::from_str(read.scores.get())?;
                        assert_bits(&decoded_rows(&parsed, &read.indices)?, &all_scores)?;
                        ScoresWant::Rows(per_set(&sets, batched, |set| {
                            scores_of(set)
                                .iter()
                                .map(|row| Base64Tensor::of(vec![row.len()], row))
                                .collect()
                        }))
                    }
                };
                let want = serde_json::to_vec(&NeighboursWant {
                    metric: metric.name(),
                    shape,
                    indices,
                    scores,
                    items: want_items,
                    ids: want_ids,
                    tables: &tables,
                })?;
                prop_assert!(body == want, "{}", difference(&body, &want));
            }
        }
    }
}
