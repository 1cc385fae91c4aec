//! The workloads. Each scenario is one file: it writes the next request of a
//! connection and says what that request does to stock ([`Effect`]), and the runner
//! does the rest (timing, histograms, accounting, server counters).
//!
//! To add one: write a file with a type that implements [`Scenario`], and add a line
//! to [`by_name`] and [`NAMES`]. Anything it needs beyond the shared [`Fixture`] it
//! creates or checks in [`Scenario::prepare`].

mod channels;
mod healthz;
mod mixed;
mod reserve;
mod search;
mod spike;
mod stock_changes;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use rand::rngs::SmallRng;

use super::fixture::Fixture;
use super::ledger::Effect;

/// The names `--scenarios` accepts.
pub const NAMES: &[&str] = &[
    "healthz",
    "single-change",
    "batch-100",
    "batch-1000",
    "mixed",
    "reserve-1",
    "reserve-5",
    "search",
    "spike",
    "channels-1",
    "channels-5",
];

/// The scenario called `name`.
pub fn by_name(name: &str) -> Option<Arc<dyn Scenario>> {
    Some(match name {
        "healthz" => Arc::new(healthz::Healthz),
        "single-change" => Arc::new(stock_changes::StockChanges::new("single-change", 1)),
        "batch-100" => Arc::new(stock_changes::StockChanges::new("batch-100", 100)),
        "batch-1000" => Arc::new(stock_changes::StockChanges::new("batch-1000", 1000)),
        "mixed" => Arc::new(mixed::Mixed { read_percent: 80 }),
        "reserve-1" => Arc::new(reserve::Reserve { name: "reserve-1", lines: 1 }),
        "reserve-5" => Arc::new(reserve::Reserve { name: "reserve-5", lines: 5 }),
        "search" => Arc::new(search::Search),
        "spike" => Arc::new(spike::Spike { factor: 10 }),
        "channels-1" => Arc::new(channels::Channels { name: "channels-1", channels: 1 }),
        "channels-5" => Arc::new(channels::Channels { name: "channels-5", channels: 5 }),
        _ => return None,
    })
}

/// The state of one connection's request stream.
pub struct Worker {
    pub rng: SmallRng,
    /// Index of the connection within the run.
    pub conn: usize,
    /// Requests this connection has planned so far.
    pub seq: u64,
    /// Unique per scenario run: a prefix for idempotency keys and client ids.
    pub run_tag: Arc<str>,
    /// The connection joined at the surge (see [`Scenario::surge`]).
    pub surged: bool,
}

impl Worker {
    /// An Idempotency-Key no other request of any run uses.
    pub fn unique_key(&self) -> String {
        format!("{}-{}-{}", self.run_tag, self.conn, self.seq)
    }
}

/// What the runner needs to know about a request it is about to send.
pub struct Planned {
    /// Groups latencies and status counts (e.g. `get-stock` and `change` of `mixed`).
    pub label: &'static str,
    pub effect: Effect,
}

pub trait Scenario: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether the scenario changes stock: then the stock is read before and after and
    /// checked against the acknowledged deltas.
    fn writes(&self) -> bool;

    /// Creates what the scenario needs beyond the shared fixture. Runs before every
    /// run of the scenario.
    fn prepare<'a>(&'a self, _fx: &'a Arc<Fixture>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Connections in the measured window as a multiple of the run's connection count:
    /// above 1, the warm-up runs the base connections only (the load before a sale
    /// starts) and the rest join when the window opens.
    fn surge(&self) -> usize {
        1
    }

    /// Writes the next request of worker `w` into `out` (cleared by the caller).
    fn next(&self, fx: &Fixture, w: &mut Worker, out: &mut Vec<u8>) -> Planned;
}
