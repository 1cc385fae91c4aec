//! Cluster mode: brand partitions replicated on NATS JetStream (`docs/cluster.md`).
//!
//! * [`config`] — the `--cluster` flags.
//! * [`engine`] — the connection, and the journal stream and KV buckets every node shares;
//!   partitions and the brand → partition hash.
//! * [`entry`] — a partition journal entry (one message: a group-commit batch or a
//!   takeover marker) and the replay rule that fences old owners off.
//! * [`imports`] — import uploads in the object store, and jobs resumed by a new owner.
//! * [`follower`] — hot standbys: a partition's journal followed and its state kept applied.
//! * [`lease`] — partition leases in a KV bucket: epochs, renewal, deadlines.
//! * [`node`] — the node controller: heartbeats, the view of leases and live nodes, and
//!   for each partition own / take over / follow / leave, carried out through [`node::Host`].
//! * [`placement`] — who should own and follow each partition (rendezvous hashing).
//! * [`plog`] — a partition's replicated journal: the owner's publisher (the output
//!   gate: publish ack *and* a valid lease) and the reading of a subject.
//! * [`snapshots`] — partition snapshots in the object store: taken by any node, the
//!   starting point of a cold start, merged into a single-node data dir by `restore`.
//! * [`status`] — `zaiko cluster status`: the view of `GET /v1/admin/cluster` printed.
//! * [`webhooks`] — which node delivers a subscription, and its delivered watermark
//!   handed from one owner to the next.

pub mod config;
pub mod engine;
pub mod entry;
pub mod follower;
pub mod imports;
pub mod lease;
pub mod node;
pub mod placement;
pub mod plog;
pub mod purge;
pub mod snapshots;
pub mod status;
pub mod webhooks;
