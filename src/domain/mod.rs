//! The pure domain: state, commands, events, and the rules between them.
//!
//! Architecture invariant: nothing here does I/O, reads a clock, spawns a thread or
//! knows about HTTP. Time comes in as a [`Timestamp`]; the outside world comes in as
//! plain data ([`brand::World`]).

pub mod alerts;
pub mod brand;
pub mod catalog;
pub mod channel;
pub mod error;
pub mod event;
pub mod fulfilment;
pub mod idempotency;
pub mod ids;
pub mod import;
pub mod registry;
pub mod returns;
pub mod stock;
pub mod text;
pub mod time;
pub mod transfer;
pub mod view;
pub mod webhook;

pub use error::{ErrorCode, FieldError, Rejection};
pub use ids::{BrandId, Id};
pub use time::Timestamp;

/// Log sequence number: the position of a record in the journal, starting at 1. The
/// journal hands it out; the domain keeps it with what a record changed (a partition's
/// last applied record, an idempotency outcome's record).
pub type Lsn = u64;
