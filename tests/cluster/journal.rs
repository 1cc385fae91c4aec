//! The partition journal's primitives on a real 3-server JetStream cluster: leases,
//! fencing by expected sequence, the replay rule, a stream leader killed mid-publish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zaiko::cluster::engine::{Engine, EngineConfig, PartitionId};
use zaiko::cluster::entry::{self, Replay, Verdict};
use zaiko::cluster::lease::{renew_loop, LeaseCell, LeaseError, LeaseStore, LeaseTiming, Observed};
use zaiko::cluster::plog::{self, PlogLimits, ReplicatedJournal, Stopped};
use zaiko::journal::AppendError;

use crate::nats::NatsCluster;

const LIMITS: PlogLimits = PlogLimits { record_bytes_max: 1 << 20, entry_bytes_max: 4 << 20, queue_bytes_max: 16 << 20 };

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

async fn engine(nats: &NatsCluster, node: &str) -> Engine {
    let cfg = EngineConfig { urls: nats.urls(), replicas: 3, entry_bytes_max: 4 << 20 };
    Engine::connect(&cfg, node).await.expect("connect")
}

fn leases(e: &Engine, lease_ms: u64) -> LeaseStore {
    LeaseStore { kv: e.leases.clone(), timing: LeaseTiming::new(Duration::from_millis(lease_ms)) }
}

async fn observe(store: &LeaseStore, key: &str) -> Observed {
    let (value, revision) = store.read(key).await.expect("read lease");
    Observed { value, revision, at: Instant::now() }
}

/// Replays a whole subject with the replay rule; returns the applied payloads and the
/// rule's final state.
/// A JetStream request can time out while a new stream leader settles (right after a
/// leader kill, on a loaded machine): the read is retried from the start, as a node's
/// controller retries a takeover.
async fn replay_all(e: &Engine, subject: &str) -> (Vec<(u64, Vec<u8>)>, Replay) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut rule = Replay::new();
        let mut applied = Vec::new();
        let read = plog::read_entries(&e.journal, subject, 0, None, |seq, bytes| {
            let entry = entry::decode(bytes).map_err(|d| entry::ReplayError { seq, detail: d.to_string() })?;
            if rule.judge(seq, &entry.header)? == Verdict::Apply {
                applied.extend(entry.records.iter().map(|(lsn, p)| (*lsn, p.to_vec())));
            }
            Ok(())
        })
        .await;
        match read {
            Ok(_) => return (applied, rule),
            // Only the stream's answers are retried; a refused entry is a failure.
            Err(e) if e.seq == 0 && Instant::now() < deadline => {
                eprintln!("replay: {e:?}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("replay: {e:?}"),
        }
    }
}

/// Takes a partition as `node` (waiting out the previous lease if there is one),
/// catches up, writes the takeover marker, and starts the publisher.
/// The lease is renewed until the returned renewal task is aborted (a paused owner).
async fn take_over(e: &Engine, store: &LeaseStore, p: PartitionId, node: &str) -> Owner {
    let mut seen = observe(store, &p.lease_key()).await;
    loop {
        let now = Instant::now();
        if seen.expired(&store.timing, now) {
            break;
        }
        tokio::time::sleep(store.timing.takeover_at(seen.at) - now).await;
        let (value, revision) = store.read(&p.lease_key()).await.expect("read lease");
        seen.update(value, revision, Instant::now());
    }
    // A JetStream request can find no responders for a moment (a stream leader being
    // elected on a loaded machine): retried, as a node's controller retries.
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        match store.take(&p.lease_key(), &seen, node, "http://unused").await {
            Ok(held) => break held,
            Err(LeaseError::Unavailable { .. }) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("take lease: {e:?}"),
        }
    };
    let cell = LeaseCell::new(held);
    loop {
        let (_, rule) = replay_all(e, &p.subject()).await;
        match plog::publish_takeover(&e.js, &p.subject(), cell.epoch(), rule.next_lsn, rule.last_seq).await {
            Ok(seq) => {
                let journal = ReplicatedJournal::new(p.subject(), LIMITS, rule.next_lsn, cell.clone());
                let publisher = tokio::spawn(journal.clone().publish_loop(e.js.clone(), e.journal.clone(), seq));
                let renewal = tokio::spawn(renew_loop(store.clone(), cell.clone(), std::future::pending()));
                return Owner { journal, cell, publisher, renewal };
            }
            Err(plog::TakeoverError::Moved) => continue,
            Err(err) => panic!("takeover marker: {err}"),
        }
    }
}

struct Owner {
    journal: ReplicatedJournal,
    cell: Arc<LeaseCell>,
    publisher: tokio::task::JoinHandle<Stopped>,
    renewal: tokio::task::JoinHandle<()>,
}

#[test]
fn a_fenced_owner_cannot_write_and_its_late_entries_are_never_applied() {
    // Every cluster test runs alone: free ports are picked, not reserved.
    let _serial = crate::failover::serial();
    let nats = NatsCluster::start(3);
    runtime().block_on(async {
        let e = engine(&nats, "n1").await;
        let store = leases(&e, 600);
        let p = PartitionId::Brand(7);
        // Owner A writes three records and then stops renewing (a paused process).
        let Owner { journal: a, cell: a_cell, publisher: a_task, renewal: a_renewal } = take_over(&e, &store, p, "a").await;
        let mut last = 0;
        for i in 0..3 {
            last = a.append(format!("a{i}").into_bytes()).unwrap();
        }
        a.wait_durable(last).await.expect("A's records are durable");
        a_renewal.abort();
        let a_last_seq = plog::last_seq(&e.journal, &p.subject()).await.unwrap();

        // B waits out A's lease, takes over, and writes.
        let Owner { journal: b, cell: b_cell, .. } = take_over(&e, &store, p, "b").await;
        assert_eq!(b_cell.epoch(), a_cell.epoch() + 1);
        assert!(!a_cell.valid_at(Instant::now()), "A's own deadline passed before B could take the lease");
        let b1 = b.append(b"b0".to_vec()).unwrap();
        assert_eq!(b1, 4, "B continues the LSNs where A's durable records end");
        b.wait_durable(b1).await.unwrap();

        // A wakes up: its next entry is refused by the expected sequence, it finds B's
        // marker, and gives the partition up without acknowledging anything.
        let late = a.append(b"a-late".to_vec()).unwrap();
        assert_eq!(a.wait_durable(late).await, Err(AppendError::Stopped));
        assert_eq!(a_task.await.unwrap(), Stopped::Fenced(b_cell.epoch()));

        // Even a write that ignores the lease is refused by the expected sequence ...
        let stale = entry::encode_batch(a_cell.epoch(), 4, &[b"a-stale".to_vec()]);
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(stale.clone().into())
            .expected_last_subject_sequence(a_last_seq);
        let res = e.js.send_publish(p.subject(), msg).await.unwrap().await;
        assert!(res.is_err(), "a publish with a stale expected sequence was accepted");
        // ... and one that slips past the check (no expected sequence at all, as around
        // a leader change) is fenced off by the replay rule.
        e.js.publish(p.subject(), stale.into()).await.unwrap().await.unwrap();
        // B's next publish finds the stray entry, skips it, and goes on.
        let b2 = b.append(b"b1".to_vec()).unwrap();
        b.wait_durable(b2).await.expect("B writes past a fenced owner's stray entry");

        let (applied, rule) = replay_all(&e, &p.subject()).await;
        let payloads: Vec<String> = applied.iter().map(|(_, p)| String::from_utf8(p.clone()).unwrap()).collect();
        assert_eq!(payloads, ["a0", "a1", "a2", "b0", "b1"]);
        assert_eq!(applied.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(rule.fenced, 1, "the stray entry of epoch {} was counted as fenced", a_cell.epoch());
        assert_eq!(rule.epoch, b_cell.epoch());
    });
}

#[test]
fn of_two_nodes_racing_for_a_lease_exactly_one_wins() {
    // Every cluster test runs alone: free ports are picked, not reserved.
    let _serial = crate::failover::serial();
    let nats = NatsCluster::start(3);
    runtime().block_on(async {
        let e = engine(&nats, "n1").await;
        let store = leases(&e, 3000);
        for round in 0..5 {
            let key = format!("p.{round}");
            let seen = observe(&store, &key).await;
            // A contested write may come back "not ready" (the leader cannot yet check
            // the expected revision); the contender retries until it knows.
            let take = |node: &'static str| {
                let (store, key, seen) = (store.clone(), key.clone(), seen.clone());
                async move {
                    loop {
                        match store.take(&key, &seen, node, "http://x").await {
                            Err(LeaseError::Unavailable { .. }) => tokio::time::sleep(Duration::from_millis(10)).await,
                            other => return other,
                        }
                    }
                }
            };
            let (x, y) = tokio::join!(take("x"), take("y"));
            let wins = [x.is_ok(), y.is_ok()].iter().filter(|w| **w).count();
            assert_eq!(wins, 1, "round {round}: {x:?} / {y:?}");
            let loser = if x.is_ok() { y } else { x };
            assert!(matches!(loser, Err(LeaseError::Lost(_))), "the loser is told the lease is taken: {loser:?}");
        }
    });
}

#[test]
fn an_owner_that_renews_keeps_writing_through_a_stream_leader_kill() {
    // Every cluster test runs alone: free ports are picked, not reserved.
    let _serial = crate::failover::serial();
    let mut nats = NatsCluster::start(3);
    runtime().block_on(async {
        let e = engine(&nats, "n1").await;
        let store = leases(&e, 3000);
        let p = PartitionId::Brand(1);
        let Owner { journal: j, publisher, .. } = take_over(&e, &store, p, "a").await;
        // Writers: each appends and waits, as a request would; a refused or stopped
        // write is not acknowledged (and must then not count).
        let writer = |j: ReplicatedJournal, tag: usize, n: usize| {
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..n {
                    let payload = format!("w{tag}-{i}").into_bytes();
                    if let Ok(lsn) = j.append(payload.clone()) {
                        if j.wait_durable(lsn).await.is_ok() {
                            acked.push((lsn, payload));
                        }
                    }
                }
                acked
            })
        };
        let before: Vec<_> = (0..4).map(|t| writer(j.clone(), t, 200)).collect();
        let leader = nats.stream_leader(zaiko::cluster::engine::JOURNAL_STREAM).expect("the journal stream has a leader");
        nats.servers[leader].kill9();
        let after: Vec<_> = (4..8).map(|t| writer(j.clone(), t, 200)).collect();
        let mut acked = Vec::new();
        for w in before.into_iter().chain(after) {
            acked.extend(w.await.unwrap());
        }
        if j.is_stopped() {
            panic!("the owner gave its partition up during the election: {:?}", publisher.await);
        }
        assert_eq!(acked.len(), 1600, "every write was acknowledged once the stream had a new leader");
        let (applied, _) = replay_all(&e, &p.subject()).await;
        let got: std::collections::HashMap<u64, Vec<u8>> = applied.into_iter().collect();
        for (lsn, payload) in &acked {
            assert_eq!(got.get(lsn), Some(payload), "acknowledged record {lsn} is missing or different");
        }
    });
}

#[test]
fn an_owner_giving_a_lapsed_lease_up_stops_its_publisher_at_once() {
    // Every cluster test runs alone: free ports are picked, not reserved.
    let _serial = crate::failover::serial();
    let nats = NatsCluster::start(3);
    runtime().block_on(async {
        let e = engine(&nats, "n1").await;
        let store = leases(&e, 600);
        let p = PartitionId::Brand(3);
        let Owner { journal, cell, publisher, renewal } = take_over(&e, &store, p, "a").await;
        // The renewals stop, as when the controller gives a partition up, and the lease
        // lapses: nobody has taken it, so a renewal could still revive it.
        renewal.abort();
        tokio::time::sleep_until(tokio::time::Instant::from_std(cell.deadline())).await;
        let marker = plog::last_seq(&e.journal, &p.subject()).await.unwrap();
        // A record published now is acknowledged by the stream after the deadline: the
        // publisher holds the ack, waiting for a renewal that will never come.
        let lsn = journal.append(b"late".to_vec()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while plog::last_seq(&e.journal, &p.subject()).await.unwrap_or(0) <= marker {
            assert!(Instant::now() < deadline, "the late entry never reached the stream");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(journal.durable_lsn(), lsn - 1, "nothing is acknowledged under a lapsed lease");
        // Giving the partition up ends the publisher there and then.
        journal.give_up();
        let why = tokio::time::timeout(Duration::from_secs(30), publisher)
            .await
            .expect("the publisher still waited for its lease after the partition was given up")
            .unwrap();
        assert_eq!(why, Stopped::LeaseLost);
        assert_eq!(journal.wait_durable(lsn).await, Err(AppendError::Stopped));
        assert_eq!(journal.append(b"after".to_vec()), Err(AppendError::Stopped));
    });
}
