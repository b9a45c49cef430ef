//! Nested JSON arrays streamed into one contiguous buffer.
//!
//! The first number fixes the rank; the first complete row at each depth fixes that axis'
//! length, and later rows are checked against it while they arrive, so a ragged or oversized
//! row fails at once without building `Vec<Vec<f32>>`.

use std::fmt::{self, Write};

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::json_kind::{kind, reject_kinds};
use super::{Tensor, TensorSeed};

struct State {
    seed: TensorSeed,
    data: Vec<f32>,
    rank: Option<usize>,
    /// Axis lengths once known (0 = not yet); index 0 is filled at the end.
    shape: Vec<usize>,
    /// The index being read at each depth.
    path: Vec<usize>,
}

impl State {
    /// An error about the element at `path[..depth]`.
    fn error<E: de::Error>(&self, depth: usize, message: fmt::Arguments) -> E {
        let mut at = String::from(self.seed.field);
        for i in &self.path[..depth.min(self.path.len())] {
            let _ = write!(at, "[{i}]");
        }
        E::custom(format_args!("{at}: {message}"))
    }

    fn max_rank(&self) -> usize {
        self.seed.ranks.iter().copied().max().unwrap_or(0)
    }

    fn expected(&self, depth: usize) -> &'static str {
        match self.rank {
            Some(rank) if rank == depth => "a number",
            Some(_) => "an array",
            None if depth >= self.max_rank() => "a number",
            None if self.seed.ranks.iter().all(|&rank| depth < rank) => "an array",
            None => "an array or a number",
        }
    }
}

/// Reads the outer array of a nested tensor whose `[` has been seen.
pub(super) fn decode<'de, A: SeqAccess<'de>>(seed: TensorSeed, seq: A) -> Result<Tensor, A::Error> {
    let mut state = State {
        seed,
        data: Vec::new(),
        rank: None,
        shape: Vec::new(),
        path: Vec::new(),
    };
    let rows = Level {
        state: &mut state,
        depth: 0,
    }
    .visit_seq(seq)?;
    let mut shape = state.shape;
    shape[0] = rows;
    Ok(Tensor {
        shape,
        data: state.data,
    })
}

/// One nesting level; its value is the number of elements it held.
struct Level<'s> {
    state: &'s mut State,
    depth: usize,
}

impl Level<'_> {
    fn number<E: de::Error>(self, value: f64) -> Result<usize, E> {
        let State { rank, seed, .. } = &*self.state;
        match *rank {
            None if !seed.ranks.contains(&self.depth) => return Err(seed.wrong_rank(self.depth)),
            None => {
                self.state.rank = Some(self.depth);
                self.state.shape = vec![0; self.depth];
            }
            Some(rank) if rank != self.depth => {
                return Err(self.state.error(
                    self.depth,
                    format_args!("expected an array, found a number"),
                ));
            }
            Some(_) => {}
        }
        let narrowed = value as f32;
        if !narrowed.is_finite() {
            return Err(self.state.error(
                self.depth,
                format_args!("value is outside the float32 range"),
            ));
        }
        self.state.data.push(narrowed);
        Ok(0)
    }
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.state.expected(self.depth))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let depth = self.depth;
        let state = self.state;
        match state.rank {
            Some(rank) if depth >= rank => {
                return Err(state.error(depth, format_args!("expected a number, found an array")));
            }
            None if depth >= state.max_rank() => {
                return Err(state.seed.wrong_rank(depth + 1));
            }
            _ => {}
        }
        let mut count = 0;
        state.path.push(0);
        loop {
            state.path[depth] = count;
            let child = Level {
                state: &mut *state,
                depth: depth + 1,
            };
            if seq.next_element_seed(child)?.is_none() {
                break;
            }
            count += 1;
            let known = if depth > 0 { state.shape[depth] } else { 0 };
            if known != 0 && count > known {
                let message = match state.rank == Some(depth + 1) {
                    true => format_args!("row has more than {known} values"),
                    false => format_args!("has more than {known} rows"),
                };
                return Err(state.error(depth, message));
            }
        }
        state.path.pop();
        if count == 0 {
            return Err(state.error(depth, format_args!("empty array")));
        }
        if depth > 0 {
            let known = state.shape[depth];
            if known == 0 {
                state.shape[depth] = count;
            } else if known != count {
                // A row of numbers, or a set of rows (as the Python client words it).
                let message = match state.rank == Some(depth + 1) {
                    true => format_args!("row has {count} values, expected {known}"),
                    false => format_args!("has {count} rows, expected {known}"),
                };
                return Err(state.error(depth, message));
            }
        }
        Ok(count)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<usize, E> {
        self.number(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
        self.number(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
        self.number(v as f64)
    }

    reject_kinds!(bool, str, unit, map);
}

impl Level<'_> {
    fn wrong_kind<E: de::Error>(&self, found: de::Unexpected) -> E {
        let expected = self.state.expected(self.depth);
        self.state.error(
            self.depth,
            format_args!("expected {expected}, found {}", kind(found)),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::tensor::test_support::decode;

    #[test]
    fn nested_arrays_decode_row_major() {
        let t = decode("[[1, 2.5], [-3, 4e-3]]", &[2]).unwrap();
        assert_eq!(t.shape(), &[2, 2]);
        assert_eq!(t.data, vec![1.0, 2.5, -3.0, 4e-3]);
    }

    #[test]
    fn a_rank_three_tensor_decodes_where_allowed() {
        let t = decode("[[[1], [2]], [[3], [4]], [[5], [6]]]", &[2, 3]).unwrap();
        assert_eq!(t.shape(), &[3, 2, 1]);
        assert_eq!(t.clone().into_matrix(), None);
        let sets = t.into_sets().unwrap();
        assert_eq!(sets.dim(), (3, 2, 1));
        assert_eq!(
            sets.iter().copied().collect::<Vec<f32>>(),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
    }

    #[test]
    fn ragged_rows_name_the_offending_row() {
        let err = decode("[[1, 2], [3, 4], [5]]", &[2]).unwrap_err();
        assert!(
            err.starts_with("a[2]: row has 1 values, expected 2"),
            "{err}"
        );
        let err = decode("[[1, 2], [3, 4, 5]]", &[2]).unwrap_err();
        assert!(err.starts_with("a[1]: row has more than 2 values"), "{err}");
    }

    #[test]
    fn a_set_of_another_number_of_rows_is_named_by_its_rows() {
        let err = decode("[[[1, 0], [1, 1]], [[1, 0]]]", &[2, 3]).unwrap_err();
        assert!(err.starts_with("a[1]: has 1 rows, expected 2"), "{err}");
        let err = decode("[[[1, 0]], [[1, 0], [1, 1]]]", &[2, 3]).unwrap_err();
        assert!(err.starts_with("a[1]: has more than 1 rows"), "{err}");
        let err = decode("[[[1, 0]], [[1]]]", &[2, 3]).unwrap_err();
        assert!(
            err.starts_with("a[1][0]: row has 1 values, expected 2"),
            "{err}"
        );
    }

    #[test]
    fn mixed_nesting_depths_are_a_rank_error() {
        let err = decode("[[1, 2], 3]", &[2]).unwrap_err();
        assert!(err.starts_with("a[1]: expected an array"), "{err}");
        let err = decode("[[1, [2]]]", &[2]).unwrap_err();
        assert!(err.starts_with("a[0][1]: expected a number"), "{err}");
    }

    #[test]
    fn wrong_rank_is_named() {
        let err = decode("[1, 2]", &[2]).unwrap_err();
        assert!(
            err.starts_with("a: expected a tensor of rank 2, found rank 1"),
            "{err}"
        );
    }

    #[test]
    fn empty_tensors_and_rows_are_refused() {
        assert!(
            decode("[]", &[2])
                .unwrap_err()
                .starts_with("a: empty array")
        );
        assert!(
            decode("[[1], []]", &[2])
                .unwrap_err()
                .starts_with("a[1]: empty array")
        );
    }

    #[test]
    fn numbers_beyond_float32_are_refused() {
        let err = decode("[[1, 1e39]]", &[2]).unwrap_err();
        assert!(
            err.starts_with("a[0][1]: value is outside the float32 range"),
            "{err}"
        );
    }

    #[test]
    fn strings_and_nulls_are_named_without_echoing_them() {
        let err = decode(r#"[[1, "secret"]]"#, &[2]).unwrap_err();
        assert!(
            err.starts_with("a[0][1]: expected a number, found a string"),
            "{err}"
        );
        assert!(!err.contains("secret"));
        let err = decode("[[null]]", &[2]).unwrap_err();
        assert!(
            err.starts_with("a[0][0]: expected a number, found null"),
            "{err}"
        );
    }
}
