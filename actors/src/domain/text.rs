//! `Label`: a short human-written text (a name, a reason, an assignee): at most a given
//! number of characters as sent, not blank, trimmed, no control characters in what is kept.

use std::fmt;

/// A trimmed text of 1 to `max` characters without control characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(String);

/// Why a text is not a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Empty once trimmed, or longer than allowed.
    #[error("must be 1 to {max} characters")]
    Length {
        /// Most characters allowed.
        max: usize,
    },
    /// A control character (newline, tab, NUL, …).
    #[error("must not contain control characters")]
    Control,
}

impl Label {
    /// Accepts `s` trimmed when it has at most `max` characters as sent (so a length bound
    /// of the API documents holds as written), is not blank, and its trimmed text has no
    /// control character.
    pub fn parse(s: &str, max: usize) -> Result<Self, LabelError> {
        let too_long = s.chars().count() > max;
        let s = s.trim();
        if s.is_empty() || too_long {
            return Err(LabelError::Length { max });
        }
        if s.chars().any(char::is_control) {
            return Err(LabelError::Control);
        }
        Ok(Self(s.to_owned()))
    }

    /// The text as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<Label> for String {
    fn from(l: Label) -> Self {
        l.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn trims_and_names_what_is_wrong() {
        assert_eq!(
            Label::parse("  Acme  ", 10).map(Label::into_string),
            Ok("Acme".to_owned())
        );
        assert_eq!(
            Label::parse("ééé", 3).map(Label::into_string),
            Ok("ééé".to_owned())
        );
        assert_eq!(Label::parse("   ", 10), Err(LabelError::Length { max: 10 }));
        assert_eq!(Label::parse("abcd", 3), Err(LabelError::Length { max: 3 }));
        assert_eq!(Label::parse(" abc ", 3), Err(LabelError::Length { max: 3 }));
        assert_eq!(Label::parse("a\nb", 10), Err(LabelError::Control));
        assert_eq!(
            LabelError::Length { max: 200 }.to_string(),
            "must be 1 to 200 characters"
        );
    }

    fn reference(s: &str, max: usize) -> bool {
        let t = s.trim();
        !t.is_empty() && s.chars().count() <= max && !t.chars().any(char::is_control)
    }

    proptest! {
        #[test]
        fn never_panics_and_accepts_exactly_the_valid_set(s in "\\PC{0,12}|[ \\t\\n\\u{0}a-z]{0,12}", max in 0usize..12) {
            let parsed = Label::parse(&s, max);
            prop_assert_eq!(parsed.is_ok(), reference(&s, max));
            if let Ok(l) = parsed {
                prop_assert_eq!(l.as_str(), s.trim());
            }
        }
    }
}
