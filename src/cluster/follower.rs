//! Hot standbys: following a partition's journal and keeping its state applied, so that a
//! takeover is "catch up the last entries, take the lease", not a full replay.
//!
//! The same [`apply_entry`] serves a standby, the catch-up before a takeover, and a cold
//! start: one replay rule, one fold (`State::apply_payload`), whoever reads.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::stream;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::engine::PartitionId;
use super::entry::{self, Replay, ReplayError, Verdict};
use super::plog;
use crate::state::State;

/// A partition's state as far as its journal has been read.
#[derive(Debug, Clone, Default)]
pub struct Followed {
    pub state: State,
    pub rule: Replay,
}

impl Followed {
    /// Applies the entry at stream sequence `seq`: the replay rule decides, the state
    /// folds the records it accepts. Returns the verdict.
    pub fn apply_entry(&mut self, seq: u64, bytes: &[u8]) -> Result<Verdict, ReplayError> {
        let e = entry::decode(bytes).map_err(|d| ReplayError { seq, detail: d.to_string() })?;
        let verdict = self.rule.judge(seq, &e.header)?;
        if verdict == Verdict::Fenced {
            tracing::warn!(seq, epoch = e.header.epoch, fence = self.rule.epoch, "ignored an entry of a fenced owner");
        }
        if verdict == Verdict::Apply {
            for (lsn, payload) in &e.records {
                self.state.apply_payload(*lsn, payload).map_err(|detail| ReplayError { seq, detail: format!("lsn {lsn}: {detail}") })?;
            }
        }
        Ok(verdict)
    }

    /// Reads and applies everything on the subject after what was applied, up to its
    /// last entry when called.
    pub async fn catch_up(&mut self, stream: &stream::Stream, partition: PartitionId) -> Result<(), ReplayError> {
        let after = self.rule.last_seq;
        plog::read_entries(stream, &partition.subject(), after, None, |seq, bytes| {
            self.apply_entry(seq, bytes).map(|verdict| count_fenced(partition, verdict))
        })
        .await?;
        Ok(())
    }
}

/// Counts an entry the replay rule ignored because its owner had been fenced.
fn count_fenced(partition: PartitionId, verdict: Verdict) {
    if verdict == Verdict::Fenced {
        metrics::counter!("zaiko_cluster_fenced_entries_total", "partition" => partition.to_string()).increment(1);
    }
}

/// Where a follower stands, for metrics and `/v1/admin/cluster`.
#[derive(Debug, Clone, Default)]
pub struct FollowStatus {
    /// The stream sequence of the last entry applied.
    pub last_seq: u64,
    /// The partition LSN of the last record applied.
    pub lsn: u64,
    /// When the last entry was applied.
    pub applied_at: Option<Instant>,
    /// Set when the journal could not be applied: the follower stopped there.
    pub failed: Option<String>,
    /// Entries of the partition's journal after the last one applied, as the stream
    /// said when it delivered that one: the standby's lag.
    pub lag_entries: u64,
}

/// A running standby of one partition.
pub struct Follower {
    shared: Arc<Mutex<Followed>>,
    status: watch::Receiver<FollowStatus>,
    task: tokio::task::JoinHandle<()>,
}

/// Called after each applied entry with the state (the registry's follower publishes
/// the auth table and locations this way).
pub type OnApplied = Box<dyn FnMut(&State) + Send>;

impl Follower {
    /// Follows `partition` from where `from` stands — or, when nothing is applied yet and
    /// `seed` is given, from the partition's newest snapshot. Must be called on the
    /// cluster runtime.
    pub fn start(
        stream: stream::Stream,
        partition: PartitionId,
        from: Followed,
        mut on_applied: Option<OnApplied>,
        seed: Option<super::snapshots::Snapshots>,
    ) -> Follower {
        let status =
            FollowStatus { last_seq: from.rule.last_seq, lsn: from.rule.next_lsn - 1, applied_at: None, failed: None, lag_entries: 0 };
        let (status_tx, status_rx) = watch::channel(status);
        let shared = Arc::new(Mutex::new(from));
        let state = shared.clone();
        let task = tokio::spawn(async move {
            let unseeded = state.lock().rule.last_seq == 0;
            if let (true, Some(seed)) = (unseeded, seed) {
                match seed.newest(partition).await {
                    Ok(Some(found)) => {
                        if let Some(cb) = on_applied.as_mut() {
                            cb(&found.state);
                        }
                        let (seq, lsn) = (found.rule.last_seq, found.rule.next_lsn - 1);
                        *state.lock() = found;
                        status_tx.send_modify(|s| {
                            s.last_seq = seq;
                            s.lsn = lsn;
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(partition = %partition, error = %e, "cannot read the partition's snapshots; following its whole journal")
                    }
                }
            }
            let start = state.lock().rule.last_seq + 1;
            let fail = |detail: String| status_tx.send_modify(|s| s.failed = Some(detail));
            let mut messages = match plog::ordered_consumer(&stream, &partition.subject(), start).await {
                Ok(m) => m,
                Err(e) => return fail(e),
            };
            while let Some(msg) = messages.next().await {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        // The ordered consumer recreates itself after gaps and errors;
                        // a hard error ends the stream and the controller restarts us.
                        tracing::warn!(partition = %partition, error = %e, "standby consumer error");
                        continue;
                    }
                };
                let Ok((seq, lag)) = msg.info().map(|i| (i.stream_sequence, i.pending)) else { continue };
                let mut f = state.lock();
                if seq <= f.rule.last_seq {
                    continue;
                }
                match f.apply_entry(seq, &msg.payload) {
                    Ok(verdict) => {
                        count_fenced(partition, verdict);
                        if let Some(cb) = on_applied.as_mut() {
                            cb(&f.state);
                        }
                        let lsn = f.rule.next_lsn - 1;
                        drop(f);
                        status_tx.send_modify(|s| {
                            s.last_seq = seq;
                            s.lsn = lsn;
                            s.applied_at = Some(Instant::now());
                            s.lag_entries = lag;
                        });
                    }
                    Err(e) => {
                        tracing::error!(partition = %partition, error = %e, "standby stopped: the partition journal cannot be applied");
                        return fail(e.to_string());
                    }
                }
            }
            fail("the journal consumer ended".to_string());
        });
        Follower { shared, status: status_rx, task }
    }

    pub fn status(&self) -> FollowStatus {
        self.status.borrow().clone()
    }

    /// Whether the follower stopped (an error, or its consumer ended).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops following and hands over the state as far as it was applied.
    pub async fn stop(self) -> Followed {
        self.task.abort();
        let _ = self.task.await;
        Arc::try_unwrap(self.shared).map(Mutex::into_inner).unwrap_or_else(|shared| shared.lock().clone())
    }
}
