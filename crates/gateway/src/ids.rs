//! Unguessable tokens from the operating system's CSPRNG. Lower-case hex only: it can never
//! spell a word Daraja bans in callback URLs (`exe`, `cmd`, `sql`, …).

/// A public id type: a prefix, then [`time_ordered_hex`] (`pay_…`, `re_…`). Its `parse` accepts
/// only that shape, so path parameters cannot carry anything else.
macro_rules! time_ordered_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new id: its creation time, then 48 random bits (see `ids::time_ordered_hex`).
            pub fn generate() -> Self {
                Self(format!(concat!($prefix, "{}"), $crate::ids::time_ordered_hex()))
            }

            /// Accepts only the shape `generate` makes.
            pub fn parse(input: &str) -> Option<Self> {
                let hex = input.strip_prefix($prefix)?;
                (hex.len() == 24 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
                    .then(|| Self(input.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub(crate) fn from_db(s: String) -> Self {
                Self(s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// `bytes` random bytes as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS generator failing is unrecoverable: no safe token can be made without it.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    hex(&buf)
}

/// 24 lower-case hex digits: the time in milliseconds since 1970 (12 digits), then 48 random
/// bits. Ids made close in time sort close together, so the rows and index entries that a
/// burst of work touches (recent payments, their events) share database pages instead of
/// landing all over the file; 48 random bits keep them distinct within a millisecond.
pub fn time_ordered_hex() -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    // 12 hex digits of milliseconds last until the year 10889.
    format!("{:012x}{}", millis & 0xffff_ffff_ffff, random_hex(6))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// SHA-256 of `data` as hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(data))
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hex_of_the_right_length_and_differ() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(16));
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }

    #[test]
    fn time_ordered_ids_sort_by_time_and_differ() {
        let a = time_ordered_hex();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = time_ordered_hex();
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(a[..12] < b[..12], "{a} then {b}");
        assert_ne!(time_ordered_hex(), time_ordered_hex());
    }
}
