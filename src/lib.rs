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
//! - [`app`] — wiring: recovery, actors, HTTP server, shutdown.
//! - [`config`] — command line and configuration.
//! - [`health`] — the background workers' health (ok, retrying, stopped) for `/readyz` and `/metrics`.
//! - [`fdlimit`] — the open-file limit and the connection cap computed from it.
//! - [`clock`] — the only reader of wall-clock time.
//! - [`cluster`] — cluster mode: partition journals, leases and placement on NATS JetStream.
//! - [`cli`] — offline commands.
//! - [`bench`] — `zaiko bench`: the load harness (closed-loop client, scenarios, reports).
//! - [`demo`] — `serve --demo`: the sample business of `data/demo/`, replayed through the API.
//! - [`telemetry`] — logging setup.

pub mod actors;
pub mod app;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod domain;
pub mod fdlimit;
pub mod feed;
pub mod health;
pub mod http;
pub mod imports;
pub mod index;
pub mod integration;
pub mod journal;
pub mod snapshot;
pub mod state;
pub mod telemetry;
pub mod webhooks;
