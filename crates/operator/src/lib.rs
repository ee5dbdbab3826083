//! A shop operator's client of Stockroom: [`OperatorClient`] calls
//! data-service's operator routes (create a product, set its limit and
//! threshold, adjust its stock under an idempotency key, read its ledger),
//! [`dead_letters`] lists and redrives the events consumers refused, and
//! [`token_file`] keeps the operator token where `stockroom up` and
//! `stockroom stock` find it. The `stockroom stock` and `stockroom
//! dead-letters` commands are a thin layer over it.

mod client;
pub mod dead_letters;
pub mod token_file;

pub use client::{MAX_MOVEMENT_PAGES, OperatorClient, OperatorError, SettingsChange, product_path};
