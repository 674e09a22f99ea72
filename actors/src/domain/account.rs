//! `AccountSid`: a Twilio account SID (`AC` then 32 hexadecimal digits).

use std::fmt;

/// A Twilio account SID, e.g. `AC` followed by 32 hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountSid(String);

/// Why a string is not an account SID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccountSidError {
    /// It does not start with `AC`.
    #[error("must start with AC (AC followed by 32 hex digits)")]
    Prefix,
    /// Not exactly 32 characters after `AC`.
    #[error("must be AC followed by exactly 32 hex digits")]
    Length,
    /// A character after `AC` is not a hex digit.
    #[error("must hold only hex digits after AC (AC followed by 32 hex digits)")]
    NotHex,
}

impl AccountSid {
    /// Hex digits after the `AC` prefix.
    pub const HEX_DIGITS: usize = 32;

    /// Accepts `s` when it is `AC` followed by exactly 32 hex digits (either case).
    pub fn parse(s: &str) -> Result<Self, AccountSidError> {
        let rest = s.strip_prefix("AC").ok_or(AccountSidError::Prefix)?;
        if !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AccountSidError::NotHex);
        }
        if rest.len() != Self::HEX_DIGITS {
            return Err(AccountSidError::Length);
        }
        Ok(Self(s.to_owned()))
    }

    /// Whether `s` is an account SID.
    pub fn is_valid(s: &str) -> bool {
        Self::parse(s).is_ok()
    }

    /// The SID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SID as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for AccountSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AccountSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<AccountSid> for String {
    fn from(s: AccountSid) -> Self {
        s.0
    }
}

impl AsRef<str> for AccountSid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_sids_and_names_what_is_wrong() {
        let ok = format!("AC{}", "0123456789abcdefABCDEF0123456789");
        assert_eq!(AccountSid::parse(&ok).map(AccountSid::into_string), Ok(ok));
        for (bad, why) in [
            (String::new(), AccountSidError::Prefix),
            (format!("CA{}", "a".repeat(32)), AccountSidError::Prefix),
            (format!("ac{}", "a".repeat(32)), AccountSidError::Prefix),
            (format!("AC{}", "a".repeat(31)), AccountSidError::Length),
            (format!("AC{}", "a".repeat(33)), AccountSidError::Length),
            (format!("AC{}g", "a".repeat(31)), AccountSidError::NotHex),
            (format!("AC{}é", "a".repeat(30)), AccountSidError::NotHex),
        ] {
            assert_eq!(AccountSid::parse(&bad), Err(why), "{bad:?}");
        }
    }

    fn reference(s: &str) -> bool {
        s.len() == 34 && s.starts_with("AC") && s[2..].chars().all(|c| c.is_ascii_hexdigit())
    }

    proptest! {
        #[test]
        fn never_panics_and_accepts_exactly_the_valid_set(s in "\\PC{0,40}") {
            prop_assert_eq!(AccountSid::parse(&s).is_ok(), reference(&s));
        }

        #[test]
        fn every_well_formed_sid_is_accepted(s in "AC[0-9a-fA-F]{32}") {
            prop_assert!(AccountSid::parse(&s).is_ok());
        }

        #[test]
        fn near_misses_are_refused(s in "A?C?[0-9a-gA-G]{30,34}") {
            prop_assert_eq!(AccountSid::parse(&s).is_ok(), reference(&s));
        }
    }
}
