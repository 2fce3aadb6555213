//! What a Transaction Status answer about a receipt does to the payment it was asked for: a
//! payment confirmed without its receipt (an STK Query said it was paid) takes the receipt
//! the customer shows when Daraja says that transaction completed, for the payment's amount,
//! from the payment's phone. Anything less adds nothing: the answer is shown to staff.

use daraja::status::Details;

use super::{Change, Decision, Outcome};
use crate::payment::{Payment, SettledBy, Status};

/// The decision to add `details`' receipt to `p`, or why it is not added.
pub fn receipt_for(p: &Payment, details: &Details) -> Result<Decision, String> {
    let Some(receipt) = details.receipt.clone() else { return Err("Daraja's answer names no receipt".into()) };
    if p.status != Status::Paid {
        return Err(format!("the payment is {}, not paid", p.status.as_str()));
    }
    if let Some(have) = &p.receipt {
        return Err(format!("the payment has its receipt already ({have})"));
    }
    // The customer's payment happened after the payment was asked for, within a day.
    let finalised = details.finalised_at.map(crate::time_fmt::to_millis);
    if finalised.is_none_or(|at| at < p.created_at - 60_000 || at > p.created_at + 86_400_000) {
        return Err("the transaction did not happen while this payment was being paid".into());
    }
    if !details.is_completed() {
        return Err(format!("Daraja says the transaction is {}", details.status.as_deref().unwrap_or("not completed")));
    }
    let amount = u64::from(p.amount.shillings());
    if details.amount != Some(amount) {
        return Err(format!("the transaction was for {:?} shillings, the payment for {amount}", details.amount));
    }
    let phone = p.phone.to_string();
    let digits: String = details.debit_party.as_deref().unwrap_or("").chars().filter(char::is_ascii_digit).collect();
    if !digits.starts_with(&phone) {
        return Err("Daraja's answer does not show the payment's phone as the payer".into());
    }
    let change = Change {
        status: Status::Paid,
        failure_reason: None,
        result_code: p.result_code.clone().unwrap_or_else(|| "0".into()),
        result_desc: p.result_desc.clone().unwrap_or_default(),
        receipt: Some(receipt.clone()),
        transaction_date: finalised,
        checkout_request_id: None,
        settled_by: p.settled_by.unwrap_or(SettledBy::Query),
    };
    let note = format!("Transaction Status confirmed receipt {receipt} for this payment's amount and phone");
    Ok(Decision { outcome: Outcome::ReceiptAdded, change: Some(change), note })
}

#[cfg(test)]
mod tests {
    use daraja::ReceiptNumber;

    use super::*;

    fn paid_by_query() -> Payment {
        let mut p = crate::payment::example();
        p.status = Status::Paid;
        p.settled_by = Some(SettledBy::Query);
        p
    }

    fn found(amount: u64, payer: &str) -> Details {
        Details {
            receipt: Some(ReceiptNumber::parse("UAB1234567").unwrap()),
            status: Some("Completed".into()),
            amount: Some(amount),
            debit_party: Some(payer.into()),
            // The example payment was created at 1 ms.
            finalised_at: Some(time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(30)),
            ..Details::default()
        }
    }

    #[test]
    fn a_matching_completed_transaction_adds_its_receipt() {
        let d = receipt_for(&paid_by_query(), &found(100, "254712345678 - Jane Doe")).unwrap();
        assert_eq!(d.outcome, Outcome::ReceiptAdded);
        let change = d.change.unwrap();
        assert_eq!((change.receipt.unwrap().as_str(), change.settled_by), ("UAB1234567", SettledBy::Query));
    }

    #[test]
    fn anything_less_adds_nothing_and_says_why() {
        let p = paid_by_query();
        assert!(receipt_for(&p, &found(99, "254712345678 - Jane Doe")).unwrap_err().contains("shillings"));
        assert!(receipt_for(&p, &found(100, "254700000001 - Someone")).unwrap_err().contains("phone"));
        assert!(receipt_for(&p, &found(100, "2547 ***** 678")).unwrap_err().contains("phone"));
        let mut unfinished = found(100, "254712345678");
        unfinished.status = Some("Failed".into());
        assert!(receipt_for(&p, &unfinished).unwrap_err().contains("Failed"));
        let mut has = paid_by_query();
        has.receipt = Some(ReceiptNumber::parse("UAB0000000").unwrap());
        assert!(receipt_for(&has, &found(100, "254712345678")).unwrap_err().contains("already"));
        let mut old = found(100, "254712345678");
        old.finalised_at = Some(time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(3));
        assert!(receipt_for(&p, &old).unwrap_err().contains("did not happen while"));
        let mut pending = paid_by_query();
        pending.status = Status::Pending;
        assert!(receipt_for(&pending, &found(100, "254712345678")).is_err());
    }
}
