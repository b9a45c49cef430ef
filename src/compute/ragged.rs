//! [`Ragged`]: rows of different lengths in two flat buffers.

/// Rows of varying length, stored as one buffer of values and one of row boundaries, so a
/// million short rows cost two allocations rather than a million.
#[derive(Debug, Clone, PartialEq)]
pub struct Ragged<T> {
    /// `offsets[i]..offsets[i + 1]` is row `i`; starts with 0.
    offsets: Vec<usize>,
    values: Vec<T>,
}

impl<T> Default for Ragged<T> {
    fn default() -> Self {
        Ragged {
            offsets: vec![0],
            values: Vec::new(),
        }
    }
}

impl<T> Ragged<T> {
    /// No rows.
    pub fn new() -> Self {
        Self::default()
    }

    /// `values` cut into rows of `width` values each (the last may be shorter), in place.
    pub fn of_width(values: Vec<T>, width: usize) -> Self {
        let width = width.max(1);
        let mut offsets = Vec::with_capacity(values.len().div_ceil(width) + 1);
        offsets.extend((0..values.len()).step_by(width));
        offsets.push(values.len());
        Ragged { offsets, values }
    }

    /// Rows given by `offsets` (where each row starts in `values`, and the end of the last),
    /// or `None` unless they start at 0, never decrease and end at `values.len()`.
    pub fn from_parts(offsets: Vec<usize>, values: Vec<T>) -> Option<Self> {
        let valid = offsets.first() == Some(&0)
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && offsets.last() == Some(&values.len());
        valid.then_some(Ragged { offsets, values })
    }

    /// Gives back what its buffers hold beyond their values (a buffer that grew may hold
    /// twice as many): for lists read whole, kept while a request is checked and run.
    pub fn shrink_to_fit(&mut self) {
        self.offsets.shrink_to_fit();
        self.values.shrink_to_fit();
    }

    /// Appends a row.
    pub fn push_row(&mut self, row: impl IntoIterator<Item = T>) {
        self.values.extend(row);
        self.offsets.push(self.values.len());
    }

    /// Appends one value to the row being built (finish it with [`Ragged::end_row`]).
    pub fn push(&mut self, value: T) {
        self.values.push(value);
    }

    /// Ends the row being built by [`Ragged::push`].
    pub fn end_row(&mut self) {
        self.offsets.push(self.values.len());
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of values in all rows.
    pub fn total(&self) -> usize {
        self.values.len()
    }

    /// Bytes its two buffers hold, by capacity (a buffer grown by [`Ragged::push`] may be
    /// up to twice its length).
    pub fn bytes(&self) -> usize {
        self.values
            .capacity()
            .saturating_mul(size_of::<T>())
            .saturating_add(self.offsets.capacity().saturating_mul(size_of::<usize>()))
    }

    /// Every value, row after row.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// Every value, row after row, to change in place.
    pub fn values_mut(&mut self) -> &mut [T] {
        &mut self.values
    }

    /// Where each row starts in [`Ragged::values`], and the end of the last: `len() + 1`
    /// entries, the first 0.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[T] {
        &self.values[self.offsets[i]..self.offsets[i + 1]]
    }

    /// Every row, in order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[T]> + Clone {
        self.offsets.windows(2).map(|w| &self.values[w[0]..w[1]])
    }

    /// Appends every row of `other`.
    pub fn append(&mut self, other: Ragged<T>) {
        let base = self.values.len();
        self.offsets
            .extend(other.offsets.iter().skip(1).map(|offset| base + offset));
        self.values.extend(other.values);
    }
}

impl<T: Clone> Ragged<T> {
    /// The rows as vectors.
    pub fn to_vecs(&self) -> Vec<Vec<T>> {
        self.rows().map(<[T]>::to_vec).collect()
    }
}

impl<T, R: IntoIterator<Item = T>> FromIterator<R> for Ragged<T> {
    fn from_iter<I: IntoIterator<Item = R>>(rows: I) -> Self {
        let mut ragged = Ragged::new();
        for row in rows {
            ragged.push_row(row);
        }
        ragged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_their_lengths_including_empty_ones() {
        let mut lists = Ragged::new();
        lists.push_row([3, 1]);
        lists.push_row([]);
        lists.push(7);
        lists.end_row();
        assert_eq!(lists.len(), 3);
        assert_eq!(lists.total(), 3);
        assert_eq!(lists.row(1), &[] as &[i32]);
        assert_eq!(
            lists.rows().collect::<Vec<_>>(),
            vec![&[3, 1][..], &[], &[7]]
        );
        let mut more: Ragged<i32> = [vec![1], vec![2, 2]].into_iter().collect();
        more.append(lists);
        assert_eq!(
            more.to_vecs(),
            vec![vec![1], vec![2, 2], vec![3, 1], vec![], vec![7]]
        );
    }
}
