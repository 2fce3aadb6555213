//! `Amount`: whole Kenyan shillings within Daraja's per-transaction bounds.
//!
//! Invariant: `1 <= value <= max`, where `max` defaults to [`Amount::DEFAULT_MAX`] (KES 250,000,
//! the current per-transaction limit). Money is never a float.

use std::fmt;

use crate::validation::InvalidField;

/// A payment amount in whole shillings.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Amount(u32);

impl Amount {
    /// Daraja's current per-transaction maximum, KES 250,000.
    pub const DEFAULT_MAX: u32 = 250_000;

    /// Builds an amount in `1..=DEFAULT_MAX`.
    pub fn new(shillings: u64) -> Result<Self, InvalidField> {
        Self::with_max(shillings, Self::DEFAULT_MAX)
    }

    /// Builds an amount in `1..=max` (for shops with a lower limit of their own).
    pub fn with_max(shillings: u64, max: u32) -> Result<Self, InvalidField> {
        if shillings == 0 {
            return Err(InvalidField::new("Amount", "must be at least KES 1"));
        }
        if shillings > u64::from(max) {
            return Err(InvalidField::new(
                "Amount",
                format!("KES {shillings} is above the maximum of KES {max} per transaction"),
            ));
        }
        u32::try_from(shillings).map(Self).map_err(|_| InvalidField::new("Amount", "too large"))
    }

    /// The whole shillings a JSON number holds when it arrives as a float (`100.0`, which
    /// JSON does not tell apart from `100`); `None` for a fraction, a negative or a huge value.
    pub fn whole_shillings(f: f64) -> Option<u64> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // whole and in 0..1e12
        (f.fract() == 0.0 && (0.0..1e12).contains(&f)).then_some(f as u64)
    }

    /// Parses an amount written as text: `"100"`, or a whole value with decimals, `"100.00"`.
    /// Fractions of a shilling (`"1.50"`) are refused, as Daraja refuses them.
    pub fn parse(input: &str) -> Result<Self, InvalidField> {
        Self::parse_with_max(input, Self::DEFAULT_MAX)
    }

    /// [`Amount::parse`] with a maximum of `max` shillings.
    pub fn parse_with_max(input: &str, max: u32) -> Result<Self, InvalidField> {
        let s = input.trim();
        let whole = match s.split_once('.') {
            Some((w, frac)) if !frac.is_empty() && frac.bytes().all(|b| b == b'0') => w,
            Some((_, frac)) if frac.bytes().all(|b| b.is_ascii_digit()) && !frac.is_empty() => {
                return Err(InvalidField::new(
                    "Amount",
                    format!("\"{}\" has cents; M-Pesa takes whole shillings only", crate::validation::excerpt(s)),
                ));
            }
            Some(_) => {
                return Err(InvalidField::new(
                    "Amount",
                    format!("\"{}\" is not a number", crate::validation::excerpt(s)),
                ));
            }
            None => s,
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidField::new(
                "Amount",
                format!("\"{}\" is not a whole number of shillings", crate::validation::excerpt(s)),
            ));
        }
        let value: u64 = whole
            .parse()
            .map_err(|_| InvalidField::new("Amount", format!("the amount is above the maximum of KES {max}")))?;
        Self::with_max(value, max)
    }

    /// The value in shillings.
    pub fn shillings(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KES {}", self.0)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

/// As a JSON number of shillings.
impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl TryFrom<u64> for Amount {
    type Error = InvalidField;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_a_number_of_shillings() {
        assert_eq!(serde_json::to_string(&Amount::new(250).unwrap()).unwrap(), "250");
    }
    use proptest::prelude::*;

    #[test]
    fn bounds_are_one_to_the_maximum() {
        assert!(Amount::new(0).is_err());
        assert_eq!(Amount::new(1).unwrap().shillings(), 1);
        assert_eq!(Amount::new(250_000).unwrap().shillings(), 250_000);
        let err = Amount::new(250_001).unwrap_err();
        assert!(err.reason.contains("above the maximum of KES 250000"), "{err}");
        assert!(Amount::with_max(5_001, 5_000).is_err());
        assert!(Amount::new(u64::MAX).is_err());
    }

    #[test]
    fn text_forms() {
        assert_eq!(Amount::parse("100").unwrap().shillings(), 100);
        assert_eq!(Amount::parse("100.00").unwrap().shillings(), 100);
        assert!(Amount::parse("1.50").unwrap_err().reason.contains("whole shillings"));
        assert!(Amount::parse_with_max("600", 500).is_err());
        assert_eq!(Amount::parse_with_max("500.00", 500).unwrap().shillings(), 500);
        let long = Amount::parse(&format!("1.{}", "5".repeat(10_000))).unwrap_err();
        assert!(long.reason.len() < 100, "hostile input is not echoed whole");
        for bad in ["", "-1", "1e3", "abc", "1.", ".5", "99999999999999999999999"] {
            assert!(Amount::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,30}") {
            let _ = Amount::parse(&s);
        }

        #[test]
        fn valid_amounts_round_trip(n in 1u64..=250_000) {
            prop_assert_eq!(Amount::parse(&n.to_string()).unwrap().shillings() as u64, n);
        }
    }
}
