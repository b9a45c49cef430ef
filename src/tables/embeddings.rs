//! [`Embeddings`]: what an embedding field stands for once its table reference, if any, is
//! resolved against the [`Catalog`] ([`Resolve`]).
//!
//! Inline rows are the request's own. A whole table is read in place with the norms it was
//! loaded with, never copied. Chosen rows (`rows` or `ids`) are gathered into the request's
//! own buffer when the job runs, after its memory is reserved, so a request holds
//! O(its inputs + output) and never O(table).

use std::sync::Arc;

use ndarray::{Array2, Array3, ArrayView2, Axis};

use super::{Catalog, Ids, Table};
use crate::compute::Operand;
use crate::tensor::{Input, Pick, TableRef, Tensor};

/// The vectors of one embedding field.
#[derive(Debug)]
pub enum Embeddings {
    /// Sent in the request: `sets × rows × dim` (one set for a matrix).
    Inline(Array3<f32>),
    /// Every row of a table, read in place.
    Table(Arc<Table>),
    /// Chosen rows of a table; `gathered` holds them once [`Embeddings::gather`] has run.
    Rows {
        /// The table.
        table: Arc<Table>,
        /// Its rows, in the order chosen.
        rows: Vec<usize>,
        /// Those rows' values, once gathered.
        gathered: Option<Array2<f32>>,
    },
}

/// Finds rows by id ([`Embeddings::finder`]).
#[derive(Debug)]
pub struct Finder<'a> {
    /// The table's ids.
    ids: &'a Ids,
    /// For chosen rows: the rows, and their positions ordered by row, then by position (so
    /// of a row chosen more than once the first position comes first).
    chosen: Option<(&'a [usize], Vec<usize>)>,
}

impl Finder<'_> {
    /// The positions whose row has id `id`: the first, and the second if the row was chosen
    /// more than once (`None` if no position has it).
    pub fn positions_of(&self, id: &str) -> Option<(usize, Option<usize>)> {
        let row = self.ids.row(id)?;
        match &self.chosen {
            None => Some((row, None)),
            Some((rows, order)) => {
                let first = order.partition_point(|&at| rows[at] < row);
                let holds = |at: &usize| rows[*at] == row;
                let at = order.get(first).copied().filter(holds)?;
                Some((at, order.get(first + 1).copied().filter(holds)))
            }
        }
    }
}

/// Why a field could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// The tables are still being loaded (the request may be retried).
    Loading,
    /// The reference is wrong; the message names the field.
    Invalid(String),
}

impl Embeddings {
    /// Sets (1 unless a rank-3 tensor was sent).
    pub fn sets(&self) -> usize {
        match self {
            Embeddings::Inline(values) => values.len_of(Axis(0)),
            _ => 1,
        }
    }

    /// Rows per set.
    pub fn rows(&self) -> usize {
        match self {
            Embeddings::Inline(values) => values.len_of(Axis(1)),
            Embeddings::Table(table) => table.rows(),
            Embeddings::Rows { rows, .. } => rows.len(),
        }
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        match self {
            Embeddings::Inline(values) => values.len_of(Axis(2)),
            Embeddings::Table(table) | Embeddings::Rows { table, .. } => table.dim(),
        }
    }

    /// Values the request itself holds (inline, or gathered): what its memory estimate
    /// counts. A whole table counts nothing.
    pub fn held_values(&self) -> usize {
        match self {
            Embeddings::Inline(values) => values.len(),
            Embeddings::Table(_) => 0,
            Embeddings::Rows { table, rows, .. } => rows.len().saturating_mul(table.dim()),
        }
    }

    /// The table read, if any.
    pub fn table(&self) -> Option<&Arc<Table>> {
        match self {
            Embeddings::Inline(_) => None,
            Embeddings::Table(table) | Embeddings::Rows { table, .. } => Some(table),
        }
    }

    /// Whether the rows have ids (they come from a table with an ids file).
    pub fn has_ids(&self) -> bool {
        self.table().is_some_and(|table| table.ids().is_some())
    }

    /// The id of row `row` (of these rows, not of the table), if they have ids.
    pub fn id(&self, row: usize) -> Option<&str> {
        match self {
            Embeddings::Inline(_) => None,
            Embeddings::Table(table) => Some(table.ids()?.id(row)),
            Embeddings::Rows { table, rows, .. } => Some(table.ids()?.id(*rows.get(row)?)),
        }
    }

    /// Finds these rows by id, when they have ids: for many ids, as chosen rows are
    /// ordered once rather than searched for each id.
    pub fn finder(&self) -> Option<Finder<'_>> {
        match self {
            Embeddings::Inline(_) => None,
            Embeddings::Table(table) => Some(Finder {
                ids: table.ids()?,
                chosen: None,
            }),
            Embeddings::Rows { table, rows, .. } => {
                let ids = table.ids()?;
                // In place (a stable sort would take as much again), first positions first.
                let mut order: Vec<usize> = (0..rows.len()).collect();
                order.sort_unstable_by_key(|&at| (rows[at], at));
                Some(Finder {
                    ids,
                    chosen: Some((rows, order)),
                })
            }
        }
    }

    /// Copies chosen rows out of their table (nothing to do for the other kinds).
    pub fn gather(&mut self) -> Result<(), &'static str> {
        if let Embeddings::Rows {
            table,
            rows,
            gathered: gathered @ None,
        } = self
        {
            let view = table.view().ok_or("a table's values are out of reach")?;
            *gathered = Some(view.select(Axis(0), rows));
        }
        Ok(())
    }

    /// Set `set` as one side of a comparison (with its norms when it is a whole table);
    /// `None` for a missing set or rows not yet gathered.
    pub fn operand(&self, set: usize) -> Option<Operand<'_>> {
        match self {
            Embeddings::Table(table) if set == 0 => table.operand(),
            _ => self.view(set).map(Operand::from),
        }
    }

    /// Every set of inline embeddings (`None` for table rows).
    pub fn inline_sets(&self) -> Option<ndarray::ArrayView3<'_, f32>> {
        match self {
            Embeddings::Inline(values) => Some(values.view()),
            _ => None,
        }
    }

    /// Set `set` as a view.
    pub fn view(&self, set: usize) -> Option<ArrayView2<'_, f32>> {
        match self {
            Embeddings::Inline(values) => {
                (set < values.len_of(Axis(0))).then(|| values.index_axis(Axis(0), set))
            }
            Embeddings::Table(table) if set == 0 => table.view(),
            Embeddings::Rows {
                gathered: Some(rows),
                ..
            } if set == 0 => Some(rows.view()),
            _ => None,
        }
    }
}

/// Resolves embedding fields against one catalog.
#[derive(Debug, Clone, Copy)]
pub struct Resolve<'a> {
    catalog: &'a Catalog,
    /// The most values chosen rows may gather.
    max_values: usize,
}

/// A table name as it may be repeated in an error: table names are short and plain, so
/// anything else was not one.
fn shown(name: &str) -> String {
    crate::echo::shown(name, 128)
}

/// An id as it may be repeated in an error: up to 64 characters.
fn shown_id(id: &str) -> String {
    let mut cut: String = id.chars().take(64).collect();
    if cut.len() < id.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

impl<'a> Resolve<'a> {
    /// Resolves against `catalog`; chosen rows may gather up to `max_values` values.
    pub fn new(catalog: &'a Catalog, max_values: usize) -> Self {
        Resolve {
            catalog,
            max_values,
        }
    }

    /// The embeddings `input` of the field `field` stands for.
    pub fn field(&self, field: &str, input: Input) -> Result<Embeddings, Unresolved> {
        match input {
            Input::Tensor(tensor) => inline(field, tensor).map(Embeddings::Inline),
            Input::Table(reference) => self.reference(field, reference),
        }
    }

    fn reference(&self, field: &str, reference: TableRef) -> Result<Embeddings, Unresolved> {
        let invalid = |detail: String| Err(Unresolved::Invalid(detail));
        let TableRef {
            table: name,
            pick,
            spelled,
        } = reference;
        let Some(table) = self.catalog.get(&name) else {
            if !self.catalog.is_loaded() {
                return Err(Unresolved::Loading);
            }
            return invalid(format!(
                "{}: there is no table {} (GET /tables lists them)",
                spelled.table(field),
                shown(&name)
            ));
        };
        let table = Arc::clone(table);
        let label = format!("{:?}", table.name());
        if table.rows() == 0 {
            return invalid(format!("{field}: table {label} has no rows"));
        }
        let rows = match pick {
            Pick::All => return Ok(Embeddings::Table(table)),
            Pick::Rows(rows) => {
                if let Some((at, &row)) = rows.iter().enumerate().find(|&(_, &r)| r >= table.rows())
                {
                    return invalid(format!(
                        "{}[{at}]: row {row} is out of range for table {label} of {} rows",
                        spelled.list(field, "rows"),
                        table.rows()
                    ));
                }
                (rows, "rows")
            }
            Pick::Ids(ids) => {
                let Some(known) = table.ids() else {
                    return invalid(format!(
                        "{}: table {label} has no ids (they come from {}.ids.txt)",
                        spelled.list(field, "ids"),
                        table.name()
                    ));
                };
                let mut rows = Vec::with_capacity(ids.len());
                for (at, id) in ids.iter().enumerate() {
                    match known.row(id) {
                        Some(row) => rows.push(row),
                        None => {
                            return invalid(format!(
                                "{}[{at}]: table {label} has no row with the id {}",
                                spelled.list(field, "ids"),
                                shown_id(id)
                            ));
                        }
                    }
                }
                (rows, "ids")
            }
        };
        let (rows, key) = rows;
        let values = rows.len().saturating_mul(table.dim());
        if values > self.max_values {
            return invalid(format!(
                "{}: chooses {} rows of {} values, {values} values in all, more than \
                 the {} a request may gather (--max-body-bytes / 4); choose fewer",
                spelled.list(field, key),
                rows.len(),
                table.dim(),
                self.max_values
            ));
        }
        Ok(Embeddings::Rows {
            table,
            rows,
            gathered: None,
        })
    }
}

/// A decoded tensor as `sets × rows × dim` (a matrix is one set).
fn inline(field: &str, tensor: Tensor) -> Result<Array3<f32>, Unresolved> {
    let rank = tensor.rank();
    let sets = match rank {
        2 => tensor.into_matrix().map(|m| m.insert_axis(Axis(0))),
        _ => tensor.into_sets(),
    };
    sets.ok_or_else(|| {
        Unresolved::Invalid(format!(
            "{field}: expected a tensor of rank 2 or 3, found rank {rank}"
        ))
    })
}
