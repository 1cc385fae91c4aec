//! Webhooks per the Standard Webhooks spec: deliveries of the change feed to the
//! brands' endpoints, at least once, in order per key (SKU, reservation, shipment),
//! signed, retried on a schedule, then `dead` until redriven.
//!
//! * [`sign`] — `webhook-signature` (HMAC-SHA256) and secrets.
//! * [`target`] — which URLs may receive webhooks (http(s); no private addresses
//!   unless allowed).
//! * [`store`] — `webhooks.sqlite`: per-subscription cursor and delivery rows, on a
//!   thread of its own with group commit.
//! * [`worker`] — the manager and one worker per subscription, on an arbiter (thread)
//!   of their own.
//!
//! Subscriptions themselves are brand state (`domain::webhook`, through the WAL); the
//! feed store keeps a projection of them that the manager follows. Nothing here is on
//! the write path: a slow or dead endpoint slows neither writes nor other subscribers.

pub mod sign;
pub mod store;
pub mod target;
pub mod worker;

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::Semaphore;

use crate::feed::Feed;
use store::{Db, DeliveryView, Op, Status};
use worker::{now_ms, Ctl, Shared};

/// Retry delays after the first attempt: 9 attempts over about 10.7 hours, then dead.
pub const RETRY_SCHEDULE_DEFAULT: &str = "5s,30s,2m,10m,30m,1h,3h,6h";
/// Success is a 2xx within this time.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deliveries taken from the feed and not yet finished, per subscription.
pub const QUEUE_MAX_DEFAULT: usize = 1000;
/// Attempts at once per subscription whose last attempt succeeded (one otherwise).
pub const LANES_DEFAULT: usize = 8;
/// Attempts at once over all subscriptions.
pub const IN_FLIGHT_MAX_DEFAULT: usize = 64;
/// Longest retry delay accepted in a schedule, and most retries.
const RETRY_DELAY_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
const RETRIES_MAX: usize = 30;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub path: PathBuf,
    /// Delay before each retry; after the last, the delivery is dead.
    pub schedule: Vec<Duration>,
    pub timeout: Duration,
    pub queue_max: usize,
    pub lanes: usize,
    pub in_flight_max: usize,
    /// Deliver to loopback and private addresses too.
    pub allow_private: bool,
}

/// Parses a retry schedule such as `5s,30s,2m,1h` (units ms, s, m, h).
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    let delays: Vec<Duration> = s
        .split(',')
        .map(|part| {
            let part = part.trim();
            let (num, unit) = part.split_at(part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len()));
            let n: u64 = num.parse().map_err(|_| format!("{part:?} is not a number with a unit (ms, s, m, h)"))?;
            let d = match unit {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n * 60),
                "h" => Duration::from_secs(n * 3600),
                _ => return Err(format!("{part:?} has no unit (ms, s, m, h)")),
            };
            if d.is_zero() || d > RETRY_DELAY_MAX {
                return Err(format!("{part:?} must be more than zero and at most 7 days"));
            }
            Ok(d)
        })
        .collect::<Result<_, _>>()?;
    if delays.len() > RETRIES_MAX {
        return Err(format!("at most {RETRIES_MAX} retries"));
    }
    Ok(delays)
}

/// A boxed future of the handover's calls.
pub type HandoverFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + Send>>;

/// Cluster mode: which subscriptions this node delivers (those of brands whose partition
/// it owns) and where the delivery position of each is kept between owners (the
/// cluster's KV store), so that a new owner goes on where the old one stood instead of
/// where its own file last saw it. Positions are watermarks: every event at or before
/// one was delivered, dead, or not of the subscription's types.
pub trait Handover: Send + Sync {
    /// Whether this node delivers the brand's subscriptions now.
    fn owns(&self, brand: &crate::domain::BrandId) -> bool;
    fn read(&self, webhook: &str) -> HandoverFuture<Option<u64>>;
    fn write(&self, webhook: &str, through: u64) -> HandoverFuture<()>;
    /// The subscription's dead deliveries as the last owner handed them over.
    fn read_dead(&self, webhook: &str) -> HandoverFuture<Vec<DeadLetter>>;
    fn write_dead(&self, webhook: &str, dead: Vec<DeadLetter>) -> HandoverFuture<()>;
    /// Forgets the position and the dead deliveries (a deleted subscription).
    fn forget(&self, webhook: &str) -> HandoverFuture<()>;
}

/// Dead deliveries handed from one owner to the next, newest first, at most this many
/// per subscription (`GET .../deliveries` keeps more on the node that made them).
pub const DEAD_HANDED_MAX: usize = 1000;

/// A dead delivery as handed between owners: enough to list it and to redrive it (its
/// event is read again from the feed, the same on every node).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    pub seq: u64,
    pub attempts: u32,
    pub last_attempt_ms: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// A handle to the delivery side, for the HTTP routes.
#[derive(Clone)]
pub struct Webhooks {
    db: Db,
    ctl: UnboundedSender<(String, Ctl)>,
    cfg: Arc<WebhookConfig>,
}

impl Webhooks {
    /// Opens the delivery store and starts the manager on an arbiter of its own. Must
    /// run inside an actix `System`.
    pub fn start(cfg: WebhookConfig, feed: Feed, handover: Option<Arc<dyn Handover>>) -> Result<Webhooks, store::StartError> {
        let db = store::start(&cfg.path, feed.path(), feed.history())?;
        let cfg = Arc::new(cfg);
        let (ctl, ctl_rx) = unbounded_channel();
        let arbiter = actix_rt::Arbiter::new();
        let (db2, cfg2) = (db.clone(), cfg.clone());
        arbiter.spawn_fn(move || {
            crate::background::run_in_background();
            // The HTTP client is built on the arbiter's thread: it is not `Send`.
            let client = awc::Client::builder()
                .timeout(cfg2.timeout)
                .disable_redirects()
                .add_default_header((awc::http::header::USER_AGENT, "zaiko-webhooks/1"))
                .finish();
            let permits = Arc::new(Semaphore::new(cfg2.in_flight_max));
            let shared = Rc::new(Shared { db: db2, feed, cfg: cfg2, permits, client, handover });
            actix_rt::spawn(worker::run_manager(shared, ctl_rx));
        });
        // The arbiter lives as long as the System; dropping the handle does not stop it.
        std::mem::forget(arbiter);
        Ok(Webhooks { db, ctl, cfg })
    }

    pub fn allow_private(&self) -> bool {
        self.cfg.allow_private
    }

    pub async fn deliveries(&self, webhook: &str, status: Option<Status>, after: u64, limit: usize) -> Result<Vec<DeliveryView>, String> {
        let webhook = webhook.to_string();
        self.db.ask(|reply| Op::List { webhook, status, after, limit, reply }).await
    }

    /// Queues every dead delivery again; returns how many.
    pub async fn redrive(&self, webhook: &str) -> Result<u64, String> {
        let id = webhook.to_string();
        let n = self.db.ask(|reply| Op::Redrive { webhook: id, now_ms: now_ms(), reply }).await?;
        let _ = self.ctl.send((webhook.to_string(), Ctl::Reload));
        Ok(n)
    }

    /// Sends the subscription's events after `after_seq` again. False when the
    /// subscription is not set up for delivery yet.
    pub async fn replay(&self, webhook: &str, after_seq: u64) -> Result<bool, String> {
        let id = webhook.to_string();
        let known = self.db.ask(|reply| Op::Replay { webhook: id, after_seq, reply }).await?;
        let _ = self.ctl.send((webhook.to_string(), Ctl::Reload));
        Ok(known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_with_units_and_bounds() {
        let d = parse_schedule(RETRY_SCHEDULE_DEFAULT).unwrap();
        assert_eq!(d.len(), 8);
        assert_eq!(d[0], Duration::from_secs(5));
        assert_eq!(d[7], Duration::from_secs(6 * 3600));
        assert_eq!(parse_schedule("50ms, 1s").unwrap(), vec![Duration::from_millis(50), Duration::from_secs(1)]);
        for bad in ["", "5", "5x", "0s", "8d", "-1s"] {
            assert!(parse_schedule(bad).is_err(), "{bad}");
        }
    }
}
