//! Table references: `{"table": NAME}` (every row), `{"table": NAME, "rows": [3, 7]}` or
//! `{"table": NAME, "ids": ["u3", "u7"]}`, accepted by every embedding field in place of a
//! tensor. What a table holds is the server's (`crate::tables`); here they are only read.

use crate::tensor::Strings;

/// Rows of a server-side table, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    /// The table's name.
    pub table: String,
    /// Which of its rows, in this order.
    pub pick: Pick,
}

/// Which rows of a table a reference takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Every row, in order.
    All,
    /// These rows (indices), repeats allowed; at least one.
    Rows(Vec<usize>),
    /// The rows with these ids, repeats allowed; at least one.
    Ids(Strings),
}
