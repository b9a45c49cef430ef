//! [`Ids`]: a table's external ids (user ids, SKUs), one per row, read from `NAME.ids.txt`.
//!
//! The ids are held in one string with an end offset per row ([`Strings`]), and looked up by
//! binary search over the rows sorted by id: about 8 bytes per row besides the ids' own
//! bytes, where a `HashMap<String, usize>` would take over 50.

use std::cmp::Ordering;

use crate::tensor::{Strings, json_text_bytes};

/// The ids of a table's rows, row for row, no two equal.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    /// Every row's id, in order.
    ids: Strings,
    /// Rows ordered by their id.
    sorted: Vec<u32>,
    /// The longest id's length in bytes.
    longest: usize,
    /// The longest id's JSON text in bytes ([`json_text_bytes`]).
    longest_text: usize,
}

impl Ids {
    /// Reads one id per line of `bytes` (UTF-8; `\n` or `\r\n` line ends; the last line end
    /// optional), expecting exactly `rows` of them, none empty, no two equal.
    pub fn parse(bytes: &[u8], rows: usize) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|err| {
            let line = bytes[..err.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            format!("line {}: not UTF-8", line + 1)
        })?;
        let body = text.strip_suffix('\n').unwrap_or(text);
        let mut ids = Ids::default();
        if rows == 0 && body.is_empty() {
            return Ok(ids);
        }
        if u32::try_from(rows).is_err() {
            return Err(format!("ids are supported for up to {} rows", u32::MAX));
        }
        // An id takes a byte and a line end at least.
        ids.ids = Strings::with_capacity(rows.min(body.len() / 2 + 1), body.len());
        for (at, line) in body.split('\n').enumerate() {
            let id = line.strip_suffix('\r').unwrap_or(line);
            if id.is_empty() {
                return Err(format!("line {}: empty id", at + 1));
            }
            if ids.ids.len() == rows {
                return Err(format!(
                    "has more ids than the table's {rows} rows (one id per line, one per row)"
                ));
            }
            ids.ids
                .push(id)
                .map_err(|err| format!("line {}: ids of {err}", at + 1))?;
            ids.longest = ids.longest.max(id.len());
            ids.longest_text = ids.longest_text.max(json_text_bytes(id));
        }
        if ids.ids.len() != rows {
            return Err(format!(
                "has {} ids, the table has {rows} rows (one id per line, one per row)",
                ids.ids.len()
            ));
        }
        let mut sorted: Vec<u32> = (0..rows as u32).collect();
        sorted.sort_unstable_by(|&x, &y| ids.id(x as usize).cmp(ids.id(y as usize)));
        ids.sorted = sorted;
        if let Some(pair) = ids
            .sorted
            .windows(2)
            .find(|pair| ids.id(pair[0] as usize) == ids.id(pair[1] as usize))
        {
            let (first, second) = (pair[0].min(pair[1]), pair[0].max(pair[1]));
            return Err(format!(
                "lines {} and {}: the same id twice",
                first + 1,
                second + 1
            ));
        }
        Ok(ids)
    }

    /// The id of row `row` (empty past the last row).
    pub fn id(&self, row: usize) -> &str {
        self.ids.get(row)
    }

    /// The row whose id is `id`.
    pub fn row(&self, id: &str) -> Option<usize> {
        self.sorted
            .binary_search_by(|&row| match self.id(row as usize).cmp(id) {
                Ordering::Equal => Ordering::Equal,
                other => other,
            })
            .ok()
            .map(|at| self.sorted[at] as usize)
    }

    /// The longest id's length in bytes.
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// The longest id's JSON text in bytes, as an answer lists it.
    pub fn longest_text(&self) -> usize {
        self.longest_text
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes the ids take.
    pub fn bytes(&self) -> usize {
        self.ids.bytes() + self.sorted.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_their_rows_and_back() {
        let ids = Ids::parse(b"u3\r\nsku-1\nzz\n", 3).unwrap();
        assert_eq!((ids.id(0), ids.id(1), ids.id(2)), ("u3", "sku-1", "zz"));
        assert_eq!(ids.row("sku-1"), Some(1));
        assert_eq!(ids.row("zz"), Some(2));
        assert_eq!(ids.row("u3"), Some(0));
        assert_eq!(ids.row("nope"), None);
        assert_eq!(ids.id(7), "");
        assert_eq!((ids.longest(), ids.longest_text()), (5, 7));
        // A tab is written `\t` and a control character `\u0001` in an answer.
        let odd = Ids::parse(b"a\tb\nsku-1\n\x01\x01\n", 3).unwrap();
        assert_eq!((odd.longest(), odd.longest_text()), (5, 14));
        assert!(
            Ids::parse(b"a\nb", 2).is_ok(),
            "the last line end is optional"
        );
    }

    #[test]
    fn a_wrong_count_a_duplicate_an_empty_line_or_bad_utf8_is_refused() {
        assert_eq!(
            Ids::parse(b"a\nb\n", 3).unwrap_err(),
            "has 2 ids, the table has 3 rows (one id per line, one per row)"
        );
        assert!(
            Ids::parse(b"a\nb\nc\n", 2)
                .unwrap_err()
                .starts_with("has more ids")
        );
        assert_eq!(
            Ids::parse(b"a\nb\na\n", 3).unwrap_err(),
            "lines 1 and 3: the same id twice"
        );
        assert_eq!(Ids::parse(b"a\n\nc\n", 3).unwrap_err(), "line 2: empty id");
        assert_eq!(
            Ids::parse(b"a\n\xff\n", 2).unwrap_err(),
            "line 2: not UTF-8"
        );
        assert!(Ids::parse(b"", 0).unwrap().is_empty());
    }
}
