//! Refunds on SQLite: each write runs the shared [`Tx`](crate::store::tx) write in the writer.

use super::{SqliteStore, SqliteTx, at_once};
use crate::refund::{Refund, RefundId};
use crate::store::StoreError;
use crate::store::refunds::{self, MessageStored, NewRefund, RefundInserted, RefundMessage, SendOutcome};

impl SqliteStore {
    pub(in crate::store) async fn insert_refund(&self, new: NewRefund) -> Result<RefundInserted, StoreError> {
        self.write(move |c| at_once(refunds::insert_refund(&mut SqliteTx(c), &new))).await
    }

    pub(in crate::store) async fn begin_refund_send(
        &self,
        id: RefundId,
        now: i64,
    ) -> Result<Option<Refund>, StoreError> {
        self.write(move |c| at_once(refunds::begin_send(&mut SqliteTx(c), &id, now))).await
    }

    pub(in crate::store) async fn record_refund_send(
        &self,
        id: RefundId,
        outcome: SendOutcome,
        now: i64,
    ) -> Result<Refund, StoreError> {
        self.write(move |c| at_once(refunds::record_send(&mut SqliteTx(c), &id, &outcome, now))).await
    }

    pub(in crate::store) async fn settle_check_answer(
        &self,
        answer: crate::store::CheckAnswer,
    ) -> Result<Option<crate::store::ReceiptCheck>, StoreError> {
        self.write(move |c| at_once(crate::store::checks::settle_answer(&mut SqliteTx(c), &answer))).await
    }

    pub(in crate::store) async fn resolve_refund(
        &self,
        id: RefundId,
        succeeded: bool,
        actor: String,
        note: String,
        now: i64,
    ) -> Result<Option<Refund>, StoreError> {
        self.write(move |c| at_once(refunds::resolve(&mut SqliteTx(c), &id, succeeded, &actor, &note, now))).await
    }

    pub(in crate::store) async fn settle_refund_message(
        &self,
        message: RefundMessage,
    ) -> Result<Option<MessageStored>, StoreError> {
        self.write(move |c| at_once(refunds::settle_message(&mut SqliteTx(c), &message))).await
    }
}
