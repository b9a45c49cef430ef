//! What of a request may be repeated in an error message: errors name the field and index at
//! fault and never echo the client's input, except a name short and plain enough to be one
//! (a table, model, input or parameter name), which helps the reader find the mistake.

/// `name` quoted, if it is at most `max_len` bytes of ASCII letters, digits, `.`, `_` and
/// `-`; else `of that name` (so "no table of that name").
pub fn shown(name: &str, max_len: usize) -> String {
    let plain = !name.is_empty()
        && name.len() <= max_len
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain {
        format!("{name:?}")
    } else {
        "of that name".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn only_short_plain_names_are_repeated() {
        assert_eq!(shown("items.v2_a-b", 64), "\"items.v2_a-b\"");
        assert_eq!(shown("a\"b", 64), "of that name");
        assert_eq!(shown("", 64), "of that name");
        assert_eq!(shown(&"x".repeat(65), 64), "of that name");
        assert_eq!(
            shown(&"x".repeat(65), 128),
            format!("\"{}\"", "x".repeat(65))
        );
    }
}
