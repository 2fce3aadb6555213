//! PostgreSQL rows read back into typed values: a payment, the columns settlement needs, a
//! cell of a shared query. A value this version cannot read is an error, never a default.

use tokio_postgres::Row;

use crate::payment::{FailureReason, Payment, PaymentId, SettledBy, Status};
use crate::store::sql::Cell;
use crate::store::{Settling, StoreError};

pub(super) fn settling_from_row(r: &Row) -> Result<Settling, StoreError> {
    Ok(Settling {
        id: PaymentId::from_db(r.get(0)),
        status: Status::parse(r.get(1)).ok_or_else(|| StoreError::corrupt("unknown status"))?,
        amount: crate::store::stored_amount(r.get(2))?,
        phone: daraja::Msisdn::parse(r.get(3)).map_err(|_| StoreError::corrupt("a phone is not a Kenyan MSISDN"))?,
        checkout_request_id: crate::store::daraja_id(r.get(4), daraja::CheckoutRequestId::parse)?,
        receipt: crate::store::daraja_id(r.get(5), daraja::ReceiptNumber::parse)?,
        result_code: r.get(6),
        settled_by: r
            .get::<_, Option<&str>>(7)
            .map(|s| SettledBy::parse(s).ok_or_else(|| StoreError::corrupt("unknown settled_by")))
            .transpose()?,
    })
}

pub(super) fn pg_cell(r: &Row, i: usize) -> Result<Cell, StoreError> {
    use tokio_postgres::types::Type;
    let ty = r.columns().get(i).map(|c| c.type_().clone()).ok_or_else(|| StoreError::corrupt("no such column"))?;
    let cell = match ty {
        Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map_or(Cell::Null, Cell::Int)),
        Type::INT4 => r.try_get::<_, Option<i32>>(i).map(|v| v.map_or(Cell::Null, |v| Cell::Int(v.into()))),
        Type::INT2 => r.try_get::<_, Option<i16>>(i).map(|v| v.map_or(Cell::Null, |v| Cell::Int(v.into()))),
        Type::BOOL => r.try_get::<_, Option<bool>>(i).map(|v| v.map_or(Cell::Null, |v| Cell::Int(v.into()))),
        #[allow(clippy::cast_possible_truncation)]
        Type::FLOAT8 => r.try_get::<_, Option<f64>>(i).map(|v| v.map_or(Cell::Null, |v| Cell::Int(v.round() as i64))),
        Type::BYTEA => r
            .try_get::<_, Option<Vec<u8>>>(i)
            .map(|v| v.map_or(Cell::Null, |v| Cell::Text(String::from_utf8_lossy(&v).into_owned()))),
        _ => r.try_get::<_, Option<String>>(i).map(|v| v.map_or(Cell::Null, Cell::Text)),
    };
    cell.map_err(|e| StoreError::corrupt(format_args!("column {i}: {e}")))
}

pub(super) fn payment_from_row(r: &Row) -> Result<Payment, StoreError> {
    Ok(Payment {
        id: PaymentId::from_db(r.get(0)),
        status: Status::parse(r.get(1)).ok_or_else(|| StoreError::corrupt("unknown status"))?,
        amount: crate::store::stored_amount(r.get(2))?,
        phone: daraja::Msisdn::parse(r.get(3)).map_err(|_| StoreError::corrupt("a phone is not a Kenyan MSISDN"))?,
        account_reference: r.get(4),
        description: r.get(5),
        metadata: serde_json::from_str(r.get::<_, &str>(6)).map_err(|_| StoreError::corrupt("metadata is not JSON"))?,
        webhook_url: r.get(7),
        customer_email: r.get(8),
        merchant_request_id: crate::store::daraja_id(r.get(9), daraja::MerchantRequestId::parse)?,
        checkout_request_id: crate::store::daraja_id(r.get(10), daraja::CheckoutRequestId::parse)?,
        receipt: crate::store::daraja_id(r.get(11), daraja::ReceiptNumber::parse)?,
        transaction_date: r.get(12),
        failure_reason: r
            .get::<_, Option<&str>>(13)
            .map(|s| FailureReason::parse(s).ok_or_else(|| StoreError::corrupt("unknown reason")))
            .transpose()?,
        result_code: r.get(14),
        result_desc: r.get(15),
        settled_by: r
            .get::<_, Option<&str>>(16)
            .map(|s| SettledBy::parse(s).ok_or_else(|| StoreError::corrupt("unknown settled_by")))
            .transpose()?,
        needs_review: r.get(17),
        created_at: r.get(18),
        updated_at: r.get(19),
        settled_at: r.get(20),
        callback_token_hash: r.get(21),
        api_key_id: r.get(22),
        paybill_account: r.get(23),
        amount_received: crate::store::received(r.get(24))?,
        refunded_amount: crate::store::received(r.get(25))?,
        paybill: None,
    })
}
