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
                return Err(state.error(depth, format_args!("row has more than {known} values")));
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
                return Err(state.error(
                    depth,
                    format_args!("row has {count} values, expected {known}"),
                ));
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
