//! The search index's drain protocol: how the indexer pulls the documents (SKUs,
//! shipments) a shard changed. Each shard keeps a [`DirtySet`] of the documents its
//! records touched ([`touched_docs`]); the indexer asks for the oldest of them
//! ([`DrainDirty`]) and gets what it must do for each from the state then
//! ([`IndexItem`]), or puts back what it could not commit ([`MarkDirty`]). Pulling, not
//! pushing, means a slow index never backs up the shards; changes to one document
//! coalesce, so the set is bounded by the number of objects. The shard's handlers only
//! call [`DirtySet::drain`] and [`DirtySet::extend`].

use std::collections::{HashMap, VecDeque};

use actix::Message;

use crate::domain::brand::{BrandState, SkuState};
use crate::domain::event::{BrandRecord, Event};
use crate::domain::view::ShipmentSummary;
use crate::domain::{BrandId, Id};

/// Asks a shard for the documents (SKUs, shipments) changed since the last drain, at
/// most `max` of them: the search index pulls changes this way, so a slow index never
/// backs up the shards and the pending set is bounded by the number of objects
/// (changes to one object coalesce).
pub struct DrainDirty {
    pub max: usize,
    pub reply: tokio::sync::oneshot::Sender<Drained>,
}

impl Message for DrainDirty {
    type Result = ();
}

/// Puts documents back in the shard's dirty set (and partitions back among those to
/// purge): the indexer drained them but could not commit them (an I/O error), so its
/// next drain takes them again, from the state then.
pub struct MarkDirty {
    pub keys: Vec<DirtyKey>,
    pub purged: Vec<u32>,
}

impl Message for MarkDirty {
    type Result = ();
}

/// What the index must do for one document.
#[derive(Debug, Clone)]
pub enum IndexItem {
    Sku(SkuItem),
    Shipment(ShipmentItem),
}

#[derive(Debug, Clone)]
pub enum SkuItem {
    /// A SKU, with its availability to each configured channel of its brand.
    Upsert {
        brand: BrandId,
        brand_name: String,
        sku: Id,
        state: Box<SkuState>,
        channels: Vec<(Id, i64)>,
    },
    Delete {
        brand: BrandId,
        sku: Id,
    },
}

#[derive(Debug, Clone)]
pub enum ShipmentItem {
    Upsert { brand: BrandId, shipment: Box<ShipmentSummary> },
    Delete { brand: BrandId, id: Id },
}

#[derive(Debug)]
pub struct Drained {
    /// Cluster mode: partitions that left this shard since the last drain, whose
    /// documents the index deletes before it applies `items`.
    pub purged: Vec<u32>,
    pub items: Vec<IndexItem>,
    /// More dirty documents remain after this batch.
    pub more: bool,
    /// How many dirty documents remain after this batch.
    pub remaining: usize,
}

/// The kinds of object the search index keeps a document of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocKind {
    Sku,
    Shipment,
}

/// A document of the search index: a SKU or a shipment of a brand.
pub type DirtyKey = (BrandId, DocKind, Id);

/// The documents a record changes: SKUs whose catalog or stock it changes or whose
/// channel availability a reconfiguration step recomputes, and shipments it creates,
/// moves or purges. Live commits and the catch-up after a restart both use it.
pub fn touched_docs(record: &BrandRecord) -> impl Iterator<Item = DirtyKey> + '_ {
    /// One document, and the SKUs of a channel-sync step.
    type Touched<'a> = (Option<(DocKind, &'a Id)>, &'a [(Id, i64)]);
    let brand = &record.brand;
    record.events.iter().flat_map(move |e| {
        let (one, synced): Touched = match e {
            Event::SkuUpserted { sku, .. } | Event::SkuDeleted { sku } | Event::StockChanged { sku, .. } => {
                (Some((DocKind::Sku, sku)), &[])
            }
            Event::ShipmentCreated { shipment } => (Some((DocKind::Shipment, &shipment.id)), &[]),
            Event::ShipmentStatusChanged { id, .. } | Event::ShipmentPurged { id } => (Some((DocKind::Shipment, id)), &[]),
            Event::ChannelSynced { skus, .. } => (None, skus.as_slice()),
            _ => (None, &[]),
        };
        one.into_iter().chain(synced.iter().map(|(sku, _)| (DocKind::Sku, sku))).map(move |(kind, id)| (brand.clone(), kind, id.clone()))
    })
}

/// Every document of a brand: what a partition arriving on a cluster node indexes.
pub fn all_docs(b: &BrandState) -> impl Iterator<Item = DirtyKey> + '_ {
    let skus = b.skus.keys().map(|sku| (b.id.clone(), DocKind::Sku, sku.clone()));
    skus.chain(b.shipments.keys().map(|id| (b.id.clone(), DocKind::Shipment, id.clone())))
}

/// What the index must do for a dirty document, from the state now.
fn index_item(brands: &HashMap<BrandId, BrandState>, (brand, kind, id): DirtyKey) -> IndexItem {
    let b = brands.get(&brand);
    match kind {
        DocKind::Sku => IndexItem::Sku(match b.and_then(|b| b.skus.get(&id).map(|s| (b, s))) {
            Some((b, s)) => {
                let channels = b.channel_view(&s.levels);
                SkuItem::Upsert { brand_name: b.name.clone(), channels, brand, sku: id, state: s.clone() }
            }
            None => SkuItem::Delete { brand, sku: id },
        }),
        DocKind::Shipment => IndexItem::Shipment(match b.and_then(|b| b.shipments.get(&id)) {
            Some(s) => ShipmentItem::Upsert { brand, shipment: Box::new(ShipmentSummary::from(s)) },
            None => ShipmentItem::Delete { brand, id },
        }),
    }
}

/// Room a [`DirtySet`] keeps however quiet it gets: the ordinary flow between two drains.
const DIRTY_CAPACITY_KEPT: usize = 4096;

/// The documents changed since the search index last drained them, oldest first.
/// Changes to a document already waiting coalesce (it keeps its place), and a drain
/// takes the oldest: so a drain cycle that takes as many as were waiting when it
/// began has taken every one of them, however many arrive meanwhile.
#[derive(Debug, Default)]
pub struct DirtySet {
    /// foldhash: every row of an import passes through here, and SipHash showed.
    set: foldhash::HashSet<DirtyKey>,
    order: VecDeque<DirtyKey>,
}

impl DirtySet {
    pub fn insert(&mut self, key: DirtyKey) {
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
        }
    }

    /// The oldest waiting document.
    pub fn pop(&mut self) -> Option<DirtyKey> {
        let key = self.order.pop_front()?;
        self.set.remove(&key);
        self.release_slack();
        Some(key)
    }

    /// Gives back the room a burst left behind. A bulk change (stock set for a million
    /// SKUs, an import) marks documents faster than the index takes them; the set and
    /// the queue grew to hold them all, and neither shrinks by itself: 112 B per
    /// document of the burst, kept for the life of the process. Once at most a quarter
    /// is used, both shrink to twice what is waiting, so each shrink is paid for by
    /// the pops before it.
    fn release_slack(&mut self) {
        let cap = self.order.capacity();
        if cap > DIRTY_CAPACITY_KEPT && self.order.len() * 4 <= cap {
            let keep = (self.order.len() * 2).max(DIRTY_CAPACITY_KEPT);
            self.order.shrink_to(keep);
            self.set.shrink_to(keep);
        }
    }

    /// Room held for waiting documents, for the tests of [`DirtySet::release_slack`].
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.order.capacity().max(self.set.capacity())
    }

    /// Takes the oldest waiting documents, at most `max`, each as what the index must
    /// do for it from `brands` now.
    pub fn drain(&mut self, brands: &HashMap<BrandId, BrandState>, max: usize) -> Drained {
        let mut items = Vec::with_capacity(max.min(self.len()));
        while items.len() < max {
            let Some(key) = self.pop() else { break };
            items.push(index_item(brands, key));
        }
        Drained { purged: Vec::new(), items, more: !self.is_empty(), remaining: self.len() }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl Extend<DirtyKey> for DirtySet {
    fn extend<T: IntoIterator<Item = DirtyKey>>(&mut self, keys: T) {
        keys.into_iter().for_each(|k| self.insert(k));
    }
}

impl FromIterator<DirtyKey> for DirtySet {
    fn from_iter<T: IntoIterator<Item = DirtyKey>>(keys: T) -> Self {
        let mut d = DirtySet::default();
        d.extend(keys);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fulfilment::ShipmentStatus;
    use crate::domain::Timestamp;

    fn key(sku: &str) -> DirtyKey {
        (BrandId::parse("b").unwrap(), DocKind::Sku, Id::parse(sku).unwrap())
    }

    #[test]
    fn a_record_touches_its_skus_shipments_and_the_skus_of_a_channel_sync_step() {
        let id = |s: &str| Id::parse(s).unwrap();
        let record = BrandRecord {
            brand: BrandId::parse("b").unwrap(),
            at: Timestamp(0),
            idempotency: None,
            events: vec![
                Event::ShipmentStatusChanged { id: id("SH-1"), status: ShipmentStatus::Packed, tracking_number: None, carrier: None },
                Event::SkuDeleted { sku: id("S1") },
                Event::ShipmentPurged { id: id("SH-2") },
                Event::ChannelSynced { channel: id("zozo"), skus: vec![(id("S2"), 0), (id("S3"), 4)], after: Some(id("S3")) },
                Event::ReservationReleased { id: id("R-1") },
            ],
        };
        let got: Vec<(DocKind, String)> = touched_docs(&record).map(|(_, kind, id)| (kind, id.as_str().to_string())).collect();
        let want =
            [(DocKind::Shipment, "SH-1"), (DocKind::Sku, "S1"), (DocKind::Shipment, "SH-2"), (DocKind::Sku, "S2"), (DocKind::Sku, "S3")];
        assert_eq!(got, want.map(|(k, s)| (k, s.to_string())));
    }

    #[test]
    fn dirty_skus_drain_oldest_first_and_coalesce() {
        let mut d: DirtySet = ["A", "B", "C"].into_iter().map(key).collect();
        d.insert(key("A"));
        assert_eq!(d.len(), 3, "a SKU already waiting is not added twice");
        assert_eq!(d.pop(), Some(key("A")));
        d.insert(key("A"));
        d.insert(key("D"));
        let order: Vec<_> = std::iter::from_fn(|| d.pop()).map(|k| k.2.as_str().to_string()).collect();
        assert_eq!(order, ["B", "C", "A", "D"], "a SKU changed again after its drain waits behind the others");
        assert!(d.is_empty());
    }

    #[test]
    fn a_drained_burst_gives_its_room_back() {
        let n = 100_000;
        let mut d: DirtySet = (0..n).map(|i| key(&format!("S{i}"))).collect();
        assert!(d.capacity() >= n);
        for i in 0..n - 10 {
            assert_eq!(d.pop().map(|k| k.2), Some(Id::parse(&format!("S{i}")).unwrap()), "the order survives the shrinks");
        }
        assert_eq!(d.len(), 10);
        assert!(d.capacity() <= 2 * DIRTY_CAPACITY_KEPT, "room for {} kept after the burst", d.capacity());
        d.insert(key("S5"));
        assert_eq!(d.len(), 11, "the set still knows which documents wait after shrinking");
        d.insert(key(&format!("S{}", n - 1)));
        assert_eq!(d.len(), 11);
    }
}
