//! Integration tests: each starts the real `zaiko` binary (port 0, temp data dir).

mod helpers;
mod receiver;

mod basics;
mod channels;
mod crash;
mod feed;
mod fulfilment;
mod imports;
mod wal_damage;
mod webhooks;
