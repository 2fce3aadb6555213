//! Times are stored as UTC milliseconds since the Unix epoch (one representation on SQLite and
//! PostgreSQL) and shown as RFC 3339.

use serde::Serializer;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the epoch as an instant (UTC); `None` out of range.
fn instant(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// Milliseconds since the epoch as RFC 3339 text (UTC).
pub fn rfc3339(ms: i64) -> String {
    instant(ms).and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

/// Milliseconds since the epoch as RFC 3339 text in Nairobi time, with its offset
/// (`2026-12-07T18:30:00+03:00`): what the pages show, and still one instant for programs.
pub fn rfc3339_nairobi(ms: i64) -> String {
    instant(ms).and_then(|t| t.to_offset(daraja::NAIROBI).format(&Rfc3339).ok()).unwrap_or_default()
}

/// An instant as milliseconds since the epoch.
pub fn to_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn millis<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ms))
}

pub(crate) fn opt_millis<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

/// A duration in milliseconds, saturating.
pub fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The start (midnight, Nairobi time) of a `YYYY-MM-DD` day, in milliseconds since the epoch.
pub fn nairobi_day_start(day: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day.trim(), &format).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000 - 3 * 3_600_000)
}

/// A 12-digit Kenyan number as people write it: `0712 345 678`.
pub fn local_phone(phone: &str) -> String {
    match phone.strip_prefix("254") {
        Some(rest) if rest.len() == 9 => format!("0{} {} {}", &rest[..3], &rest[3..6], &rest[6..]),
        _ => phone.to_owned(),
    }
}

/// Milliseconds since the epoch as Nairobi wall-clock time for people: `30 Nov 2026, 18:05 EAT`.
pub fn nairobi(ms: i64) -> String {
    eat(ms, time::macros::format_description!("[day padding:none] [month repr:short] [year], [hour]:[minute]"))
}

/// [`nairobi`] to the second, for timelines: `30 Nov 2026, 18:05:09 EAT`.
pub fn nairobi_seconds(ms: i64) -> String {
    eat(ms, time::macros::format_description!("[day padding:none] [month repr:short] [year], [hour]:[minute]:[second]"))
}

fn eat(ms: i64, format: &[time::format_description::BorrowedFormatItem<'_>]) -> String {
    instant(ms)
        .and_then(|t| t.to_offset(daraja::NAIROBI).format(format).ok())
        .map(|t| format!("{t} EAT"))
        .unwrap_or_default()
}

/// Shillings for people: `KES 1,250`.
pub fn kes(amount: u32) -> String {
    let digits = amount.to_string();
    let mut out = String::with_capacity(digits.len() + 8);
    out.push_str("KES ");
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn nairobi_time_is_utc_plus_three_whatever_the_host() {
        // 2026-11-30T21:30:00Z is 00:30 the next day in Nairobi.
        assert_eq!(super::nairobi(1_796_074_200_000), "1 Dec 2026, 00:30 EAT");
    }

    #[test]
    fn shillings_are_grouped_in_thousands() {
        assert_eq!(super::kes(45), "KES 45");
        assert_eq!(super::kes(1_250), "KES 1,250");
        assert_eq!(super::kes(250_000), "KES 250,000");
    }
}
