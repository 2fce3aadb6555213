//! Identifiers in the shapes seen on the live API (reference §2.7, §4.3): these are observed
//! patterns, not a specification, but clients that store or log ids meet realistic values.

use time::OffsetDateTime;

use crate::NAIROBI;

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const HEX: &[u8] = b"0123456789abcdef";

fn pick(rng: &mut fastrand::Rng, set: &[u8], n: usize) -> String {
    (0..n).map(|_| char::from(set[rng.usize(..set.len())])).collect()
}

/// `ws_CO_` + `DDMMYYYYHHmmss` + 3-digit millis + the MSISDN without `254`, plus `salt` (0 on
/// the first try) added to the millis to step past a collision.
pub fn checkout_request_id(now: OffsetDateTime, msisdn: u64, salt: u32) -> String {
    let t = now.to_offset(NAIROBI);
    let millis = (u32::from(t.millisecond()) + salt) % 1000;
    let extra = (u32::from(t.millisecond()) + salt) / 1000;
    let local = msisdn % 1_000_000_000;
    let suffix = if extra > 0 { format!("{extra}") } else { String::new() };
    format!(
        "ws_CO_{:02}{:02}{:04}{:02}{:02}{:02}{millis:03}{local:09}{suffix}",
        t.day(),
        u8::from(t.month()),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The newer `MerchantRequestID` form: dash-separated hex groups ending in digits.
pub fn merchant_request_id(rng: &mut fastrand::Rng) -> String {
    format!(
        "{}-{}-{}-{}{}",
        pick(rng, HEX, 4),
        pick(rng, HEX, 4),
        pick(rng, HEX, 4),
        pick(rng, HEX, 8),
        rng.u32(10_000..100_000)
    )
}

/// The older `requestId` form of error envelopes: `NNNNN-NNNNNNNN-N`.
pub fn request_id(rng: &mut fastrand::Rng) -> String {
    format!("{}-{}-{}", rng.u32(10_000..100_000), rng.u32(10_000_000..100_000_000), rng.u8(1..10))
}

/// A receipt: year letter (`L` = 2017 … `U` = 2026), month letter (`A` = January), day
/// (`1`–`9`, then `A` = 10 … `V` = 31), and 7 random letters and digits.
pub fn receipt_number(rng: &mut fastrand::Rng, now: OffsetDateTime) -> String {
    let t = now.to_offset(NAIROBI);
    let year = char::from(b'A' + u8::try_from((t.year() - 2017 + 11).rem_euclid(26)).unwrap_or(0));
    let month = char::from(b'A' + u8::from(t.month()) - 1);
    let day = t.day();
    let day = if day < 10 { char::from(b'0' + day) } else { char::from(b'A' + day - 10) };
    format!("{year}{month}{day}{}", pick(rng, ALNUM, 7))
}

/// An access token: 28 letters and digits, as observed.
pub fn access_token(rng: &mut fastrand::Rng) -> String {
    const SET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    pick(rng, SET, 28)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn shapes_match_the_observed_patterns() {
        let now = datetime!(2022-05-23 09:21:37.653 UTC);
        assert_eq!(checkout_request_id(now, 254708374149, 0), "ws_CO_23052022122137653708374149");
        assert_eq!(checkout_request_id(now, 254708374149, 1), "ws_CO_23052022122137654708374149");
        assert_ne!(checkout_request_id(now, 254708374149, 347), checkout_request_id(now, 254708374149, 0));
        let mut rng = fastrand::Rng::with_seed(7);
        let receipt = receipt_number(&mut rng, datetime!(2026-11-22 10:00 UTC));
        assert!(receipt.starts_with("UKM"), "{receipt}"); // 2026, November, 22nd
        assert_eq!(receipt.len(), 10);
        assert!(receipt_number(&mut rng, datetime!(2017-01-31 10:00 UTC)).starts_with("LAV"));
        assert_eq!(access_token(&mut rng).len(), 28);
        let mid = merchant_request_id(&mut rng);
        assert_eq!(mid.split('-').count(), 4, "{mid}");
    }
}
