//! Lists: `item_ids` (strings) and the index lists `pairs` and `exclude`, read into one flat
//! [`Ragged`] with every bad element named by its position. `exclude` may name items by id
//! as well ([`Exclude`]).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Unexpected, Visitor};

use super::options::{Scalar, ScalarVisitor};
use crate::compute::Ragged;
use crate::tensor::json_kind::{kind, reject_kinds};
use crate::tensor::{Spelling, Strings};

/// Decodes `item_ids`: an array of strings.
pub fn item_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Strings, D::Error> {
    d.deserialize_any(Ids)
}

struct Ids;

impl Ids {
    fn wrong_kind<E: de::Error>(&self, found: Unexpected) -> E {
        E::custom(format_args!(
            "item_ids: expected an array of strings, found {}",
            kind(found)
        ))
    }
}

impl<'de> Visitor<'de> for Ids {
    type Value = Strings;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
        let mut ids = Strings::new();
        while let Some(value) = seq.next_element_seed(Element)? {
            match value {
                Scalar::Str(id) => ids
                    .push(&id)
                    .map_err(|err| de::Error::custom(format_args!("item_ids: {err}")))?,
                other => {
                    return Err(de::Error::custom(format_args!(
                        "item_ids[{}]: expected a string, found {}",
                        ids.len(),
                        other.found()
                    )));
                }
            }
        }
        ids.shrink_to_fit();
        Ok(ids)
    }

    reject_kinds!(bool, i64, u64, f64, str, unit, map);
}

/// One element of a list, read as a [`Scalar`].
struct Element;

impl<'de> DeserializeSeed<'de> for Element {
    type Value = Scalar<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Scalar<'de>, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Decodes `pairs` (user-item): lists of indices.
pub fn pair_indices<'de, D: Deserializer<'de>>(d: D) -> Result<Ragged<usize>, D::Error> {
    d.deserialize_any(IndexLists {
        field: "pairs",
        ids: None,
    })
}

/// `exclude`: per user, items never to list, by index or by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exclude {
    /// Every entry; an entry given as an id holds 0 here until resolved.
    pub lists: Ragged<usize>,
    /// The entries given as ids, in order.
    pub ids: ExcludedIds,
    /// How the request gives the lists, so that an error names an entry as the client
    /// sent it: [`Spelling::Object`] for nested lists (`exclude[1][2]`),
    /// [`Spelling::Parameter`] for flat values and offsets (`exclude[7]`).
    pub spelled: Spelling,
}

/// The entries of `exclude` given as ids: the ids, in order, and which entries they are.
///
/// Held compactly, a bit per entry to mark it, as an entry `"",` is three bytes of the body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExcludedIds {
    /// The ids, in order.
    ids: Strings,
    /// Bit `e` is set when entry `e` of all the lists' values is the next id.
    marked: Vec<u64>,
}

impl ExcludedIds {
    /// Records `id` as entry `entry` of all the lists' values (entries come in order).
    fn push<E: de::Error>(&mut self, id: &str, entry: usize) -> Result<(), E> {
        self.ids
            .push(id)
            .map_err(|err| E::custom(format_args!("exclude: ids of {err}")))?;
        let word = entry / 64;
        if self.marked.len() <= word {
            self.marked.resize(word + 1, 0);
        }
        self.marked[word] |= 1 << (entry % 64);
        Ok(())
    }

    /// Each id with its entry among all the lists' values, in order.
    pub fn entries(&self) -> impl Iterator<Item = (usize, &str)> {
        let marked = self.marked.iter().enumerate().flat_map(|(word, &bits)| {
            std::iter::successors(Some(bits), |&rest| Some(rest & rest.wrapping_sub(1)))
                .take_while(|&rest| rest != 0)
                .map(move |rest| word * 64 + rest.trailing_zeros() as usize)
        });
        marked.zip(self.ids.iter())
    }

    /// Whether no entry was given as an id.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of entries given as ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Decodes `exclude`: lists of indices or ids.
pub fn exclude_lists<'de, D: Deserializer<'de>>(d: D) -> Result<Exclude, D::Error> {
    let mut ids = ExcludedIds::default();
    let lists = d.deserialize_any(IndexLists {
        field: "exclude",
        ids: Some(&mut ids),
    })?;
    Ok(Exclude {
        lists,
        ids,
        spelled: Spelling::Object,
    })
}

/// Lists of non-negative integer indices (and, where `ids` is given, ids), read into one
/// flat [`Ragged`].
struct IndexLists<'a> {
    field: &'static str,
    ids: Option<&'a mut ExcludedIds>,
}

impl IndexLists<'_> {
    fn wrong_kind<E: de::Error>(&self, found: Unexpected) -> E {
        E::custom(format_args!(
            "{}: expected an array of arrays of indices, found {}",
            self.field,
            kind(found)
        ))
    }
}

impl<'de> Visitor<'de> for IndexLists<'_> {
    type Value = Ragged<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of arrays of indices")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Ragged<usize>, A::Error> {
        let mut lists = Ragged::new();
        loop {
            let list = IndexList {
                field: self.field,
                row: lists.len(),
                into: &mut lists,
                ids: self.ids.as_deref_mut(),
            };
            if seq.next_element_seed(list)?.is_none() {
                lists.shrink_to_fit();
                return Ok(lists);
            }
            lists.end_row();
        }
    }

    reject_kinds!(bool, i64, u64, f64, str, unit, map);
}

/// List `row`, appended to `into` (the caller ends the row); ids go to `ids`, if given.
struct IndexList<'a> {
    field: &'static str,
    row: usize,
    into: &'a mut Ragged<usize>,
    ids: Option<&'a mut ExcludedIds>,
}

impl IndexList<'_> {
    fn wrong_kind<E: de::Error>(&self, found: Unexpected) -> E {
        E::custom(format_args!(
            "{}[{}]: expected an array of indices, found {}",
            self.field,
            self.row,
            kind(found)
        ))
    }
}

impl<'de> DeserializeSeed<'de> for IndexList<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IndexList<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of indices")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut col = 0;
        while let Some(value) = seq.next_element_seed(Element)? {
            let index = match (&value, self.ids.as_deref_mut()) {
                (Scalar::Unsigned(i), _) => usize::try_from(*i).ok(),
                (Scalar::Str(id), Some(ids)) => {
                    ids.push::<A::Error>(id, self.into.total())?;
                    Some(0)
                }
                _ => None,
            };
            let Some(index) = index else {
                let expected = match self.ids {
                    Some(_) => "a non-negative integer index or an id",
                    None => "a non-negative integer index",
                };
                return Err(de::Error::custom(format_args!(
                    "{}[{}][{col}]: expected {expected}, found {}",
                    self.field,
                    self.row,
                    value.found()
                )));
            };
            self.into.push(index);
            col += 1;
        }
        Ok(())
    }

    reject_kinds!(bool, i64, u64, f64, str, unit, map);
}
