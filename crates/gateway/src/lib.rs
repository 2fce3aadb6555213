//! The Lipa gateway: payments API, exactly-once callback settlement, reconciliation.
//!
//! A payment's way: the merchant's app asks for a payment; the row is written `pending`
//! before the STK push; Daraja's callback (matched by an unguessable per-payment token and
//! the CheckoutRequestID) settles it exactly once in the same commit that stores the raw
//! body; reconciliation queries Daraja for payments whose callback never came, and expires
//! the ones nobody answers.

pub mod admin;
pub mod api;
pub mod budget;
pub mod checkout;
pub mod config;
pub mod export;
pub mod follow;
#[macro_use]
pub mod ids;
pub mod keys;
pub mod mail;
pub mod metrics;
pub mod outbound;
pub mod pages;
pub mod payment;
pub mod pull;
pub mod rate;
pub mod reconciliation;
pub mod redact;
pub mod refund;
pub mod service;
pub mod settlement;
pub mod smtp;
pub mod startup;
pub mod store;
pub mod tally;
pub mod time_fmt;
pub mod webhooks;
pub mod worker;
