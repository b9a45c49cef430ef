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
mod tests {
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
}
