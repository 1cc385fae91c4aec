//! The one place that reads wall-clock time. Everything else takes a [`Timestamp`]
//! from a [`Clock`], so tests can run a server on a clock they move by hand.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::domain::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// Moves a manual clock forward; a system clock cannot be moved.
    fn advance(&self, _millis: i64) -> Result<Timestamp, &'static str> {
        Err("this server runs on the system clock; start it with --manual-clock to move time by hand")
    }
}

pub type SharedClock = Arc<dyn Clock>;

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(chrono::Utc::now().timestamp_millis())
    }
}

/// A clock that only moves when told to (tests).
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock(AtomicI64::new(start.0))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::Acquire))
    }

    fn advance(&self, millis: i64) -> Result<Timestamp, &'static str> {
        if millis < 0 {
            return Err("time only moves forward");
        }
        Ok(Timestamp(self.0.fetch_add(millis, Ordering::AcqRel) + millis))
    }
}
