//! [`Strings`]: a list of strings in one buffer, for ids (`item_ids`, `exclude` ids, rows of
//! a table picked by id, `BYTES` inputs, a table's own ids).
//!
//! Use it wherever a request or a table holds many short strings: a `Vec<String>` takes 24
//! bytes per string besides its text (48 while the vector doubles), 8 bytes per body byte
//! for `"",` in a JSON body; this takes 4 bytes per string (8 while doubling) besides the
//! text.

use std::fmt;

/// Strings, one after the other in one buffer, with where each ends.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Strings {
    /// Every string, one after the other.
    text: String,
    /// Where each string ends in `text`.
    ends: Vec<u32>,
}

/// The text of a [`Strings`] would pass its limit, `u32::MAX` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "more than {} bytes of text in all", u32::MAX)
    }
}

impl Strings {
    /// No strings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `count` strings of `bytes` bytes in all.
    pub fn with_capacity(count: usize, bytes: usize) -> Self {
        Strings {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(count),
        }
    }

    /// Appends `string`.
    pub fn push(&mut self, string: &str) -> Result<(), TooLong> {
        let end = self
            .text
            .len()
            .checked_add(string.len())
            .and_then(|end| u32::try_from(end).ok())
            .ok_or(TooLong)?;
        self.text.push_str(string);
        self.ends.push(end);
        Ok(())
    }

    /// Gives back what its buffers hold beyond their strings (see `Ragged::shrink_to_fit`).
    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }

    /// String `i` (empty past the last).
    pub fn get(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self
                .ends
                .get(i - 1)
                .map_or(self.text.len(), |&end| end as usize),
        };
        let end = self.ends.get(i).map_or(start, |&end| end as usize);
        self.text.get(start..end).unwrap_or_default()
    }

    /// Every string, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + Clone {
        (0..self.ends.len()).map(|i| self.get(i))
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The longest string's length in bytes.
    pub fn longest(&self) -> usize {
        self.iter().map(str::len).max().unwrap_or(0)
    }

    /// The longest string's JSON text in bytes ([`json_text_bytes`]).
    pub fn longest_text(&self) -> usize {
        self.iter().map(json_text_bytes).max().unwrap_or(0)
    }

    /// Bytes its two buffers hold, by capacity.
    pub fn bytes(&self) -> usize {
        self.text
            .capacity()
            .saturating_add(self.ends.capacity().saturating_mul(size_of::<u32>()))
    }
}

/// Bytes of `string`'s JSON text as serde_json writes it: its quotes, `"` and `\` and the
/// control characters with a short escape (`\n`, `\t`, …) two bytes each, the other
/// control characters six (`\u0001`), every other byte as it is. For what an answer listing
/// ids will take (`crate::admission::estimate::listed_ids`).
pub fn json_text_bytes(string: &str) -> usize {
    let escaped: usize = string
        .bytes()
        .map(|byte| match byte {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..0x20 => 5,
            _ => 0,
        })
        .sum();
    string.len() + 2 + escaped
}

impl TryFrom<&[&str]> for Strings {
    type Error = TooLong;

    fn try_from(strings: &[&str]) -> Result<Self, TooLong> {
        let mut all = Strings::new();
        for string in strings {
            all.push(string)?;
        }
        Ok(all)
    }
}

impl fmt::Debug for Strings {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_come_back_in_order_and_past_the_end_as_empty() {
        let mut strings = Strings::new();
        for s in ["u3", "", "sku-1", "é"] {
            strings.push(s).unwrap();
        }
        assert_eq!(strings.len(), 4);
        assert_eq!(strings.iter().collect::<Vec<_>>(), ["u3", "", "sku-1", "é"]);
        assert_eq!(
            (strings.get(1), strings.get(3), strings.get(4)),
            ("", "é", "")
        );
        assert_eq!(strings.longest(), 5);
        assert_eq!(strings.longest_text(), 7);
        assert_eq!(format!("{strings:?}"), r#"["u3", "", "sku-1", "é"]"#);
        assert!(Strings::new().is_empty());
        assert_eq!(Strings::new().get(0), "");
    }

    #[test]
    fn a_strings_json_text_is_as_long_as_the_text_serde_json_writes() {
        let mut every_byte: String = (0u8..0x80).map(char::from).collect();
        every_byte.push_str("é\u{7f}\u{2028}😀");
        for string in [
            "",
            "sku-1",
            "a\"b\\c",
            "\n\r\t\u{8}\u{c}",
            "\u{0}\u{1f}",
            &every_byte,
        ] {
            let written = serde_json::to_string(string).unwrap();
            assert_eq!(json_text_bytes(string), written.len(), "{written}");
        }
    }

    #[test]
    fn its_bytes_are_its_buffers_capacity() {
        let strings = Strings::with_capacity(10, 100);
        assert_eq!(strings.bytes(), 100 + 10 * 4);
    }
}
