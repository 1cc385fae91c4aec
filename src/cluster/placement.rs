//! Which node owns a partition and which nodes stand by: rendezvous hashing over the live
//! nodes, and the one decision each node makes for each partition on every tick.
//!
//! Every node ranks the live nodes for a partition by a stable hash of (partition, node)
//! and so agrees on the ranking without talking: the first live node is where the
//! partition should be owned, the next `standbys` follow its journal. When a node dies
//! only its partitions move, each to its best remaining node — which was already
//! following it. Ownership itself is decided by the lease (`lease.rs`), never by the
//! ranking alone: the ranking only says who *tries*.
//!
//! Pure: the caller passes in what it observed and the time.

use std::time::Instant;

use super::engine::PartitionId;
use super::lease::{LeaseTiming, Observed};

/// A stable 64-bit hash (FNV-1a) of a partition and a node id.
fn weight(partition: PartitionId, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in partition.lease_key().as_bytes().iter().chain(b"/").chain(node.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short inputs; a final avalanche (splitmix64's).
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The live nodes in the order they should hold `partition`: best first.
pub fn rank<'a>(partition: PartitionId, live: &[&'a str]) -> Vec<&'a str> {
    let mut nodes: Vec<&str> = live.to_vec();
    nodes.sort_by_key(|n| (std::cmp::Reverse(weight(partition, n)), *n));
    nodes.dedup();
    nodes
}

/// What this node does about one partition now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Take the lease (it is free or expired, and this node is the best live
    /// candidate), catch up and become the owner.
    TakeOver,
    /// Follow the partition's journal as a hot standby (if not already).
    Follow,
    /// Neither own nor follow it (stop following if this node was).
    Leave,
    /// Keep owning it.
    Own,
}

/// What a node knows when it decides about one partition.
pub struct View<'a> {
    pub me: &'a str,
    pub partition: PartitionId,
    /// Nodes whose heartbeat this node has seen within a lease, itself included.
    pub live: &'a [&'a str],
    /// The newest lease revision this node has seen for the partition.
    pub lease: &'a Observed,
    /// Whether this node holds the partition's lease now.
    pub owned_here: bool,
    pub standbys: usize,
    pub timing: &'a LeaseTiming,
    pub now: Instant,
}

/// The decision for one partition.
///
/// * An owner keeps its partition (moving a healthy partition is a planned handover,
///   not something a tick does).
/// * A free or expired lease is taken by the best-ranked live node other than the
///   lapsed holder (this node's own earlier incarnation does not count as one); the others wait (if that node cannot, the lease stays expired and
///   the next candidate's turn comes once that node drops out of the live set).
/// * The best `standbys` live nodes other than the owner follow the journal.
pub fn decide(v: &View<'_>) -> Action {
    if v.owned_here {
        return Action::Own;
    }
    // The holder of an expired lease is passed over (it may be a paused process that
    // resumes mid-takeover) — unless it is this node: then it is a restarted
    // incarnation that knows it holds nothing.
    let holder = v.lease.owner().map(|l| l.node.as_str()).filter(|n| *n != v.me);
    let candidates: Vec<&str> = rank(v.partition, v.live).into_iter().filter(|n| Some(*n) != holder).collect();
    if v.lease.expired(v.timing, v.now) && candidates.first() == Some(&v.me) {
        return Action::TakeOver;
    }
    if candidates.iter().take(v.standbys).any(|n| *n == v.me) {
        Action::Follow
    } else {
        Action::Leave
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::cluster::lease::LeaseValue;

    fn lease(node: Option<&str>, at: Instant) -> Observed {
        Observed { value: node.map(|n| LeaseValue { node: n.into(), epoch: 3, advertise: String::new() }), revision: 9, at }
    }

    #[test]
    fn owners_spread_evenly_and_a_dead_node_moves_only_its_own_partitions() {
        let nodes = ["n1", "n2", "n3"];
        let owner = |live: &[&'static str], p: u32| rank(PartitionId::Brand(p), live)[0];
        let mut count: HashMap<&str, usize> = HashMap::new();
        for p in 0..64 {
            *count.entry(owner(&nodes, p)).or_default() += 1;
        }
        for n in nodes {
            assert!((14..=29).contains(&count[n]), "{n} owns {} of 64: {count:?}", count[n]);
        }
        for p in 0..64 {
            let before = owner(&nodes, p);
            let after = owner(&["n1", "n3"], p);
            if before != "n2" {
                assert_eq!(before, after, "partition {p} moved although its owner lives");
            } else {
                assert_eq!(after, rank(PartitionId::Brand(p), &nodes)[1], "partition {p} goes to its first standby");
            }
        }
    }

    #[test]
    fn only_the_best_live_candidate_takes_an_expired_lease() {
        let t = LeaseTiming::new(Duration::from_millis(3000));
        let start = Instant::now();
        let later = start + Duration::from_millis(3001);
        let live = ["n1", "n2", "n3"];
        let p = PartitionId::Brand(5);
        let order = rank(p, &live);
        // The holder (order[0]) stopped renewing; it is still in the live set here.
        let observed = lease(Some(order[0]), start);
        let decide_for = |me: &str, now: Instant| {
            decide(&View { me, partition: p, live: &live, lease: &observed, owned_here: false, standbys: 1, timing: &t, now })
        };
        assert_eq!(decide_for(order[1], later), Action::TakeOver, "the first standby takes over");
        assert_eq!(decide_for(order[1], start + Duration::from_millis(2999)), Action::Follow, "not before T");
        assert_eq!(decide_for(order[2], later), Action::Leave, "the third node is neither candidate nor standby");
        let never = lease(None, start);
        let first = decide(&View {
            me: order[0],
            partition: p,
            live: &live,
            lease: &never,
            owned_here: false,
            standbys: 1,
            timing: &t,
            now: start,
        });
        assert_eq!(first, Action::TakeOver, "a partition never owned goes to its best node at once");
    }
}
