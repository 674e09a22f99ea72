//! `E164`: a phone number in E.164 form (`+` then 2–15 digits, the first not zero).

use std::fmt;

/// A phone number in E.164 form, e.g. `+14155550100`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

/// Why a string is not an E.164 number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum E164Error {
    /// The leading `+` is missing.
    #[error("must start with + (an E.164 phone number such as +14155550100)")]
    MissingPlus,
    /// Something other than a digit after the `+`.
    #[error("must hold only digits after the + (an E.164 phone number such as +14155550100)")]
    NotDigits,
    /// Fewer than 2 or more than 15 digits.
    #[error("must have 2 to 15 digits (an E.164 phone number such as +14155550100)")]
    Length,
    /// The country code starts with 0.
    #[error("must not start with +0 (an E.164 phone number such as +14155550100)")]
    LeadingZero,
}

impl E164 {
    /// Fewest digits after the `+`.
    pub const MIN_DIGITS: usize = 2;
    /// Most digits after the `+`.
    pub const MAX_DIGITS: usize = 15;

    /// Accepts `s` when it is `+` followed by 2–15 ASCII digits, the first not `0`.
    pub fn parse(s: &str) -> Result<Self, E164Error> {
        let digits = s.strip_prefix('+').ok_or(E164Error::MissingPlus)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E164Error::NotDigits);
        }
        if !(Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&digits.len()) {
            return Err(E164Error::Length);
        }
        if digits.starts_with('0') {
            return Err(E164Error::LeadingZero);
        }
        Ok(Self(s.to_owned()))
    }

    /// Whether `s` is an E.164 number.
    pub fn is_valid(s: &str) -> bool {
        Self::parse(s).is_ok()
    }

    /// The number as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<E164> for String {
    fn from(n: E164) -> Self {
        n.0
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_numbers_and_names_what_is_wrong() {
        for ok in ["+14155550100", "+44", "+123456789012345", "+33612345678"] {
            assert_eq!(E164::parse(ok).map(E164::into_string), Ok(ok.to_owned()));
        }
        for (bad, why) in [
            ("14155550100", E164Error::MissingPlus),
            ("", E164Error::MissingPlus),
            ("+1 415 555 0100", E164Error::NotDigits),
            ("+1415555010a", E164Error::NotDigits),
            ("+١٢٣", E164Error::NotDigits),
            ("+", E164Error::Length),
            ("+1", E164Error::Length),
            ("+1234567890123456", E164Error::Length),
            ("+0123456789", E164Error::LeadingZero),
        ] {
            assert_eq!(E164::parse(bad), Err(why), "{bad:?}");
        }
        assert!(E164Error::NotDigits.to_string().contains("+14155550100"));
    }

    fn reference(s: &str) -> bool {
        let Some(d) = s.strip_prefix('+') else {
            return false;
        };
        (2..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()) && !d.starts_with('0')
    }

    proptest! {
        #[test]
        fn never_panics_and_accepts_exactly_the_valid_set(s in "\\PC{0,20}") {
            prop_assert_eq!(E164::parse(&s).is_ok(), reference(&s));
        }

        #[test]
        fn every_well_formed_number_is_accepted(n in "\\+[1-9][0-9]{1,14}") {
            prop_assert_eq!(E164::parse(&n).map(E164::into_string), Ok(n.clone()));
        }

        #[test]
        fn near_misses_are_refused(n in "[+]?[0-9 a-]{0,17}") {
            prop_assert_eq!(E164::parse(&n).is_ok(), reference(&n));
        }
    }
}
