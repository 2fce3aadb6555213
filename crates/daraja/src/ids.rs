//! Identifiers Daraja hands out: `MerchantRequestID`, `CheckoutRequestID` and M-Pesa receipt
//! numbers. They are opaque, but bounded: at most 64 printable ASCII characters, no whitespace,
//! so they are safe to store, log and use as keys.

use std::fmt;

use crate::validation::{InvalidField, excerpt};

fn opaque(field: &'static str, input: &str, alnum_only: bool) -> Result<Box<str>, InvalidField> {
    let ok_char = |c: char| {
        if alnum_only { c.is_ascii_alphanumeric() } else { c.is_ascii_graphic() }
    };
    if input.is_empty() || input.len() > 64 || !input.chars().all(ok_char) {
        let rule =
            if alnum_only { "1 to 64 letters and digits" } else { "1 to 64 printable ASCII characters without spaces" };
        return Err(InvalidField::new(field, format!("\"{}\" is not an id ({rule})", excerpt(input))));
    }
    Ok(input.into())
}

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident, $wire:literal, $alnum:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Box<str>);

        impl $name {
            /// Checks the id's shape (see the module docs).
            pub fn parse(input: &str) -> Result<Self, InvalidField> {
                opaque($wire, input, $alnum).map(Self)
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.into_string()
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &*self.0)
            }
        }
    };
}

opaque_id!(
    /// Daraja's `CheckoutRequestID`: the key of one STK request, for the callback and for Query.
    CheckoutRequestId,
    "CheckoutRequestID",
    false
);
opaque_id!(
    /// Daraja's `MerchantRequestID`.
    MerchantRequestId,
    "MerchantRequestID",
    false
);
opaque_id!(
    /// An M-Pesa receipt number (`MpesaReceiptNumber`), e.g. `UAB1C2D3E4`: unique per transaction.
    ReceiptNumber,
    "MpesaReceiptNumber",
    true
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded() {
        assert!(CheckoutRequestId::parse("ws_CO_23052022122137653708374149").is_ok());
        assert!(CheckoutRequestId::parse("").is_err());
        assert!(CheckoutRequestId::parse("ws CO").is_err());
        assert!(CheckoutRequestId::parse(&"x".repeat(65)).is_err());
        assert!(ReceiptNumber::parse("UAB1C2D3E4").is_ok());
        assert_eq!(ReceiptNumber::parse("UAB-1").unwrap_err().field, "MpesaReceiptNumber");
    }
}
