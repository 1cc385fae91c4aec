//! zaiko (在庫): an inventory and fulfilment-sync service.
//!
//! # Layout
//! - [`domain`] — the pure domain: state, commands, events, rules; no I/O.
//! - [`journal`] — the write-ahead log: segments, group commit, recovery, verify, tail.
//! - [`state`] — the whole state as one value, and the fold of journal records into it.
//! - [`snapshot`] — SQLite snapshots: write, load (checked), list, build off the hot path, retention.
//! - [`index`] — the tantivy search indexes (SKUs, shipments): analysis, schemas, queries, the indexer thread.
//! - [`feed`] — the change feed: follows the journal into `feed.sqlite`, serves pages
//!   and long polls.
//! - [`actors`] — shard and registry actors that own the state and serialise commands.
//! - [`webhooks`] — Standard Webhooks delivery of the feed: signing, retries, redrive.
//! - [`http`] — the REST API: routes, auth, request parsing, problem responses.
//! - [`imports`] — bulk import jobs: streamed uploads, the runner, `zaiko import`.
//! - [`integration`] — configuration and start-up of the feed, webhooks and imports.
//! - [`background`] — the lower CPU priority of the threads that follow the journal.
//! - [`app`] — wiring: recovery, actors, HTTP server, shutdown.
//! - [`config`] — command line and configuration.
//! - [`health`] — the background workers' health (ok, retrying, stopped) for `/readyz` and `/metrics`.
//! - [`fdlimit`] — the open-file limit and the connection cap computed from it.
//! - [`clock`] — the only reader of wall-clock time.
//! - [`cluster`] — cluster mode: partition journals, leases and placement on NATS JetStream.
//! - [`cli`] — offline commands.
//! - [`demo`] — `serve --demo`: the sample business of `data/demo/`, replayed through the API.
//! - [`telemetry`] — logging setup.
//! - [`procfs`] — readers of `/proc`: a process's RSS and CPU time (for `/metrics` and
//!   the load harness, `bench/`).
//!
//! The public modules are what the `zaiko` binary (`src/main.rs`), the tests under
//! `tests/`, `benches/search` and the load harness (`bench/`) use; the rest is
//! `pub(crate)`.

pub(crate) mod actors;
pub mod app;
pub(crate) mod background;
pub mod cli;
pub(crate) mod clock;
pub mod cluster;
pub mod config;
pub(crate) mod demo;
pub mod domain;
pub mod fdlimit;
pub(crate) mod feed;
pub mod health;
pub(crate) mod http;
pub mod imports;
pub mod index;
pub(crate) mod integration;
pub mod journal;
pub mod procfs;
pub mod replay;
pub mod snapshot;
pub mod state;
pub mod telemetry;
pub(crate) mod webhooks;
