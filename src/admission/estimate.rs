//! Estimates of the memory a request holds, reserved against `--memory-budget-bytes` before
//! it is taken: [`parse`] while a body is inflated and parsed, [`job`] while a job runs and
//! its answer is written. They err on the high side: a refusal costs a retry, an
//! underestimate costs the process.

use crate::answer::{Encoding, float};
use crate::compute::Neighbours;

/// Parsing and checking a body hold it and what it decodes to together: at most this many
/// bytes per body byte besides the body itself. The most is about 9: index lists, where
/// `0,` becomes an 8-byte index in a buffer that may have doubled, plus the copy of the
/// body's fields other than tensors that serde parses (`crate::body`); `1,` in a tensor
/// becomes a 4-byte float, `"",` in a list of ids 4 bytes. `tests/parse_memory.rs` measures
/// the bodies that cost the most per byte against it.
pub const PARSE_BYTES_PER_BODY_BYTE: usize = 10;

/// Bytes the fields of an inference request's JSON other than its inputs' data may hold
/// while they are read (`crate::body::infer`): besides [`parse`], as they do not grow with
/// the body. Twice what two fields at their limit were measured to take (`tests/parse_memory.rs`).
pub const INFER_FIELDS: usize = 2 << 20;

/// Bytes parsing an (inflated) body of `len` bytes takes besides the received body: its
/// inflated copy (when it was compressed) and what it decodes to.
pub fn parse(len: usize) -> usize {
    len.saturating_mul(PARSE_BYTES_PER_BODY_BYTE + 1)
}

/// Working memory of the kernels beyond their inputs and outputs: per-thread tiles of
/// scores and GEMM packing buffers, for the largest jobs.
const SCRATCH: usize = 32 << 20;

/// Bytes of a response per number: the `f32` result, plus its text with separators (at most
/// [`float::TEXT_BYTES`], a comma and, in rows of one number, their brackets) in a buffer
/// that may have doubled while growing (a large tensor's pieces are sized for the usual
/// text and held until sent); for base64, the result and its encoding in the body, with room
/// to spare.
fn per_number(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Json => 4 + 2 * (float::TEXT_BYTES + 3),
        Encoding::Base64 => 4 + 4 + 2 * 6,
    }
}

/// A job with `inputs` input floats, `work` multiply-adds and an output of `numbers`
/// numbers (a neighbour entry counts as two: index and score): the inputs, one working copy
/// of them in `f64` (the largest the kernels make), the output and the scratch (which small
/// jobs do not fill).
pub fn job(inputs: usize, work: usize, numbers: usize, encoding: Encoding) -> usize {
    inputs
        .saturating_mul(4 + 8)
        .saturating_add(numbers.saturating_mul(per_number(encoding)))
        .saturating_add(SCRATCH.min(work.saturating_mul(4)))
}

/// Bytes a result of neighbours ([`Neighbours`], one per set) holds besides its entries
/// ([`job`]'s numbers), for `sets` sets of `rows` rows each: per set, its lists and the
/// smallest buffers they allocate (four elements each), and per row, both lists' offsets in
/// buffers that may have doubled. Sets of one row and one entry hold about this much each,
/// several times their numbers (`tests/job_memory.rs`).
pub fn neighbour_lists(sets: usize, rows: usize) -> usize {
    const PER_SET: usize = size_of::<Neighbours>() + 4 * 4 * size_of::<usize>();
    const PER_ROW: usize = 2 * 2 * size_of::<usize>();
    sets.saturating_mul(PER_SET)
        .saturating_add(sets.saturating_mul(rows).saturating_mul(PER_ROW))
}

/// Bytes an answer listing `entries` ids takes for them besides [`job`]'s numbers, the
/// longest id's JSON text `longest_text` bytes (`crate::tensor::json_text_bytes`): each id's
/// text and comma, in a buffer that may have doubled while growing.
pub fn listed_ids(entries: usize, longest_text: usize) -> usize {
    entries.saturating_mul(longest_text.saturating_add(1).saturating_mul(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_grow_with_inputs_and_outputs_and_saturate() {
        let small = job(10, 100, 10, Encoding::Json);
        assert!(small < 1024, "{small}");
        assert!(job(10, 1 << 40, 10, Encoding::Json) >= SCRATCH);
        assert!(job(1_000_000, 100, 10, Encoding::Json) > small + 4_000_000);
        assert!(
            job(10, 100, 1_000_000, Encoding::Json) > job(10, 100, 1_000_000, Encoding::Base64)
        );
        assert_eq!(job(usize::MAX, 1, 1, Encoding::Json), usize::MAX);
    }

    #[test]
    fn listed_ids_cover_their_texts_with_commas_twice_over() {
        let ids = ["sku-1", "a\u{1}b", "\"q\""];
        let text = serde_json::to_string(&ids).unwrap();
        let longest = ids
            .iter()
            .map(|id| crate::tensor::json_text_bytes(id))
            .max();
        let reserved = listed_ids(ids.len(), longest.unwrap());
        assert!(reserved >= 2 * text.len(), "{reserved} for {text}");
        assert_eq!(listed_ids(usize::MAX, 3), usize::MAX);
    }
}
