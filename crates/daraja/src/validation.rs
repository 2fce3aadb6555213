//! The error every validated newtype returns: which field, what was wrong, how to fix it.

use std::fmt;

/// A value that Daraja would refuse (or silently mishandle), caught before any request is sent.
///
/// `field` is Daraja's wire name (`PhoneNumber`, `Amount`, …) so the message matches what
/// Safaricom would have said; `reason` says what is wrong and what is expected instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    /// Daraja's name for the field, e.g. `PhoneNumber`.
    pub field: &'static str,
    /// What is wrong and what would be accepted.
    pub reason: String,
}

impl InvalidField {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for InvalidField {}

/// Shortens untrusted input for inclusion in an error message (at most 40 characters).
pub(crate) fn excerpt(input: &str) -> String {
    excerpt_n(input, 40)
}

/// Shortens text to at most `max` characters, marking the cut.
pub(crate) fn excerpt_n(input: &str, max: usize) -> String {
    let mut out: String = input.chars().take(max).collect();
    if input.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}
