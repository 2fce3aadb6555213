//! Daraja time: 14-digit `YYYYMMDDHHmmss` in Nairobi time (EAT, UTC+3, no daylight saving),
//! whatever the server's own timezone; and the STK password built from one clock read.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use time::macros::{format_description, offset};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::merchant::{Passkey, ShortCode};
use crate::secret::Secret;
use crate::validation::{InvalidField, excerpt};

/// Nairobi's offset from UTC. Kenya has no daylight saving time.
pub const NAIROBI: UtcOffset = offset!(+3);

/// A source of the current time, injectable so tests are exact.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// A Daraja timestamp: an instant rendered as `YYYYMMDDHHmmss` in Nairobi time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(OffsetDateTime);

const WIRE: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year][month][day][hour][minute][second]");

impl Timestamp {
    /// The Daraja timestamp of an instant (converted to Nairobi time).
    pub fn at(instant: OffsetDateTime) -> Self {
        Self(instant.to_offset(NAIROBI))
    }

    /// Parses Daraja's 14-digit form, read as Nairobi time. `field` names the wire field in errors.
    pub fn parse(field: &'static str, input: &str) -> Result<Self, InvalidField> {
        if input.len() != 14 || !input.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidField::new(field, format!("\"{}\" is not 14 digits YYYYMMDDHHmmss", excerpt(input))));
        }
        PrimitiveDateTime::parse(input, WIRE)
            .map(|dt| Self(dt.assume_offset(NAIROBI)))
            .map_err(|_| InvalidField::new(field, format!("\"{input}\" is not a real date and time")))
    }

    /// The instant (with the Nairobi offset).
    pub fn instant(self) -> OffsetDateTime {
        self.0
    }

    /// The 14-digit wire form.
    pub fn to_wire(self) -> String {
        let d = self.0;
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wire())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_wire())
    }
}

/// `base64(BusinessShortCode + Passkey + Timestamp)`, standard alphabet with padding.
///
/// The result reveals the passkey to anyone who decodes it, so it is a [`Secret`].
pub fn password(shortcode: ShortCode, passkey: &Passkey, timestamp: Timestamp) -> Secret {
    let plain = format!("{shortcode}{}{}", passkey.expose(), timestamp.to_wire());
    Secret::new(base64::engine::general_purpose::STANDARD.encode(plain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const SANDBOX_PASSKEY: &str = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919";

    #[test]
    fn reference_password_vectors() {
        let code = ShortCode::parse("174379").unwrap();
        let pk = Secret::new(SANDBOX_PASSKEY);
        let vectors = [
            (
                "20160216165627",
                "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMTYwMjE2MTY1NjI3",
            ),
            (
                "20210628092408",
                "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMjEwNjI4MDkyNDA4",
            ),
            (
                "20250101120000",
                "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMjUwMTAxMTIwMDAw",
            ),
        ];
        for (ts, expected) in vectors {
            let ts = Timestamp::parse("Timestamp", ts).unwrap();
            assert_eq!(password(code, &pk, ts).expose(), expected);
        }
    }

    #[test]
    fn timestamps_are_nairobi_time_whatever_the_input_offset() {
        let utc = datetime!(2025-12-31 22:30:05 UTC);
        assert_eq!(Timestamp::at(utc).to_wire(), "20260101013005");
        let new_york = datetime!(2025-12-31 17:30:05 -5);
        assert_eq!(Timestamp::at(new_york).to_wire(), "20260101013005");
    }

    #[test]
    fn parse_rejects_non_dates() {
        for bad in
            ["2025010112000", "202501011200000", "2025013112000a", "20250230120000", "20251301120000", "20250101250000"]
        {
            assert!(Timestamp::parse("Timestamp", bad).is_err(), "{bad}");
        }
        let ts = Timestamp::parse("Timestamp", "20250101120510").unwrap();
        assert_eq!(ts.instant(), datetime!(2025-01-01 09:05:10 UTC));
    }

    proptest! {
        #[test]
        fn password_is_base64_of_the_concatenation(code in 10_000u32..9_999_999, pk in "[a-f0-9]{1,64}", secs in 0i64..4_000_000_000) {
            let shortcode = ShortCode::parse(&code.to_string()).unwrap();
            let ts = Timestamp::at(OffsetDateTime::from_unix_timestamp(secs).unwrap());
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(password(shortcode, &Secret::new(pk.clone()), ts).expose())
                .unwrap();
            prop_assert_eq!(String::from_utf8(decoded).unwrap(), format!("{code}{pk}{}", ts.to_wire()));
        }

        #[test]
        fn wire_form_round_trips(secs in 0i64..4_000_000_000) {
            let ts = Timestamp::at(OffsetDateTime::from_unix_timestamp(secs).unwrap());
            prop_assert_eq!(Timestamp::parse("Timestamp", &ts.to_wire()).unwrap(), ts);
        }
    }
}
