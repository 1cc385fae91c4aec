//! A partition's replicated journal: appends queued by the owner's actor, published to
//! the partition's subject one group-commit batch per message, and the reading of a
//! subject for standbys, takeovers and cold starts.
//!
//! The owner's side mirrors the local WAL's: [`ReplicatedJournal::append`] hands out the
//! next LSN at once and queues the record; one publisher task per partition takes
//! everything queued into one entry, publishes it with
//! `Nats-Expected-Last-Subject-Sequence` (the fence: it fails if anyone else wrote to
//! the subject since) and a message id (a retry after a lost ack is stored once), and
//! on the ack — **if the lease is still valid at that moment** — moves the durable LSN.
//! That is cluster mode's output gate. One entry per partition is in flight at a time:
//! the expected sequence of the next is the ack of the one before.
//!
//! The publisher stops — and the partition must be given up, its in-memory state
//! rebuilt from the subject — when the lease runs out before an ack, when another
//! owner's entry is found on the subject, or at shutdown. Records queued or in flight
//! then are never acknowledged: their callers get [`AppendError::Stopped`] (503; they
//! retry with the same Idempotency-Key against whoever owns the partition next).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, context::PublishErrorKind, message::PublishMessage, stream};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use super::entry::{self, ReplayError};
use super::lease::LeaseCell;
use crate::journal::{AppendError, Lsn};

/// Limits of one partition journal.
#[derive(Debug, Clone, Copy)]
pub struct PlogLimits {
    /// Largest record payload accepted.
    pub record_bytes_max: usize,
    /// Largest entry (one message): must stay under the servers' max_payload.
    pub entry_bytes_max: usize,
    /// Most payload bytes queued and not yet acknowledged.
    pub queue_bytes_max: usize,
}

/// Where a partition's durable position stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    pub lsn: Lsn,
    /// The publisher has stopped: nothing after `lsn` will become durable here.
    pub stopped: bool,
}

struct Queue {
    next_lsn: Lsn,
    pending: VecDeque<(Lsn, Vec<u8>)>,
    bytes: usize,
    stopped: bool,
}

struct Inner {
    subject: String,
    lease: Arc<LeaseCell>,
    limits: PlogLimits,
    queue: Mutex<Queue>,
    wake: Notify,
    durable: watch::Sender<Durable>,
    /// Notified with every change of `durable`, for threads that wait outside a runtime.
    durable_cv: parking_lot::Condvar,
    durable_mx: Mutex<()>,
}

/// The owner's handle on a partition journal. Cheap to clone.
#[derive(Clone)]
pub struct ReplicatedJournal {
    inner: Arc<Inner>,
}

/// Why a publisher stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error("another node took the partition's lease")]
    LeaseLost,
    #[error("another owner (epoch {0}) wrote to the partition")]
    Fenced(u64),
    #[error("the partition journal is damaged: {0}")]
    Damaged(String),
    #[error("shutting down")]
    Shutdown,
}

impl ReplicatedJournal {
    /// A journal whose next record gets `next_lsn`, all before it durable, written
    /// under `lease`.
    pub fn new(subject: String, limits: PlogLimits, next_lsn: Lsn, lease: Arc<LeaseCell>) -> ReplicatedJournal {
        let (durable, _) = watch::channel(Durable { lsn: next_lsn - 1, stopped: false });
        let queue = Mutex::new(Queue { next_lsn, pending: VecDeque::new(), bytes: 0, stopped: false });
        let (durable_cv, durable_mx) = (parking_lot::Condvar::new(), Mutex::new(()));
        ReplicatedJournal { inner: Arc::new(Inner { subject, lease, limits, queue, wake: Notify::new(), durable, durable_cv, durable_mx }) }
    }

    /// Queues a record for the next entry and returns its LSN. Never blocks.
    pub fn append(&self, payload: Vec<u8>) -> Result<Lsn, AppendError> {
        let mut q = self.inner.queue.lock();
        if q.stopped {
            return Err(AppendError::Stopped);
        }
        if payload.is_empty() || payload.len() > self.inner.limits.record_bytes_max {
            return Err(AppendError::TooLarge);
        }
        if q.bytes + payload.len() > self.inner.limits.queue_bytes_max {
            return Err(AppendError::Overloaded);
        }
        let lsn = q.next_lsn;
        q.next_lsn += 1;
        q.bytes += payload.len();
        q.pending.push_back((lsn, payload));
        drop(q);
        self.inner.wake.notify_one();
        Ok(lsn)
    }

    pub fn durable_lsn(&self) -> Lsn {
        self.inner.durable.borrow().lsn
    }

    pub fn last_assigned_lsn(&self) -> Lsn {
        self.inner.queue.lock().next_lsn - 1
    }

    pub fn is_stopped(&self) -> bool {
        self.inner.durable.borrow().stopped
    }

    /// Resolves once `lsn` is durable and the lease valid — what may be answered now,
    /// a write's or a read's; errors if the partition is given up first.
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<(), AppendError> {
        let mut rx = self.inner.durable.subscribe();
        let d = *rx.wait_for(|d| d.lsn >= lsn || d.stopped).await.map_err(|_| AppendError::Stopped)?;
        if d.lsn >= lsn && self.inner.lease.wait_valid().await {
            Ok(())
        } else {
            Err(AppendError::Stopped)
        }
    }

    fn set_durable(&self, f: impl FnOnce(&mut Durable)) {
        let _guard = self.inner.durable_mx.lock();
        self.inner.durable.send_modify(f);
        self.inner.durable_cv.notify_all();
    }

    /// The blocking variant of [`ReplicatedJournal::wait_durable`], bounded by
    /// `timeout`: the durable LSN when `lsn` became durable (and the lease valid) or the
    /// time ran out.
    pub fn wait_durable_blocking(&self, lsn: Lsn, timeout: Duration) -> Result<Lsn, AppendError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut guard = self.inner.durable_mx.lock();
        loop {
            let d = *self.inner.durable.borrow();
            if d.stopped || self.inner.lease.is_lost() {
                return Err(AppendError::Stopped);
            }
            if d.lsn >= lsn && self.inner.lease.valid_at(std::time::Instant::now()) {
                return Ok(d.lsn);
            }
            if self.inner.durable_cv.wait_until(&mut guard, deadline).timed_out() {
                return Ok(self.durable_lsn().min(lsn.saturating_sub(1)));
            }
        }
    }

    /// The lease this journal is written under.
    pub fn lease(&self) -> &Arc<LeaseCell> {
        &self.inner.lease
    }

    /// Gives the partition up: stops taking appends and marks the lease as no longer
    /// ours, so that the publisher ends at its next step instead of waiting for a
    /// renewal — an ack that arrives after the lease lapsed waits for the renewal task,
    /// and the controller stops that task when it gives a partition up.
    pub fn give_up(&self) {
        self.stop();
        self.inner.lease.lose();
    }

    /// Stops taking appends; what is queued is never acknowledged.
    pub fn stop(&self) {
        self.inner.queue.lock().stopped = true;
        self.set_durable(|d| d.stopped = true);
        self.inner.wake.notify_one();
    }

    /// Takes the next batch: everything queued, up to the entry bound (at least one
    /// record). `None` once stopped.
    async fn next_batch(&self) -> Option<Vec<(Lsn, Vec<u8>)>> {
        loop {
            let notified = self.inner.wake.notified();
            {
                let mut q = self.inner.queue.lock();
                if q.stopped {
                    return None;
                }
                if !q.pending.is_empty() {
                    let mut size = entry::ENTRY_HEADER_BYTES;
                    let mut batch = Vec::new();
                    while let Some((_, p)) = q.pending.front() {
                        let frame = crate::journal::format::frame_len(p.len());
                        if !batch.is_empty() && size + frame > self.inner.limits.entry_bytes_max {
                            break;
                        }
                        size += frame;
                        let (lsn, p) = q.pending.pop_front().expect("checked above");
                        q.bytes -= p.len();
                        batch.push((lsn, p));
                    }
                    return Some(batch);
                }
            }
            notified.await;
        }
    }

    /// The publisher: runs until the partition must be given up, and says why.
    /// `last_seq` is the subject's last stream sequence when the owner took over (its
    /// takeover marker's).
    pub async fn publish_loop(self, js: jetstream::Context, stream: stream::Stream, mut last_seq: u64) -> Stopped {
        let lease = self.inner.lease.clone();
        let epoch = lease.epoch();
        let partition = self.inner.subject.rsplit('.').next().unwrap_or_default().to_string();
        let ack_seconds = metrics::histogram!("zaiko_cluster_publish_ack_seconds", "partition" => partition);
        let why = loop {
            let Some(batch) = self.next_batch().await else { break Stopped::Shutdown };
            let first = batch[0].0;
            let last = batch[batch.len() - 1].0;
            let payloads: Vec<&[u8]> = batch.iter().map(|(_, p)| p.as_slice()).collect();
            let body = entry::encode_batch(epoch, first, &payloads);
            let msg_id = format!("{}:{epoch}:{first}", self.inner.subject);
            let sent = std::time::Instant::now();
            let published = publish_fenced(&js, &stream, &self.inner.subject, body.into(), &msg_id, epoch, &mut last_seq, &lease).await;
            ack_seconds.record(sent.elapsed().as_secs_f64());
            match published {
                // The output gate: an ack counts once the lease is valid. An ack that
                // arrives while the lease has lapsed waits for a renewal that still
                // finds our revision (no successor can exist then), or for the loss.
                Ok(()) if lease.wait_valid().await => self.set_durable(|d| d.lsn = last),
                Ok(()) => break Stopped::LeaseLost,
                Err(why) => break why,
            }
        };
        self.stop();
        why
    }
}

/// How long to wait before retrying a publish whose fate is unknown.
const PUBLISH_RETRY: Duration = Duration::from_millis(50);

/// Publishes one entry after `last_seq`, retrying (same message id) while the lease
/// lasts. On success `last_seq` is the entry's sequence. An expected-sequence failure
/// means someone else wrote: entries of older epochs (a fenced owner's late write) are
/// skipped and the publish retried; an entry of a newer epoch means we are fenced.
#[allow(clippy::too_many_arguments)]
async fn publish_fenced(
    js: &jetstream::Context,
    stream: &stream::Stream,
    subject: &str,
    body: bytes::Bytes,
    msg_id: &str,
    epoch: u64,
    last_seq: &mut u64,
    lease: &LeaseCell,
) -> Result<(), Stopped> {
    loop {
        if lease.is_lost() {
            return Err(Stopped::LeaseLost);
        }
        let msg = PublishMessage::build().payload(body.clone()).message_id(msg_id).expected_last_subject_sequence(*last_seq);
        let ack = match js.send_publish(subject.to_string(), msg).await {
            Ok(fut) => fut.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(ack) => {
                *last_seq = ack.sequence;
                return Ok(());
            }
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                let mut newer = None;
                read_entries(stream, subject, *last_seq, None, |seq, bytes| {
                    let header = entry::decode(bytes).map_err(|d| ReplayError { seq, detail: d.to_string() })?.header;
                    if header.epoch > epoch {
                        newer = Some(header.epoch);
                    }
                    *last_seq = seq;
                    Ok(())
                })
                .await
                .map_err(|e| Stopped::Damaged(e.to_string()))?;
                if let Some(e) = newer {
                    return Err(Stopped::Fenced(e));
                }
                tracing::warn!(subject, last_seq = *last_seq, "skipped entries of a fenced owner on the partition journal");
            }
            Err(e) => {
                tracing::debug!(subject, error = %e, "partition journal publish failed; retrying");
                tokio::time::sleep(PUBLISH_RETRY).await;
            }
        }
    }
}

/// The last stream sequence of `subject` (0 if it has none).
pub async fn last_seq(stream: &stream::Stream, subject: &str) -> Result<u64, String> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => Ok(m.sequence),
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads the entries of `subject` after stream sequence `after`, in order, up to its
/// last entry when called (or up to `until`), calling `f(seq, bytes)` for each.
pub async fn read_entries<F>(stream: &stream::Stream, subject: &str, after: u64, until: Option<u64>, mut f: F) -> Result<u64, ReplayError>
where
    F: FnMut(u64, &[u8]) -> Result<(), ReplayError>,
{
    let fail = |detail: String| ReplayError { seq: after, detail };
    let until = match until {
        Some(u) => u,
        None => last_seq(stream, subject).await.map_err(fail)?,
    };
    if until <= after {
        return Ok(after);
    }
    let mut messages = ordered_consumer(stream, subject, after + 1).await.map_err(fail)?;
    let mut seq = after;
    while seq < until {
        let Some(msg) = messages.next().await else { return Err(fail("the journal consumer ended early".to_string())) };
        let msg = msg.map_err(|e| fail(e.to_string()))?;
        seq = msg.info().map_err(|e| fail(e.to_string()))?.stream_sequence;
        f(seq, &msg.payload)?;
    }
    Ok(seq)
}

/// An ordered consumer of `subject` from stream sequence `start` on: what a standby
/// follows.
pub async fn ordered_consumer(stream: &stream::Stream, subject: &str, start: u64) -> Result<consumer::pull::Ordered, String> {
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    consumer.messages().await.map_err(|e| e.to_string())
}

/// Publishes a takeover marker for the owner of `lease`, whose state has applied every
/// record up to `next_lsn - 1` and read the subject up to `last_seq`. Returns the
/// marker's sequence. An expected-sequence failure means an entry arrived after the
/// catch-up: the caller catches up again and retries.
pub async fn publish_takeover(
    js: &jetstream::Context,
    subject: &str,
    epoch: u64,
    next_lsn: Lsn,
    last_seq: u64,
) -> Result<u64, TakeoverError> {
    let msg = PublishMessage::build()
        .payload(entry::encode_takeover(epoch, next_lsn).into())
        .message_id(format!("{subject}:takeover:{epoch}"))
        .expected_last_subject_sequence(last_seq);
    let ack = match js.send_publish(subject.to_string(), msg).await {
        Ok(fut) => fut.await,
        Err(e) => Err(e),
    };
    match ack {
        Ok(ack) => Ok(ack.sequence),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Err(TakeoverError::Moved),
        Err(e) => Err(TakeoverError::Unavailable(e.to_string())),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    #[error("the subject moved on since the catch-up")]
    Moved,
    #[error("the takeover marker could not be published: {0}")]
    Unavailable(String),
}

impl crate::journal::Log for ReplicatedJournal {
    fn append(&self, payload: Vec<u8>) -> Result<Lsn, AppendError> {
        ReplicatedJournal::append(self, payload)
    }

    fn record_bytes_max(&self) -> usize {
        self.inner.limits.record_bytes_max
    }

    fn durable_lsn(&self) -> Lsn {
        ReplicatedJournal::durable_lsn(self)
    }

    fn last_assigned_lsn(&self) -> Lsn {
        ReplicatedJournal::last_assigned_lsn(self)
    }

    fn wait_durable(&self, lsn: Lsn) -> futures_util::future::BoxFuture<'static, Result<(), AppendError>> {
        let journal = self.clone();
        Box::pin(async move { ReplicatedJournal::wait_durable(&journal, lsn).await })
    }

    fn wait_durable_timeout(&self, lsn: Lsn, timeout: Duration) -> Result<Lsn, AppendError> {
        self.wait_durable_blocking(lsn, timeout)
    }
}
