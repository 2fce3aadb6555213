//! Refunds on PostgreSQL: each write runs the shared [`Tx`](crate::store::tx) write in one
//! transaction.

use super::{PgTx, PostgresStore, pg_error};
use crate::refund::{Refund, RefundId};
use crate::store::StoreError;
use crate::store::refunds::{self, MessageStored, NewRefund, RefundInserted, RefundMessage, SendOutcome};

impl PostgresStore {
    pub(in crate::store) async fn insert_refund(&self, new: NewRefund) -> Result<RefundInserted, StoreError> {
        in_transaction!(self, |tx| refunds::insert_refund(tx, &new))
    }

    pub(in crate::store) async fn begin_refund_send(
        &self,
        id: RefundId,
        now: i64,
    ) -> Result<Option<Refund>, StoreError> {
        in_transaction!(self, |tx| refunds::begin_send(tx, &id, now))
    }

    pub(in crate::store) async fn record_refund_send(
        &self,
        id: RefundId,
        outcome: SendOutcome,
        now: i64,
    ) -> Result<Refund, StoreError> {
        in_transaction!(self, |tx| refunds::record_send(tx, &id, &outcome, now))
    }

    pub(in crate::store) async fn settle_check_answer(
        &self,
        answer: crate::store::CheckAnswer,
    ) -> Result<Option<crate::store::ReceiptCheck>, StoreError> {
        in_transaction!(self, |tx| crate::store::checks::settle_answer(tx, &answer))
    }

    pub(in crate::store) async fn resolve_refund(
        &self,
        id: RefundId,
        succeeded: bool,
        actor: String,
        note: String,
        now: i64,
    ) -> Result<Option<Refund>, StoreError> {
        in_transaction!(self, |tx| refunds::resolve(tx, &id, succeeded, &actor, &note, now))
    }

    pub(in crate::store) async fn settle_refund_message(
        &self,
        message: RefundMessage,
    ) -> Result<Option<MessageStored>, StoreError> {
        in_transaction!(self, |tx| refunds::settle_message(tx, &message))
    }
}
