//! Free-text STK fields and the callback URL, validated the way Daraja needs them.
//!
//! - `AccountReference`: 1..=12 characters. Longer values have been accepted by Daraja and then
//!   produced no prompt at all, so the limit is enforced here.
//! - `TransactionDesc`: 1..=13 characters.
//! - `CallbackUrl`: absolute http(s), no whitespace, none of the words Daraja bans in callback
//!   URLs. Whether plain http is allowed depends on the environment and is checked by the client.

use std::fmt;

use crate::validation::{InvalidField, excerpt};

/// Characters Daraja shows in the prompt without trouble: ASCII letters and digits, space and
/// a few separators merchants use in references (`INV-001`, `A/12`).
fn is_prompt_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '#' | '/')
}

fn prompt_text(field: &'static str, input: &str, max: usize) -> Result<Box<str>, InvalidField> {
    let value = input.trim();
    if value.is_empty() {
        return Err(InvalidField::new(field, "must not be empty"));
    }
    if let Some(bad) = value.chars().find(|c| !is_prompt_safe(*c)) {
        return Err(InvalidField::new(
            field,
            format!(
                "character {bad:?} in \"{}\" is not allowed; use letters, digits, spaces and - _ . # /",
                excerpt(value)
            ),
        ));
    }
    let len = value.chars().count();
    if len > max {
        return Err(InvalidField::new(
            field,
            format!("\"{}\" is {len} characters long; the maximum is {max}", excerpt(value)),
        ));
    }
    Ok(value.into())
}

macro_rules! prompt_field {
    ($(#[$doc:meta])* $name:ident, $wire:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(Box<str>);

        impl $name {
            /// Maximum length in characters.
            pub const MAX_LEN: usize = $max;

            /// Trims surrounding whitespace, then checks length and characters.
            pub fn parse(input: &str) -> Result<Self, InvalidField> {
                prompt_text($wire, input, $max).map(Self)
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }
    };
}

prompt_field!(
    /// `AccountReference`: shown to the customer in the prompt; the account number for paybills.
    AccountReference,
    "AccountReference",
    12
);

prompt_field!(
    /// `TransactionDesc`: a short description of the payment.
    TransactionDesc,
    "TransactionDesc",
    13
);

/// Words Daraja rejects or silently ignores in callback URLs (reference §2.6), lower case.
/// `exe` also covers `exec`, and `mpesa` / `m-pesa` the ways people write M-Pesa.
pub const BANNED_URL_WORDS: &[&str] = &["m-pesa", "mpesa", "safaricom", "exe", "cmd", "sql", "query"];

/// The `CallBackURL` Safaricom POSTs the result to.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CallbackUrl(url::Url);

impl CallbackUrl {
    /// Checks that the URL is absolute http(s) with a host, has no whitespace, and contains none
    /// of [`BANNED_URL_WORDS`] in any case.
    pub fn parse(input: &str) -> Result<Self, InvalidField> {
        const FIELD: &str = "CallBackURL";
        if input.chars().any(char::is_whitespace) {
            return Err(InvalidField::new(
                FIELD,
                "contains whitespace (Daraja answers \"Invalid CallBackURL\"); remove spaces and line breaks",
            ));
        }
        let url = url::Url::parse(input)
            .map_err(|e| InvalidField::new(FIELD, format!("\"{}\" is not an absolute URL ({e})", excerpt(input))))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(InvalidField::new(FIELD, format!("scheme {:?} is not http or https", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(InvalidField::new(FIELD, "has no host"));
        }
        let lower = input.to_ascii_lowercase();
        if let Some(word) = BANNED_URL_WORDS.iter().find(|w| lower.contains(**w)) {
            return Err(InvalidField::new(
                FIELD,
                format!(
                    "contains \"{word}\", a word Daraja does not allow in callback URLs; rename that part of the path or host"
                ),
            ));
        }
        Ok(Self(url))
    }

    /// Whether the URL uses https (required by Safaricom outside custom environments).
    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for CallbackUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl fmt::Debug for CallbackUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The path usually holds a per-payment secret token: show only where it points.
        write!(f, "CallbackUrl({}://{}/…)", self.0.scheme(), self.0.host_str().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn account_reference_limits() {
        assert_eq!(AccountReference::parse(" INV-001 ").unwrap().as_str(), "INV-001");
        assert!(AccountReference::parse("ABCDEFGHIJKL").is_ok());
        let err = AccountReference::parse("ABCDEFGHIJKLM").unwrap_err();
        assert_eq!(err.field, "AccountReference");
        assert!(err.reason.contains("13 characters long; the maximum is 12"), "{err}");
        assert!(AccountReference::parse("   ").unwrap_err().reason.contains("empty"));
        assert!(AccountReference::parse("tick€t").unwrap_err().reason.contains("'€'"));
        assert!(AccountReference::parse("a\nb").is_err());
    }

    #[test]
    fn transaction_desc_limits() {
        assert!(TransactionDesc::parse("Movie tickets").is_ok()); // 13
        let err = TransactionDesc::parse("Movie tickets!").unwrap_err();
        assert_eq!(err.field, "TransactionDesc");
        assert!(TransactionDesc::parse("Movie tickets2").unwrap_err().reason.contains("maximum is 13"));
    }

    #[test]
    fn callback_url_rules() {
        assert!(CallbackUrl::parse("https://pay.example.com/callbacks/stk/abc123").unwrap().is_https());
        assert!(!CallbackUrl::parse("http://127.0.0.1:9000/cb/x").unwrap().is_https());
        let cases = [
            ("https://example.com/cb /x", "whitespace"),
            ("https://example.com/cb\n", "whitespace"),
            ("/callbacks/stk/x", "not an absolute URL"),
            ("ftp://example.com/x", "not http or https"),
            ("https://example.com/mpesa/callback", "\"mpesa\""),
            ("https://example.com/M-PESA/callback", "\"m-pesa\""),
            ("https://SAFARICOM.example.com/x", "\"safaricom\""),
            ("https://example.com/exec", "\"exe\""),
            ("https://example.com/x?cmd=1", "\"cmd\""),
            ("https://example.com/mysql", "\"sql\""),
            ("https://example.com/stkquery", "\"query\""),
        ];
        for (input, why) in cases {
            let err = CallbackUrl::parse(input).unwrap_err();
            assert!(err.reason.contains(why), "{input}: {err}");
        }
    }

    #[test]
    fn callback_url_debug_hides_the_token_path() {
        let url = CallbackUrl::parse("https://pay.example.com/callbacks/stk/secret-token").unwrap();
        assert_eq!(format!("{url:?}"), "CallbackUrl(https://pay.example.com/…)");
    }

    proptest! {
        #[test]
        fn prompt_fields_never_panic(s in "\\PC{0,40}") {
            let _ = AccountReference::parse(&s);
            let _ = TransactionDesc::parse(&s);
            let _ = CallbackUrl::parse(&s);
        }

        #[test]
        fn valid_references_round_trip(s in "[A-Za-z0-9][A-Za-z0-9 _.#/-]{0,10}[A-Za-z0-9]") {
            let r = AccountReference::parse(&s).unwrap();
            prop_assert_eq!(AccountReference::parse(r.as_str()).unwrap(), r);
        }
    }
}
