//! Integration tests: each starts the real `zaiko` binary (port 0, temp data dir).

mod helpers;

mod basics;
mod crash;
mod metrics;
mod wal_damage;
