//! `Msisdn`: a Kenyan mobile number in Daraja's 12-digit form (`2547XXXXXXXX` or `2541XXXXXXXX`).
//!
//! Invariant: the value is exactly `254` followed by `7` or `1` and eight more digits. There is
//! deliberately no operator-prefix table: numbers are portable between networks, so only the
//! shape is checked and Safaricom decides the rest.

use std::fmt;
use std::str::FromStr;

use crate::validation::{InvalidField, excerpt};

/// A normalised Kenyan mobile number, e.g. `254712345678`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msisdn(u64);

const FIELD: &str = "PhoneNumber";

impl Msisdn {
    /// Parses the forms people type: `0712 345 678`, `0112-345-678`, `+254712345678`,
    /// `254112345678`, `712345678` or `00254712345678`. Spaces and dashes are ignored.
    ///
    /// The error names what is wrong (letters, length, another country code) and the expected form.
    pub fn parse(input: &str) -> Result<Self, InvalidField> {
        let invalid = |why: String| {
            InvalidField::new(
                FIELD,
                format!(
                    "{why} in \"{}\"; expected a Kenyan mobile number such as 0712345678 or 254712345678",
                    excerpt(input)
                ),
            )
        };
        let mut digits = String::with_capacity(16);
        let mut plus = false;
        for (i, c) in input.trim().char_indices() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' => {}
                '+' if i == 0 => plus = true,
                other => return Err(invalid(format!("unexpected character {other:?}"))),
            }
        }
        if digits.is_empty() {
            return Err(invalid("no digits".into()));
        }
        let national = if plus {
            match digits.strip_prefix("254") {
                Some(rest) => rest,
                None => return Err(invalid("not a Kenyan (+254) number: M-Pesa Kenya only serves +254".into())),
            }
        } else if let Some(rest) = digits.strip_prefix("00") {
            match rest.strip_prefix("254") {
                Some(rest) => rest,
                None => return Err(invalid("not a Kenyan (00254) number: M-Pesa Kenya only serves +254".into())),
            }
        } else if digits.len() == 12 || (digits.len() > 10 && digits.starts_with("254")) {
            match digits.strip_prefix("254") {
                Some(rest) => rest,
                None => return Err(invalid("12 digits but no 254 country code".into())),
            }
        } else if let Some(rest) = digits.strip_prefix('0') {
            rest
        } else {
            &digits
        };
        if national.starts_with('0') && national.len() == 10 {
            return Err(invalid("a 0 after the country code 254 (write 2547…, not 25407…)".into()));
        }
        if national.len() != 9 {
            return Err(invalid(format!("{} digits after the prefix, a mobile number has 9", national.len())));
        }
        if !(national.starts_with('7') || national.starts_with('1')) {
            return Err(invalid("not a mobile number (it must start 07, 01, 2547 or 2541)".into()));
        }
        let n: u64 = national.parse().map_err(|_| invalid("not a number".into()))?;
        Ok(Self(254_000_000_000 + n))
    }

    /// The 12-digit number as Daraja wants it, e.g. `254712345678`.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The local form people recognise, e.g. `0712345678`.
    pub fn local(self) -> String {
        format!("0{}", self.0 - 254_000_000_000)
    }

    /// A form safe to show on a shared screen: `07•• ••• 678`.
    pub fn masked(self) -> String {
        let local = self.local();
        format!("{}•• ••• {}", &local[..2], &local[7..])
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Msisdn({})", self.0)
    }
}

/// As the string of its 12 digits (`"254712345678"`), the form Lipa's API and stores use.
impl serde::Serialize for Msisdn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromStr for Msisdn {
    type Err = InvalidField;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<u64> for Msisdn {
    type Error = InvalidField;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Self::parse(&value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_its_twelve_digits() {
        let phone = Msisdn::parse("0712 345 678").unwrap();
        assert_eq!(serde_json::to_string(&phone).unwrap(), "\"254712345678\"");
    }
    use proptest::prelude::*;

    #[test]
    fn accepts_the_forms_people_type() {
        for input in [
            "0712345678",
            "0712 345 678",
            "0712-345-678",
            "+254712345678",
            "+254 712 345 678",
            "254712345678",
            "712345678",
            "00254712345678",
            " 0712345678 ",
        ] {
            assert_eq!(Msisdn::parse(input).unwrap().as_u64(), 254712345678, "{input}");
        }
        assert_eq!(Msisdn::parse("0112345678").unwrap().as_u64(), 254112345678);
        assert_eq!(Msisdn::parse("254112345678").unwrap().as_u64(), 254112345678);
    }

    #[test]
    fn rejects_with_a_reason() {
        let cases = [
            ("", "no digits"),
            ("07123456789", "10 digits"),
            ("071234567", "8 digits"),
            ("07123a5678", "unexpected character 'a'"),
            ("+255712345678", "not a Kenyan"),
            ("0212345678", "not a mobile number"),
            ("2540712345678", "a 0 after the country code"),
            ("254812345678", "not a mobile number"),
            ("0712+345678", "unexpected character '+'"),
        ];
        for (input, why) in cases {
            let err = Msisdn::parse(input).unwrap_err();
            assert_eq!(err.field, "PhoneNumber");
            assert!(err.reason.contains(why), "{input}: {}", err.reason);
        }
    }

    #[test]
    fn local_and_masked_forms() {
        let m = Msisdn::parse("254712345678").unwrap();
        assert_eq!(m.local(), "0712345678");
        assert_eq!(m.masked(), "07•• ••• 678");
        assert_eq!(m.to_string(), "254712345678");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = Msisdn::parse(&s);
        }

        #[test]
        fn parse_of_phone_like_input_never_panics(s in "[+0-9 -]{0,20}") {
            let _ = Msisdn::parse(&s);
        }

        #[test]
        fn output_reparses_to_itself(s in "(\\+254|254|0)?[71][0-9]{8}") {
            if let Ok(m) = Msisdn::parse(&s) {
                prop_assert_eq!(Msisdn::parse(&m.to_string()), Ok(m));
                prop_assert_eq!(Msisdn::parse(&m.local()), Ok(m));
            } else {
                prop_assert!(false, "valid-looking {} rejected", s);
            }
        }
    }
}
