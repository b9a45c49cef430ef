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
    /// How the request spelled it, which errors follow.
    pub spelled: Spelling,
}

/// How a request spells a table reference, so that an error names what the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spelling {
    /// `{"table": NAME, "rows": […]}` in the field (the native routes): `a.table`,
    /// `a.rows[1]`, `a.ids[0]`.
    #[default]
    Object,
    /// The parameter `NAME_table` and the input's data (the Open Inference Protocol):
    /// `a_table`, `a.data[1]`.
    Parameter,
}

impl Spelling {
    /// What names the table of the field `field`.
    pub fn table(self, field: &str) -> String {
        match self {
            Spelling::Object => format!("{field}.table"),
            Spelling::Parameter => format!("{field}_table"),
        }
    }

    /// What lists the rows (`key`: `rows` or `ids`) of the field `field`.
    pub fn list(self, field: &str, key: &str) -> String {
        match self {
            Spelling::Object => format!("{field}.{key}"),
            Spelling::Parameter => format!("{field}.data"),
        }
    }
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
