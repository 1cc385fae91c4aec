//! Cluster-mode tests on real processes: `nats-server` 2.15.1 (installed into
//! `target/nats-venv` on first use) and, for the end-to-end tests, real `zaiko` nodes.

mod nats;
mod nodes;
#[path = "../support/process.rs"]
mod process;
// The api tests' webhook receiver; not every helper of it is used here.
#[allow(dead_code)]
#[path = "../api/receiver.rs"]
mod receiver;

mod dead_letters;
mod failover;
mod feed;
mod imports;
mod journal;
mod purge;
mod rebalance;
mod search;
mod snapshots;
