//! zaiko (在庫): an inventory and fulfilment-sync service.
//!
//! # Layout
//! - [`journal`] — the write-ahead log: segments, group commit, recovery, verify.
pub mod journal;
