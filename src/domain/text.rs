//! Short free text (a reason, a tracking number, a carrier, an order reference, an
//! address part, a display name): the one rule every such field of a command keeps,
//! whether it comes from a request or an import row.

use super::error::FieldError;

/// Longest short free-text field, in characters.
pub const TEXT_CHARS_MAX: usize = 200;

/// The problem with `value` as the text field `field`, if any: it must hold
/// 1..=[`TEXT_CHARS_MAX`] characters (not bytes) and no control character.
pub fn check_text(field: &str, value: &str) -> Option<FieldError> {
    let n = value.chars().count();
    (n == 0 || n > TEXT_CHARS_MAX || value.chars().any(char::is_control))
        .then(|| FieldError::new(field, format!("must be 1..={TEXT_CHARS_MAX} characters without control characters")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_characters_and_refuses_empty_long_and_control() {
        assert_eq!(check_text("carrier", &"あ".repeat(TEXT_CHARS_MAX)), None);
        for bad in [String::new(), "x".repeat(TEXT_CHARS_MAX + 1), "a\u{7}b".into()] {
            let e = check_text("carrier", &bad).expect("refused");
            assert_eq!((e.field.as_str(), e.detail.as_str()), ("carrier", "must be 1..=200 characters without control characters"));
        }
    }
}
