//! zaiko (在庫): an inventory and fulfilment-sync service.
//!
//! # Layout
//! - [`domain`] — the pure domain: state, commands, events, rules; no I/O.
//! - [`journal`] — the write-ahead log: segments, group commit, recovery, verify.
pub mod domain;
pub mod journal;
