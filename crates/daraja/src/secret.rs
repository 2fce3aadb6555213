//! Secrets as types: a wrapper whose `Debug` and `Display` never show the value.
//!
//! Consumer keys and secrets, passkeys and access tokens travel through the client as
//! [`Secret`]. The only way to read one is [`Secret::expose`], which makes every use easy to find.

use std::fmt;

/// A string that must never appear in logs, errors or `Debug` output.
///
/// There is no `Default`: a secret is always supplied by the caller, never invented.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().into_boxed_str())
    }

    /// Reads the secret. Call this only where the value is sent on the wire or hashed.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty or only whitespace (a configuration mistake).
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"[redacted]\")")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2-passkey");
        assert_eq!(format!("{s:?}"), "Secret(\"[redacted]\")");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2-passkey");
    }

    #[test]
    fn blank_secrets_are_detected() {
        assert!(Secret::new("  ").is_blank());
        assert!(!Secret::new("x").is_blank());
    }
}
