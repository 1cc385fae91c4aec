//! Integration tests: each starts the real `zaiko` binary (port 0, temp data dir).

mod helpers;
#[path = "../support/process.rs"]
mod process;
mod receiver;

mod alerts;
mod bad_input;
mod basics;
mod channels;
mod cli;
mod crash;
mod crash_mixed;
mod disk_space;
mod document_imports;
mod faults;
mod feed;
mod formats;
mod fulfilment;
mod fuzz_bodies;
mod history;
mod hostile_imports;
mod imports;
mod isolation;
mod metrics;
mod ops;
mod records;
mod returns;
mod search;
mod search_finds;
mod search_shipments;
mod sku_history;
mod snapshots;
mod transfers;
mod unsellable;
mod wal_damage;
mod webhooks;
mod workers;
