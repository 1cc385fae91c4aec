//! How searches and shutdown wake the indexer thread: a search that waits for an LSN
//! the index has not covered yet nudges it, shutdown stops it. Its own file, so that
//! the search handles and the indexer both use it without importing each other.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
struct WakeState {
    nudged: bool,
    stop: bool,
}

/// How searches and shutdown wake the indexer thread.
#[derive(Default)]
pub struct Wake {
    state: Mutex<WakeState>,
    cv: Condvar,
}

impl Wake {
    pub fn nudge(&self) {
        self.state.lock().nudged = true;
        self.cv.notify_one();
    }

    pub(super) fn stop(&self) {
        self.state.lock().stop = true;
        self.cv.notify_one();
    }

    /// Waits for a nudge, a stop or the timeout; returns whether to stop.
    pub(super) fn wait(&self, timeout: Duration) -> bool {
        let mut s = self.state.lock();
        if !s.nudged && !s.stop {
            self.cv.wait_for(&mut s, timeout);
        }
        s.nudged = false;
        s.stop
    }

    /// Rests after a cycle: until `until`, or only until `nudged_until` once a search
    /// nudges (the nudge is kept for the next `wait`); a stop ends the rest. Returns
    /// whether to stop.
    pub(super) fn rest(&self, nudged_until: Instant, until: Instant) -> bool {
        let mut s = self.state.lock();
        loop {
            if s.stop {
                return true;
            }
            let end = if s.nudged { nudged_until } else { until };
            if Instant::now() >= end {
                return false;
            }
            self.cv.wait_until(&mut s, end);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_nudge_shortens_the_rest_and_is_kept_for_the_next_cycle() {
        let wake = Arc::new(Wake::default());
        let far = Instant::now() + Duration::from_secs(3600);
        let w = wake.clone();
        let nudger = std::thread::spawn(move || w.nudge());
        // Without the nudge this rest would last an hour.
        assert!(!wake.rest(Instant::now(), far));
        nudger.join().unwrap();
        assert!(wake.state.lock().nudged, "the nudge starts the cycle after the rest");
        assert!(!wake.wait(Duration::from_secs(3600)), "and the wait does not wait");
    }
}
