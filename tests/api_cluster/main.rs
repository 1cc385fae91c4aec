//! The api tests against a three-node cluster (`helpers.rs`), every request to a
//! brand's routes through a node that does not own the brand's partition: the same
//! modules as `tests/api`, unchanged, so the same results as on one node. The tests
//! that only a single node can run (a manual clock, its data dir's files, `--demo`)
//! are skipped by name in `.ci/run` (`CLUSTER_SKIP`), each with the reason.

mod helpers;
#[path = "../cluster/nats.rs"]
mod nats;
#[allow(dead_code)]
#[path = "../support/process.rs"]
mod process;
#[path = "../api/receiver.rs"]
mod receiver;

#[path = "../api/alerts.rs"]
mod alerts;
#[path = "../api/bad_input.rs"]
mod bad_input;
#[path = "../api/basics.rs"]
mod basics;
#[path = "../api/channels.rs"]
mod channels;
#[path = "../api/feed.rs"]
mod feed;
#[path = "../api/fulfilment.rs"]
mod fulfilment;
#[path = "../api/isolation.rs"]
mod isolation;
#[path = "../api/returns.rs"]
mod returns;
#[path = "../api/search.rs"]
mod search;
#[path = "../api/search_shipments.rs"]
mod search_shipments;
#[path = "../api/sku_history.rs"]
mod sku_history;
#[path = "../api/transfers.rs"]
mod transfers;
#[path = "../api/unsellable.rs"]
mod unsellable;
#[path = "../api/webhooks.rs"]
mod webhooks;
