//! A shard actor: the brand partitions that hash to it, and the commands on them.

use std::collections::{HashMap, HashSet, VecDeque};

use actix::{Actor, Context as ActixContext, Handler, Message};

use super::{append_refused, fatal_apply, idempotent_replay, to_json, Context, Gated, IdemKey, Reply, ReplyTx};
use crate::domain::brand::{BrandState, SkuState, StockChangeCmd};
use crate::domain::catalog::Catalog;
use crate::domain::event::{self, BrandRecord, Event, WalRecord};
use crate::domain::idempotency::Status;
use crate::domain::view::{BrandView, ChangeResultView, ChangeResultsView, SkuView, StockView};
use crate::domain::{BrandId, ErrorCode, Id, Rejection, Timestamp};
use crate::journal::Lsn;

/// Default mailbox bound; a full mailbox answers `overloaded`.
pub const MAILBOX_CAPACITY_DEFAULT: usize = 4096;

/// A command on one brand partition.
#[derive(Debug)]
pub enum BrandCmd {
    Create { name: String },
    Get,
    PutSku { sku: Id, catalog: Catalog },
    GetSku { sku: Id },
    GetStock { sku: Id },
    StockChanges { changes: Vec<StockChangeCmd> },
}

impl BrandCmd {
    fn is_read(&self) -> bool {
        matches!(self, BrandCmd::Get | BrandCmd::GetSku { .. } | BrandCmd::GetStock { .. })
    }
}

pub struct BrandMsg {
    pub brand: BrandId,
    pub cmd: BrandCmd,
    pub idem: Option<IdemKey>,
    pub reply: ReplyTx,
}

impl Message for BrandMsg {
    type Result = ();
}

/// Lists the brands of this shard (for `GET /v1/brands`).
pub struct ListBrands {
    pub reply: tokio::sync::oneshot::Sender<(Lsn, Vec<BrandView>)>,
}

impl Message for ListBrands {
    type Result = ();
}

/// Asks a shard for the SKUs changed since the last drain, at most `max` of them: the
/// search index pulls changes this way, so a slow index never backs up the shards and
/// the pending set is bounded by the number of SKUs (changes to one SKU coalesce).
pub struct DrainDirty {
    pub max: usize,
    pub reply: tokio::sync::oneshot::Sender<Drained>,
}

impl Message for DrainDirty {
    type Result = ();
}

/// What the index must do for one SKU.
#[derive(Debug, Clone)]
pub enum IndexItem {
    Upsert { brand: BrandId, brand_name: String, sku: Id, state: Box<SkuState> },
    Delete { brand: BrandId, sku: Id },
}

#[derive(Debug)]
pub struct Drained {
    pub items: Vec<IndexItem>,
    /// More dirty SKUs remain after this batch.
    pub more: bool,
    /// How many dirty SKUs remain after this batch.
    pub remaining: usize,
}

/// A SKU of a brand.
pub type SkuKey = (BrandId, Id);

/// The SKUs changed since the search index last drained them, oldest first. Changes
/// to a SKU already waiting coalesce (it keeps its place), and a drain takes the
/// oldest: so a drain cycle that takes as many as were waiting when it began has
/// taken every one of them, however many arrive meanwhile.
#[derive(Debug, Default)]
pub struct DirtySet {
    set: HashSet<SkuKey>,
    order: VecDeque<SkuKey>,
}

impl DirtySet {
    pub fn insert(&mut self, key: SkuKey) {
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
        }
    }

    /// The oldest waiting SKU.
    pub fn pop(&mut self) -> Option<SkuKey> {
        let key = self.order.pop_front()?;
        self.set.remove(&key);
        Some(key)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl Extend<SkuKey> for DirtySet {
    fn extend<T: IntoIterator<Item = SkuKey>>(&mut self, keys: T) {
        keys.into_iter().for_each(|k| self.insert(k));
    }
}

impl FromIterator<SkuKey> for DirtySet {
    fn from_iter<T: IntoIterator<Item = SkuKey>>(keys: T) -> Self {
        let mut d = DirtySet::default();
        d.extend(keys);
        d
    }
}

pub struct Shard {
    pub index: usize,
    pub brands: HashMap<BrandId, BrandState>,
    /// SKUs changed since the search index last drained them.
    pub dirty: DirtySet,
    pub ctx: Context,
    pub mailbox_capacity: usize,
    /// Newest LSN applied by this shard: what a read of "all brands" waits for.
    pub last_lsn: Lsn,
}

impl Actor for Shard {
    type Context = ActixContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        tracing::info!(shard = self.index, brands = self.brands.len(), "shard started");
    }
}

impl Handler<BrandMsg> for Shard {
    type Result = ();

    fn handle(&mut self, msg: BrandMsg, _ctx: &mut Self::Context) {
        let gated = self.execute(msg.brand, msg.cmd, msg.idem);
        // The caller may have given up (client gone); the change stands either way.
        let _ = msg.reply.send(gated);
    }
}

impl Handler<DrainDirty> for Shard {
    type Result = ();

    fn handle(&mut self, msg: DrainDirty, _ctx: &mut Self::Context) {
        let mut items = Vec::with_capacity(msg.max.min(self.dirty.len()));
        while items.len() < msg.max {
            let Some((brand, sku)) = self.dirty.pop() else { break };
            items.push(match self.brands.get(&brand).and_then(|b| b.skus.get(&sku).map(|s| (b, s))) {
                Some((b, s)) => IndexItem::Upsert { brand_name: b.name.clone(), brand, sku, state: Box::new(s.clone()) },
                None => IndexItem::Delete { brand, sku },
            });
        }
        let _ = msg.reply.send(Drained { items, more: !self.dirty.is_empty(), remaining: self.dirty.len() });
    }
}

impl Handler<ListBrands> for Shard {
    type Result = ();

    fn handle(&mut self, msg: ListBrands, _ctx: &mut Self::Context) {
        let views = self.brands.values().map(BrandView::from).collect();
        let _ = msg.reply.send((self.last_lsn, views));
    }
}

fn read(wait_lsn: Lsn, body: Vec<u8>) -> Gated {
    Gated { wait_lsn, result: Ok(Reply { status: Status::Ok, body, lsn: None }) }
}

fn reject(wait_lsn: Lsn, r: Rejection) -> Gated {
    Gated { wait_lsn, result: Err(r) }
}

impl Shard {
    fn execute(&mut self, brand_id: BrandId, cmd: BrandCmd, idem: Option<IdemKey>) -> Gated {
        if let BrandCmd::Create { name } = cmd {
            return self.create_brand(brand_id, name, idem);
        }
        let Some(brand) = self.brands.get(&brand_id) else {
            return reject(0, Rejection::not_found(format!("brand {brand_id} does not exist")));
        };
        let seen = brand.last_lsn;
        if !cmd.is_read() {
            if let Some(k) = &idem {
                if let Some(g) = idempotent_replay(brand.idempotency.lookup(&k.key, &k.fingerprint)) {
                    return g;
                }
            }
        }
        match cmd {
            BrandCmd::Create { .. } => unreachable!("handled above"),
            BrandCmd::Get => read(seen, to_json(&BrandView::from(brand))),
            BrandCmd::GetSku { sku } => match brand.sku(&sku) {
                Ok(s) => read(seen, to_json(&SkuView::new(&brand.id, &sku, s, true))),
                Err(r) => reject(seen, r),
            },
            BrandCmd::GetStock { sku } => match brand.sku(&sku) {
                Ok(s) => read(seen, to_json(&StockView::new(&sku, s.stock_version, &s.levels))),
                Err(r) => reject(seen, r),
            },
            BrandCmd::PutSku { sku, catalog } => {
                let (event, created) = match brand.decide_put_sku(&sku, catalog) {
                    Ok(d) => d,
                    Err(r) => return reject(seen, r),
                };
                let now = self.ctx.clock.now();
                let preview = preview_sku(brand.skus.get(&sku), &event, now);
                let body = to_json(&SkuView::new(&brand.id, &sku, &preview, false));
                let status = if created { Status::Created } else { Status::Ok };
                self.commit(brand_id, vec![event], status, body, idem, now)
            }
            BrandCmd::StockChanges { changes } => {
                let locations = self.ctx.locations.load();
                let (events, outcomes) = brand.decide_stock_changes(&changes, &**locations);
                let results =
                    changes.iter().zip(&outcomes).enumerate().map(|(i, (c, o))| ChangeResultView::new(i, &c.sku, &c.location, o)).collect();
                let body = to_json(&ChangeResultsView { results });
                if events.is_empty() && idem.is_none() {
                    // Nothing to record: every change was rejected.
                    return read(seen, body);
                }
                let now = self.ctx.clock.now();
                self.commit(brand_id, events, Status::Ok, body, idem, now)
            }
        }
    }

    fn create_brand(&mut self, id: BrandId, name: String, idem: Option<IdemKey>) -> Gated {
        if let Some(b) = self.brands.get(&id) {
            if let Some(k) = &idem {
                if let Some(g) = idempotent_replay(b.idempotency.lookup(&k.key, &k.fingerprint)) {
                    return g;
                }
            }
            return reject(b.last_lsn, Rejection::new(ErrorCode::AlreadyExists, format!("brand {id} already exists")));
        }
        let now = self.ctx.clock.now();
        let body = to_json(&BrandView::from(&BrandState::new(id.clone(), name.clone(), now)));
        self.commit(id, vec![Event::BrandCreated { name }], Status::Created, body, idem, now)
    }

    /// Appends one record to the journal and applies it. The reply waits for the LSN.
    fn commit(&mut self, brand: BrandId, events: Vec<Event>, status: Status, body: Vec<u8>, idem: Option<IdemKey>, at: Timestamp) -> Gated {
        let idempotency = idem.map(|k| k.to_write(status, &body));
        let wal = WalRecord::Brand(BrandRecord { brand, at, idempotency, events });
        let lsn = match self.ctx.journal.append(event::encode(&wal)) {
            Ok(lsn) => lsn,
            Err(e) => return reject(0, append_refused(e)),
        };
        let WalRecord::Brand(record) = wal else { unreachable!("built as a brand record above") };
        if let Err(e) = apply_brand_record(&mut self.brands, lsn, &record) {
            fatal_apply("a brand record", lsn, &e);
        }
        self.dirty.extend(record.touched_skus().map(|sku| (record.brand.clone(), sku.clone())));
        self.last_lsn = lsn;
        Gated { wait_lsn: lsn, result: Ok(Reply { status, body, lsn: Some(lsn) }) }
    }
}

/// The SKU as it will be once `event` (an upsert) is applied.
fn preview_sku(current: Option<&SkuState>, event: &Event, now: Timestamp) -> SkuState {
    let Event::SkuUpserted { catalog, version, .. } = event else { unreachable!("preview of an upsert") };
    match current {
        Some(s) => SkuState { catalog: catalog.clone(), version: *version, updated_at: now, ..s.clone() },
        None => SkuState {
            catalog: catalog.clone(),
            version: *version,
            stock_version: 0,
            levels: Default::default(),
            created_at: now,
            updated_at: now,
        },
    }
}

/// Applies one brand record to a map of partitions: the one mutation path, shared by
/// live commits, recovery and snapshot building. A `BrandCreated` first event starts
/// the partition.
pub fn apply_brand_record(brands: &mut HashMap<BrandId, BrandState>, lsn: Lsn, record: &BrandRecord) -> Result<(), String> {
    if let Some(Event::BrandCreated { name }) = record.events.first() {
        if brands.contains_key(&record.brand) {
            return Err(format!("brand {} created twice", record.brand));
        }
        let mut state = BrandState::new(record.brand.clone(), name.clone(), record.at);
        let rest = BrandRecord { events: record.events[1..].to_vec(), ..record.clone() };
        state.apply(lsn, &rest)?;
        brands.insert(record.brand.clone(), state);
        return Ok(());
    }
    let brand = brands.get_mut(&record.brand).ok_or_else(|| format!("record for unknown brand {}", record.brand))?;
    brand.apply(lsn, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sku: &str) -> SkuKey {
        (BrandId::parse("b").unwrap(), Id::parse(sku).unwrap())
    }

    #[test]
    fn dirty_skus_drain_oldest_first_and_coalesce() {
        let mut d: DirtySet = ["A", "B", "C"].into_iter().map(key).collect();
        d.insert(key("A"));
        assert_eq!(d.len(), 3, "a SKU already waiting is not added twice");
        assert_eq!(d.pop(), Some(key("A")));
        d.insert(key("A"));
        d.insert(key("D"));
        let order: Vec<_> = std::iter::from_fn(|| d.pop()).map(|k| k.1.as_str().to_string()).collect();
        assert_eq!(order, ["B", "C", "A", "D"], "a SKU changed again after its drain waits behind the others");
        assert!(d.is_empty());
    }
}
