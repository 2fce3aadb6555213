//! Payments as CSV, streamed a page (1,000 rows) at a time: the admin dashboard's export and
//! `lipa export` write it the same way, with memory flat however many rows. Times are Nairobi
//! time with their offset (`+03:00`), as the pages show them; phones as customers write them.

use futures_util::Stream;

use crate::store::{PaymentFilter, Store, StoreError};
use crate::time_fmt::{local_phone, rfc3339_nairobi};

/// The header line.
pub const HEADER: &str = "id,created_at,status,amount,phone,account_reference,receipt,result_code,failure_reason,needs_review,settled_at,refunded_amount\n";

/// A text field, quoted, that a spreadsheet will not read as a formula.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The header, then the payments `filter` selects (newest first), in chunks of `filter.limit`.
pub fn csv(store: Store, filter: PaymentFilter) -> impl Stream<Item = Result<String, StoreError>> {
    let pages = futures_util::stream::unfold(Some(filter), move |filter| {
        let store = store.clone();
        async move {
            let filter = filter?;
            match store.payments(filter.clone()).await {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let mut chunk = String::with_capacity(page.len() * 160);
                    for p in &page {
                        chunk.push_str(&format!(
                            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
                            p.id,
                            rfc3339_nairobi(p.created_at),
                            p.status.as_str(),
                            p.amount.shillings(),
                            field(&local_phone(&p.phone.to_string())),
                            field(&p.account_reference),
                            p.receipt.as_deref().unwrap_or(""),
                            field(p.result_code.as_deref().unwrap_or("")),
                            p.failure_reason.map_or("", |r| r.as_str()),
                            p.needs_review,
                            p.settled_at.map(rfc3339_nairobi).unwrap_or_default(),
                            p.refunded_amount,
                        ));
                    }
                    let next = (page.len() == filter.limit as usize).then(|| PaymentFilter {
                        after: page.last().map(|p| (p.created_at, p.id.as_str().to_owned())),
                        ..filter
                    });
                    Some((Ok(chunk), next))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    });
    futures_util::StreamExt::chain(futures_util::stream::once(async { Ok(HEADER.to_owned()) }), pages)
}
