//! The delivery workers: one task per subscription, all on the webhook arbiter (one
//! thread of its own, so deliveries never run on the HTTP or shard threads).
//!
//! A worker keeps the subscription's queued deliveries in memory (at most
//! `queue_max` taken from the feed, the rest of the backlog waits in the feed store)
//! and runs up to `lanes` attempts at once, under the global bound on attempts in
//! flight. Order per key: a delivery is tried only when no earlier queued delivery of
//! the same key (the SKU, reservation or shipment) is still waiting, so a receiver
//! sees each SKU's events in feed order. A delivery that fails waits for its retry
//! (the schedule) while other keys go on; one that fails every retry is `dead` and no
//! longer holds its key back. A subscription whose last attempt failed runs one lane
//! only, so a dead endpoint holds at most one of the global slots.
//!
//! The manager task follows the subscriptions table of the feed store: it starts a
//! worker for each new subscription and stops (and forgets the deliveries of) each
//! deleted one.
//!
//! A store or feed read that fails (a full disk, no descriptors) is tried again after
//! a bounded exponential backoff ([`RETRY_DELAY_MIN`] to [`RETRY_DELAY_MAX`]), not
//! only at the next feed change: a quiet brand would otherwise never be delivered to
//! again. The store thread reports the failures to the health registry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use awc::http::header;
use rand::Rng;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::sign::sign;
use super::store::{Db, Delivery, Op, Outcome, Status, LOAD_MAX};
use super::target::{self, Target};
use super::{DeadLetter, Handover, WebhookConfig, DEAD_HANDED_MAX};
use crate::feed::store::{load_webhooks, WebhookRow};
use crate::feed::Feed;

/// Most bytes of a receiver's answer read (and dropped) so the connection is reused.
const RESPONSE_BYTES_MAX: usize = 64 << 10;
/// How long reading (and dropping) an answer's body may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Retry delays vary by this fraction either way, so retries of many subscriptions
/// do not arrive together.
const JITTER: f64 = 0.1;
/// First and longest wait before a failed store or feed read is tried again.
pub const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(30);

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A message to one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctl {
    /// The stored queue or cursor changed (redrive, replay): read them again.
    Reload,
    Stop,
}

/// What every worker of the arbiter shares.
pub struct Shared {
    pub db: Db,
    pub feed: Feed,
    pub cfg: Arc<WebhookConfig>,
    pub permits: Arc<Semaphore>,
    pub client: awc::Client,
    /// Cluster mode: which subscriptions are this node's, and their positions between
    /// owners.
    pub handover: Option<Arc<dyn Handover>>,
}

/// Cluster mode: how often the manager looks at which brands this node owns, and how
/// often a worker hands its delivered watermark over (when it moved).
pub const HANDOVER_INTERVAL: Duration = Duration::from_secs(1);

/// The result of one attempt.
struct Attempt {
    seq: u64,
    at_ms: i64,
    result: Result<u16, (Option<u16>, String)>,
}

/// The manager: keeps one worker per subscription of the feed store's table.
pub async fn run_manager(shared: Rc<Shared>, mut ctl_rx: UnboundedReceiver<(String, Ctl)>) {
    let health = crate::health::global().worker(crate::health::Worker::Webhooks);
    let _stopped = health.until_dropped();
    let mut hooks_rx = shared.feed.hooks_watch();
    let mut workers: HashMap<String, UnboundedSender<Ctl>> = HashMap::new();
    let (mut stale, mut first) = (true, true);
    let mut backoff = crate::health::Backoff::new(RETRY_DELAY_MIN, RETRY_DELAY_MAX);
    let mut retry_at: Option<Instant> = None;
    loop {
        if stale && retry_at.is_none_or(|at| Instant::now() >= at) {
            match shared.feed.with_reader(|c| load_webhooks(c)).await {
                Ok(rows) => {
                    if std::mem::take(&mut first) {
                        let webhooks = rows.iter().map(|r| r.id.clone()).collect();
                        let _ = shared.db.send(Op::RetainOnly { webhooks }).await;
                    }
                    sync_workers(&shared, &mut workers, rows).await;
                    stale = false;
                    backoff.reset();
                    retry_at = None;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    let attempts = health.failed(&e);
                    tracing::error!(error = %e, attempts, retry_ms = delay.as_millis() as u64, "cannot read the webhook subscriptions; retrying");
                    retry_at = Some(Instant::now() + delay);
                }
            }
        }
        // In cluster mode ownership moves without a subscription changing: look again.
        let idle = if shared.handover.is_some() { HANDOVER_INTERVAL } else { Duration::from_secs(3600) };
        let wake = retry_at.unwrap_or_else(|| Instant::now() + idle);
        tokio::select! {
            changed = hooks_rx.changed() => match changed {
                Ok(()) => stale = true,
                Err(_) => break,
            },
            msg = ctl_rx.recv() => match msg {
                Some((id, ctl)) => {
                    if let Some(w) = workers.get(&id) {
                        let _ = w.send(ctl);
                    }
                }
                None => break,
            },
            _ = tokio::time::sleep_until(wake) => stale |= shared.handover.is_some(),
        }
    }
}

async fn sync_workers(shared: &Rc<Shared>, workers: &mut HashMap<String, UnboundedSender<Ctl>>, rows: Vec<WebhookRow>) {
    let ids: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let gone: Vec<String> = workers.keys().filter(|id| !ids.contains(id.as_str())).cloned().collect();
    for id in gone {
        if let Some(w) = workers.remove(&id) {
            let _ = w.send(Ctl::Stop);
        }
        let _ = shared.db.send(Op::Remove { webhook: id.clone() }).await;
        if let Some(h) = &shared.handover {
            if let Err(e) = h.forget(&id).await {
                tracing::warn!(webhook = %id, error = %e, "cannot forget a deleted webhook's handed-over position");
            }
        }
        tracing::info!(webhook = %id, "webhook deleted; its deliveries stop");
    }
    // Cluster mode: only the subscriptions of brands whose partition this node owns.
    let owns = |row: &WebhookRow| shared.handover.as_ref().is_none_or(|h| h.owns(&row.brand));
    let moved: Vec<String> = rows.iter().filter(|r| !owns(r) && workers.contains_key(&r.id)).map(|r| r.id.clone()).collect();
    for id in moved {
        if let Some(w) = workers.remove(&id) {
            let _ = w.send(Ctl::Stop);
        }
        tracing::info!(webhook = %id, "this node no longer owns the webhook's brand; its deliveries stop here");
    }
    for row in rows {
        if workers.contains_key(&row.id) || !owns(&row) {
            continue;
        }
        let (tx, rx) = unbounded_channel();
        workers.insert(row.id.clone(), tx);
        tracing::info!(webhook = %row.id, brand = %row.brand, "webhook deliveries start");
        actix_rt::spawn(Worker::new(row, shared.clone()).run(rx));
    }
}

struct Worker {
    hook: WebhookRow,
    target: Result<Target, String>,
    shared: Rc<Shared>,
    queue: BTreeMap<u64, Delivery>,
    inflight: HashSet<u64>,
    /// The last attempt succeeded (or there was none): all lanes may be used.
    healthy: bool,
    /// The cursor reached the brand's last event: wait for the feed to grow.
    feed_done: bool,
    /// The table holds more queued deliveries than were loaded.
    db_more: bool,
    /// Cluster mode: the watermark last handed over, and when; whether it may have
    /// moved since.
    handed: (Option<u64>, Instant),
    /// Cluster mode: the dead deliveries last handed over.
    handed_dead: Option<Vec<DeadLetter>>,
    moved: bool,
    results_tx: UnboundedSender<Attempt>,
    results_rx: UnboundedReceiver<Attempt>,
}

impl Worker {
    fn new(hook: WebhookRow, shared: Rc<Shared>) -> Worker {
        let target = target::parse(&hook.url);
        let (results_tx, results_rx) = unbounded_channel();
        Worker {
            hook,
            target,
            shared,
            queue: BTreeMap::new(),
            inflight: HashSet::new(),
            healthy: true,
            feed_done: false,
            db_more: false,
            handed: (None, Instant::now()),
            handed_dead: None,
            moved: false,
            results_tx,
            results_rx,
        }
    }

    async fn run(mut self, mut ctl: UnboundedReceiver<Ctl>) {
        let mut brand_rx = self.shared.feed.brand_watch(&self.hook.brand);
        let mut backoff = crate::health::Backoff::new(RETRY_DELAY_MIN, RETRY_DELAY_MAX);
        // After a failed load or enqueue: when to try again (the store or the feed
        // failed; see the health registry).
        let mut retry_at: Option<Instant> = None;
        let mut loaded = false;
        loop {
            if retry_at.is_none_or(|at| Instant::now() >= at) {
                retry_at = None;
                if !loaded {
                    loaded = self.adopt().await && self.load().await;
                }
                if loaded && self.top_up().await {
                    backoff.reset();
                } else {
                    retry_at = Some(Instant::now() + backoff.next_delay());
                }
            }
            self.dispatch();
            let hand_over_at = self.moved.then(|| self.handed.1 + HANDOVER_INTERVAL);
            if hand_over_at.is_some_and(|at| Instant::now() >= at) {
                self.hand_over().await;
                continue;
            }
            let deadline = [self.next_due(), retry_at, hand_over_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                Some(a) = self.results_rx.recv() => self.finish(a).await,
                changed = brand_rx.changed() => match changed {
                    Ok(()) => self.feed_done = false,
                    Err(_) => break,
                },
                c = ctl.recv() => match c {
                    Some(Ctl::Reload) => {
                        self.feed_done = false;
                        loaded = false;
                        retry_at = None;
                    }
                    Some(Ctl::Stop) | None => break,
                },
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        if self.moved {
            self.hand_over().await;
        }
        tracing::debug!(webhook = %self.hook.id, "webhook worker stopped");
    }

    /// Cluster mode: goes on from the position the previous owner handed over (if it
    /// is ahead of this node's own). False when it could not be read (to be tried
    /// again: starting from this node's own, older position would send again what was
    /// delivered since).
    async fn adopt(&mut self) -> bool {
        let Some(h) = self.shared.handover.clone() else { return true };
        let through = match h.read(self.hook.id.as_str()).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(webhook = %self.hook.id, error = %e, "cannot read the webhook's handed-over position; retrying");
                return false;
            }
        };
        if let Some(through) = through {
            let (webhook, brand) = (self.hook.id.clone(), self.hook.brand.clone());
            if let Err(e) = self.shared.db.ask(|reply| Op::Adopt { webhook, brand, through, reply }).await {
                tracing::error!(webhook = %self.hook.id, error = %e, "cannot take the handed-over position over; retrying");
                return false;
            }
            self.handed = (Some(through), Instant::now());
            tracing::info!(webhook = %self.hook.id, through, "webhook deliveries go on after the handed-over position");
        }
        self.adopt_dead(h.as_ref()).await
    }

    /// Cluster mode: the previous owner's dead deliveries, so that they can be listed
    /// and redriven here. False when they could not be read or stored (to be tried
    /// again).
    async fn adopt_dead(&mut self, h: &dyn Handover) -> bool {
        let dead = match h.read_dead(self.hook.id.as_str()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(webhook = %self.hook.id, error = %e, "cannot read the webhook's handed-over dead deliveries; retrying");
                return false;
            }
        };
        if dead.is_empty() {
            return true;
        }
        let (webhook, brand) = (self.hook.id.clone(), self.hook.brand.clone());
        match self.shared.db.ask(|reply| Op::AdoptDead { webhook, brand, dead, reply }).await {
            Ok(added) => {
                if added > 0 {
                    tracing::info!(webhook = %self.hook.id, added, "took over the previous owner's dead deliveries");
                }
                true
            }
            Err(e) => {
                tracing::error!(webhook = %self.hook.id, error = %e, "cannot take the handed-over dead deliveries over; retrying");
                false
            }
        }
    }

    /// Cluster mode: writes the delivered watermark where the next owner reads it.
    async fn hand_over(&mut self) {
        let Some(h) = self.shared.handover.clone() else { return };
        self.moved = false;
        self.handed.1 = Instant::now();
        let webhook = self.hook.id.clone();
        let through = match self.shared.db.ask(|reply| Op::Watermark { webhook, reply }).await {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(webhook = %self.hook.id, error = %e, "cannot read the delivered watermark");
                self.moved = true;
                return;
            }
        };
        if self.handed.0 != Some(through) {
            match h.write(self.hook.id.as_str(), through).await {
                Ok(()) => self.handed.0 = Some(through),
                Err(e) => {
                    tracing::warn!(webhook = %self.hook.id, error = %e, "cannot hand the delivered watermark over; trying again");
                    self.moved = true;
                }
            }
        }
        let webhook = self.hook.id.clone();
        let dead = match self.shared.db.ask(|reply| Op::Dead { webhook, max: DEAD_HANDED_MAX, reply }).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(webhook = %self.hook.id, error = %e, "cannot read the dead deliveries");
                self.moved = true;
                return;
            }
        };
        // Nothing handed yet and nothing dead: nothing to say.
        if self.handed_dead.as_ref().map_or(dead.is_empty(), |d| *d == dead) {
            return;
        }
        match h.write_dead(self.hook.id.as_str(), dead.clone()).await {
            Ok(()) => self.handed_dead = Some(dead),
            Err(e) => {
                tracing::warn!(webhook = %self.hook.id, error = %e, "cannot hand the dead deliveries over; trying again");
                self.moved = true;
            }
        }
    }

    /// Reads the stored queue, keeping what is already held (with its live state).
    /// False when the store failed (to be tried again).
    async fn load(&mut self) -> bool {
        let (webhook, brand, start_seq) = (self.hook.id.clone(), self.hook.brand.clone(), self.hook.start_seq);
        match self.shared.db.ask(|reply| Op::Load { webhook, brand, start_seq, reply }).await {
            Ok((rows, more)) => {
                for d in rows {
                    self.queue.entry(d.seq).or_insert(d);
                }
                self.db_more = more;
                true
            }
            Err(e) => {
                tracing::error!(webhook = %self.hook.id, error = %e, "cannot load queued deliveries; retrying");
                false
            }
        }
    }

    /// Queues events from the feed until the queue is full or the feed is exhausted,
    /// once the queue is down to half its bound. False when the store failed (to be
    /// tried again).
    async fn top_up(&mut self) -> bool {
        if self.db_more {
            if self.queue.len() < LOAD_MAX / 2 {
                return self.load().await;
            }
            return true;
        }
        let max = self.shared.cfg.queue_max;
        // Refill only once half the queue is done, so that one enqueue (a round trip
        // to the store thread) serves many deliveries.
        if self.queue.len() >= max.div_ceil(2) {
            return true;
        }
        while !self.feed_done && self.queue.len() < max {
            let (webhook, brand, types) = (self.hook.id.clone(), self.hook.brand.clone(), self.hook.events.clone());
            let limit = max - self.queue.len();
            match self.shared.db.ask(|reply| Op::Enqueue { webhook, brand, types, limit, now_ms: now_ms(), reply }).await {
                Ok(e) => {
                    // The cursor may have moved past events of other types.
                    self.moved |= self.shared.handover.is_some();
                    self.feed_done = e.at_end;
                    for d in e.added {
                        self.queue.insert(d.seq, d);
                    }
                }
                Err(e) => {
                    tracing::error!(webhook = %self.hook.id, error = %e, "cannot queue deliveries; retrying");
                    return false;
                }
            }
        }
        true
    }

    /// Starts the attempts that may run now.
    fn dispatch(&mut self) {
        let lanes = if self.healthy { self.shared.cfg.lanes } else { 1 };
        let now = now_ms();
        let mut keys: HashSet<&str> = HashSet::new();
        let mut start = Vec::new();
        for (seq, d) in &self.queue {
            if self.inflight.len() + start.len() >= lanes {
                break;
            }
            // Only the first queued delivery of each key may be tried.
            let first_of_key = keys.insert(d.key.as_str());
            if first_of_key && !self.inflight.contains(seq) && d.next_attempt_ms <= now {
                start.push(*seq);
            }
        }
        for seq in start {
            self.inflight.insert(seq);
            let d = &self.queue[&seq];
            let job = attempt(self.shared.clone(), self.target.clone(), self.hook.secret.clone(), d.event_id.clone(), d.body.clone());
            let tx = self.results_tx.clone();
            actix_rt::spawn(async move {
                let at_ms = now_ms();
                let result = job.await;
                let _ = tx.send(Attempt { seq, at_ms, result });
            });
        }
    }

    /// When the next retry is due (of deliveries that are not waiting on another).
    fn next_due(&self) -> Option<Instant> {
        let now = now_ms();
        let ms =
            self.queue.values().filter(|d| !self.inflight.contains(&d.seq) && d.next_attempt_ms > now).map(|d| d.next_attempt_ms).min()?;
        Some(Instant::now() + Duration::from_millis((ms - now) as u64))
    }

    async fn finish(&mut self, a: Attempt) {
        self.inflight.remove(&a.seq);
        self.moved = self.shared.handover.is_some();
        let schedule = &self.shared.cfg.schedule;
        let Some(d) = self.queue.get_mut(&a.seq) else { return };
        d.attempts += 1;
        let mut outcome = Outcome {
            webhook: self.hook.id.clone(),
            seq: a.seq,
            status: Status::Delivered,
            attempts: d.attempts,
            next_attempt_ms: a.at_ms,
            at_ms: a.at_ms,
            http_status: None,
            error: None,
        };
        match a.result {
            Ok(status) => {
                self.healthy = true;
                outcome.http_status = Some(status);
                self.queue.remove(&a.seq);
            }
            Err((status, error)) => {
                self.healthy = false;
                outcome.http_status = status;
                outcome.error = Some(error);
                match schedule.get(d.attempts as usize - 1) {
                    Some(delay) => {
                        d.next_attempt_ms = a.at_ms + jittered(*delay).as_millis() as i64;
                        outcome.status = Status::Failed;
                        outcome.next_attempt_ms = d.next_attempt_ms;
                    }
                    None => {
                        outcome.status = Status::Dead;
                        tracing::warn!(webhook = %self.hook.id, seq = a.seq, attempts = d.attempts, error = outcome.error.as_deref().unwrap_or(""), "webhook delivery is dead after its last retry");
                        self.queue.remove(&a.seq);
                    }
                }
            }
        }
        metrics::counter!("zaiko_webhook_attempts_total", "outcome" => outcome.status.as_str()).increment(1);
        if let Err(e) = self.shared.db.send(Op::Record(outcome)).await {
            tracing::error!(webhook = %self.hook.id, error = %e, "cannot record a delivery outcome");
        }
    }
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(1.0 + rand::rng().random_range(-JITTER..=JITTER))
}

/// One attempt: within the timeout, a 2xx is success; anything else is a failure with
/// the status (if any) and a reason.
async fn attempt(
    shared: Rc<Shared>,
    target: Result<Target, String>,
    secret: String,
    id: String,
    body: Arc<str>,
) -> Result<u16, (Option<u16>, String)> {
    let _permit = shared.permits.clone().acquire_owned().await.map_err(|_| (None, "stopping".to_string()))?;
    let target = target.map_err(|e| (None, format!("the url {e}")))?;
    let timeout = shared.cfg.timeout;
    let send = send(&shared, &target, &secret, &id, &body);
    match tokio::time::timeout(timeout, send).await {
        Ok(r) => r,
        Err(_) => Err((None, format!("no answer within {} ms", timeout.as_millis()))),
    }
}

async fn send(shared: &Shared, t: &Target, secret: &str, id: &str, body: &str) -> Result<u16, (Option<u16>, String)> {
    let addr = target::resolve(t, shared.cfg.allow_private).await.map_err(|e| (None, e))?;
    let ts = now_ms() / 1000;
    let signature = sign(secret, id, ts, body.as_bytes()).ok_or((None, "the webhook secret is not valid base64".to_string()))?;
    let mut resp = shared
        .client
        .post(t.uri.clone())
        .address(addr)
        .insert_header(("webhook-id", id))
        .insert_header(("webhook-timestamp", ts.to_string()))
        .insert_header(("webhook-signature", signature))
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .send_body(body.to_string())
        .await
        .map_err(|e| (None, e.to_string()))?;
    let status = resp.status().as_u16();
    // Read the answer so the connection can be reused; its content does not matter,
    // and the outcome does not wait for it.
    actix_rt::spawn(async move {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, resp.body().limit(RESPONSE_BYTES_MAX)).await;
    });
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err((Some(status), format!("the receiver answered {status}")))
    }
}
