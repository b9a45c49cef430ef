//! [`Brackets`]: where the `[` and `]` of a large body are, recorded as its bytes are copied
//! in, so that [`super::span_recorded`] finds its tensors' spans without a second pass over
//! it (for a body of tens of megabytes, a read of it all from memory).
//!
//! When to use what: a body's buffer records its brackets when it may be large and is read
//! as sent (not compressed: the record would be of the compressed bytes); the parser asks
//! [`Brackets::recorded`] for the record of the whole body and uses
//! [`super::span_recorded`] with it, or [`super::span`] when there is none.

/// Bytes of text per bracket the record holds at most, on average over the text so far (after
/// [`FIRST_BRACKETS`]): rows of 24 or more numbers as clients write them (about 20 bytes a
/// number) stay within it, so embeddings are recorded; a text with more brackets (short
/// rows, or many brackets and little else) is left to [`super::span`].
const BYTES_PER_BRACKET: usize = 256;

/// Brackets the record holds whatever the length so far, so that a text's first rows are not
/// held to the average.
const FIRST_BRACKETS: usize = 1024;

/// Where the `[` and `]` of a text are, recorded piece by piece as its bytes arrive
/// ([`Brackets::record`]), each piece while it is still in the cache.
///
/// Positions are `u32`. The record gives up (holds nothing, and [`Brackets::recorded`] says
/// so) at a bracket past 4 GiB of text, or when its brackets are more than one per
/// [`BYTES_PER_BRACKET`] bytes on average after the first [`FIRST_BRACKETS`]: it holds at most
/// 4 KiB and a 64th of the text, in a buffer of at most twice that ([`Brackets::held_bytes`]).
#[derive(Debug, Default)]
pub struct Brackets {
    /// The brackets' positions, in order.
    positions: Vec<u32>,
    /// Bytes of text recorded so far.
    recorded_bytes: usize,
    /// Whether the record was given up.
    given_up: bool,
}

impl Brackets {
    /// Records the brackets of `piece`, the text's next bytes.
    pub fn record(&mut self, piece: &[u8]) {
        if self.given_up {
            return;
        }
        let offset = self.recorded_bytes;
        self.recorded_bytes = offset.saturating_add(piece.len());
        for found in memchr::memchr2_iter(b'[', b']', piece) {
            let held = self.positions.len();
            match u32::try_from(offset + found) {
                Ok(position) if held < FIRST_BRACKETS + position as usize / BYTES_PER_BRACKET => {
                    self.positions.push(position);
                }
                _ => {
                    self.positions = Vec::new();
                    self.given_up = true;
                    return;
                }
            }
        }
    }

    /// Bytes the record's buffer takes.
    pub fn held_bytes(&self) -> usize {
        self.positions.capacity() * size_of::<u32>()
    }

    /// The record, if it holds every bracket of a text of `len` bytes: all of it was recorded
    /// (and the record was not given up).
    pub fn recorded(&self, len: usize) -> Option<Recorded<'_>> {
        (!self.given_up && self.recorded_bytes == len).then_some(Recorded(&self.positions))
    }
}

/// The positions of every bracket of a text, in order: a [`Brackets`] record known to be
/// whole ([`Brackets::recorded`]), which is what [`super::span_recorded`] takes.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a>(&'a [u32]);

impl Recorded<'_> {
    /// The positions at or after `at`, in order.
    pub(super) fn after(self, at: usize) -> impl Iterator<Item = usize> {
        let first = self.0.partition_point(|&position| (position as usize) < at);
        self.0[first..].iter().map(|&position| position as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_more_brackets_than_embeddings_have_is_given_up() {
        // Rows of 24 numbers of about 20 bytes each are kept, whatever their count.
        let row = format!("[{}]", vec!["-0.12345678901234567"; 24].join(", "));
        let text = format!("[{}]", vec![row; 2000].join(", "));
        let mut brackets = Brackets::default();
        brackets.record(text.as_bytes());
        assert!(brackets.recorded(text.len()).is_some());
        // Rows of one number are not, past the first brackets.
        let text = format!("[{}]", vec!["[-0.12345678901234567]"; 2000].join(", "));
        let mut brackets = Brackets::default();
        for piece in text.as_bytes().chunks(1000) {
            brackets.record(piece);
        }
        assert!(brackets.recorded(text.len()).is_none());
        assert!(brackets.positions.is_empty());
        // Nor brackets alone.
        let mut brackets = Brackets::default();
        brackets.record(&[b'['; 2 * FIRST_BRACKETS]);
        assert!(brackets.recorded(2 * FIRST_BRACKETS).is_none());
    }
}
