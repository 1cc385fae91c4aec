//! One brand's partition: its SKUs with their stock, and the brand-level state.
//! Every operation of the API except the registry's stays inside one partition, so a
//! partition is the unit of serialisation and of atomicity.
//!
//! `decide_*` functions read the state and return events (or a rejection) without
//! changing anything; [`BrandState::apply`] is the only mutation, shared by live
//! processing and recovery.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use compact_str::CompactString;

use super::alerts::{Band, Thresholds};
use super::catalog::Catalog;
use super::channel::{Channel, ChannelSync, Inbound, InboundStatus};
use super::error::{ErrorCode, FieldError, Rejection};
use super::event::{BrandRecord, Cause, Event};
use super::fulfilment::{Reservation, ReservationStatus, Shipment, ShipmentSource, StatusEntry};
use super::idempotency::IdempotencyStore;
use super::import::Imports;
use super::returns::Returns;
use super::stock::{check_reason, Levels, StockOp};
use super::transfer::Transfers;
use super::webhook::Webhook;
use super::{BrandId, Id, Lsn, Timestamp};

/// A SKU: catalog fields and stock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkuState {
    pub catalog: Catalog,
    /// Bumped by every catalog upsert.
    pub version: u64,
    /// Bumped by every change to the stock.
    pub stock_version: u64,
    pub levels: Levels,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One change of a stock-change batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockChangeCmd {
    pub sku: Id,
    pub location: Id,
    pub op: StockOp,
    pub expected_version: Option<u64>,
    pub reason: Option<CompactString>,
}

impl StockChangeCmd {
    /// A change checked as every way in checks it (`POST .../stock/changes`, a stock
    /// import row): the operation's quantity in its range ([`StockOp::check`]) and the
    /// reason a short text ([`check_reason`]). The problems, in that order, name the
    /// change's own fields (`delta`, `reason`); the caller says where the change sits.
    pub fn new(
        sku: Id,
        location: Id,
        op: StockOp,
        expected_version: Option<u64>,
        reason: Option<CompactString>,
    ) -> Result<Self, Vec<FieldError>> {
        let problems: Vec<FieldError> = op.check().into_iter().chain(check_reason(reason.as_deref())).collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(StockChangeCmd { sku, location, op, expected_version, reason })
    }
}

/// The outcome of one change of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    Applied { version: u64, on_hand: i64, available: i64 },
    Rejected(Rejection),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrandState {
    pub id: BrandId,
    pub name: String,
    pub created_at: Timestamp,
    /// Ordered, so that long jobs (channel syncs, snapshots) can walk it by position.
    /// Boxed: SKU ids mostly arrive in ascending order (imports, catalog feeds), which
    /// leaves a `BTreeMap`'s leaves about half full; a 32-byte entry instead of a
    /// 248-byte one makes that slack cheap (~100 B less per SKU measured at 1M SKUs).
    pub skus: BTreeMap<Id, Box<SkuState>>,
    pub channels: BTreeMap<Id, Channel>,
    /// Channel reconfigurations whose availability events are still streaming.
    pub channel_syncs: BTreeMap<Id, ChannelSync>,
    pub inbounds: HashMap<Id, Inbound>,
    pub reservations: HashMap<Id, Reservation>,
    /// Active reservations by expiry time.
    pub expiries: BTreeSet<(Timestamp, Id)>,
    pub shipments: HashMap<Id, Shipment>,
    pub idempotency: IdempotencyStore,
    /// LSN of the newest record applied to this brand.
    pub last_lsn: Lsn,
    /// Webhook subscriptions (`webhook.rs`).
    pub webhooks: BTreeMap<Id, Webhook>,
    /// Import jobs (`import.rs`).
    pub imports: Imports,
    /// Transfers between locations (`transfer.rs`). Ordered, for snapshots.
    pub transfers: Transfers,
    /// Returns of shipped goods (`returns.rs`), ordered for snapshots, with an index by
    /// shipment.
    pub returns: Returns,
    /// Low-stock thresholds per channel, and the band each (SKU, channel) with a
    /// threshold was last recorded in when not `ok` (`alerts.rs`).
    pub thresholds: BTreeMap<Id, Thresholds>,
    pub bands: BTreeMap<(Id, Id), Band>,
}

/// Anything the partition needs to know about the rest of the system to decide.
pub trait World {
    fn location_exists(&self, id: &Id) -> bool;
}

impl World for BTreeMap<Id, super::registry::Location> {
    fn location_exists(&self, id: &Id) -> bool {
        self.contains_key(id)
    }
}

impl BrandState {
    /// The state a `BrandCreated` event starts.
    pub fn new(id: BrandId, name: String, created_at: Timestamp) -> BrandState {
        BrandState {
            id,
            name,
            created_at,
            skus: BTreeMap::new(),
            channels: BTreeMap::new(),
            channel_syncs: BTreeMap::new(),
            inbounds: HashMap::new(),
            reservations: HashMap::new(),
            expiries: BTreeSet::new(),
            shipments: HashMap::new(),
            idempotency: IdempotencyStore::default(),
            last_lsn: 0,
            webhooks: BTreeMap::new(),
            imports: Imports::default(),
            transfers: Transfers::default(),
            returns: Returns::default(),
            thresholds: BTreeMap::new(),
            bands: BTreeMap::new(),
        }
    }

    pub fn sku(&self, sku: &Id) -> Result<&SkuState, Rejection> {
        self.skus.get(sku).map(|s| &**s).ok_or_else(|| {
            Rejection::not_found(format!(
                "sku {sku} does not exist in brand {}; create it with PUT /v1/brands/{}/skus/{sku}",
                self.id, self.id
            ))
        })
    }

    /// Upsert of a SKU's catalog fields. Returns the event and whether it was created.
    pub fn decide_put_sku(&self, sku: &Id, catalog: Catalog) -> Result<(Event, bool), Rejection> {
        let errors = catalog.validate();
        if !errors.is_empty() {
            return Err(Rejection::invalid(errors));
        }
        let (version, created) = match self.skus.get(sku) {
            Some(s) => (s.version + 1, false),
            None => (1, true),
        };
        Ok((Event::SkuUpserted { sku: sku.clone(), catalog, version }, created))
    }

    /// A batch of stock changes. Each stands alone: a rejected change does not stop the
    /// others, and later changes see the effect of earlier ones on the same SKU.
    pub fn decide_stock_changes(&self, changes: &[StockChangeCmd], world: &impl World) -> (Vec<Event>, Vec<ChangeOutcome>) {
        let mut drafts: foldhash::HashMap<&Id, (u64, Levels)> = foldhash::HashMap::default();
        let mut events = Vec::new();
        let mut outcomes = Vec::with_capacity(changes.len());
        for c in changes {
            let outcome = self.decide_one_change(c, world, &mut drafts);
            match outcome {
                Ok((version, levels)) => {
                    let level = levels.get(&c.location);
                    outcomes.push(ChangeOutcome::Applied { version, on_hand: level.on_hand, available: level.available() });
                    let channels = self.channel_view(&levels);
                    events.push(Event::StockChanged {
                        sku: c.sku.clone(),
                        version,
                        levels,
                        channels,
                        cause: Cause::Change { op: c.op, reason: c.reason.clone() },
                    });
                }
                Err(r) => outcomes.push(ChangeOutcome::Rejected(r)),
            }
        }
        (events, outcomes)
    }

    fn decide_one_change<'a>(
        &'a self,
        c: &'a StockChangeCmd,
        world: &impl World,
        drafts: &mut foldhash::HashMap<&'a Id, (u64, Levels)>,
    ) -> Result<(u64, Levels), Rejection> {
        let sku = self.sku(&c.sku)?;
        if !world.location_exists(&c.location) {
            return Err(Rejection::not_found(format!(
                "location {} does not exist; an admin creates it with PUT /v1/locations/{}",
                c.location, c.location
            )));
        }
        let draft = drafts.entry(&c.sku).or_insert_with(|| (sku.stock_version, sku.levels.clone()));
        if let Some(expected) = c.expected_version {
            if expected != draft.0 {
                return Err(Rejection::new(
                    ErrorCode::VersionConflict,
                    format!("expected version {expected} but the stock of {} is at version {}; read it again and retry", c.sku, draft.0),
                ));
            }
        }
        let level = c.op.apply_to(draft.1.get(&c.location))?;
        draft.0 += 1;
        draft.1.set(&c.location, level);
        Ok((draft.0, draft.1.clone()))
    }

    /// The state of just the objects `events` touch, after applying them: what a
    /// command's answer shows, computed before the record is written (the answer is
    /// stored with it for idempotent replays) with the very same `apply`.
    pub fn preview(&self, at: Timestamp, events: &[Event]) -> Result<BrandState, String> {
        let mut scratch = BrandState::new(self.id.clone(), self.name.clone(), self.created_at);
        for e in events {
            match e {
                Event::SkuUpserted { sku, .. } | Event::SkuDeleted { sku } | Event::StockChanged { sku, .. } => {
                    if let Some(s) = self.skus.get(sku) {
                        scratch.skus.entry(sku.clone()).or_insert_with(|| s.clone());
                    }
                }
                Event::ReservationReleased { id } | Event::ReservationExpired { id } | Event::ReservationPurged { id } => {
                    scratch.copy_reservation(self, id)
                }
                Event::ShipmentCreated { shipment } => {
                    if let ShipmentSource::Reservation(rid) = &shipment.source {
                        scratch.copy_reservation(self, rid)
                    }
                }
                Event::ShipmentStatusChanged { id, .. } | Event::ShipmentPurged { id } => {
                    if let Some(s) = self.shipments.get(id) {
                        scratch.shipments.entry(id.clone()).or_insert_with(|| s.clone());
                    }
                }
                Event::ChannelUpserted { channel } => {
                    if let Some(c) = self.channels.get(&channel.id) {
                        scratch.channels.insert(c.id.clone(), c.clone());
                    }
                    if let Some(j) = self.channel_syncs.get(&channel.id) {
                        scratch.channel_syncs.insert(channel.id.clone(), j.clone());
                    }
                }
                Event::ChannelSynced { channel, .. } => {
                    if let Some(j) = self.channel_syncs.get(channel) {
                        scratch.channel_syncs.insert(channel.clone(), j.clone());
                    }
                }
                Event::InboundReceived { id, .. } | Event::InboundClosed { id } => {
                    if let Some(i) = self.inbounds.get(id) {
                        scratch.inbounds.entry(id.clone()).or_insert_with(|| i.clone());
                    }
                }
                Event::ImportStarted { id, .. } | Event::ImportFinished { id, .. } | Event::ImportCancelled { id } => {
                    scratch.copy_import(self, id)
                }
                Event::ImportChunkApplied { progress } => scratch.copy_import(self, &progress.id),
                Event::WebhookDeleted { id } => {
                    if let Some(w) = self.webhooks.get(id) {
                        scratch.webhooks.insert(id.clone(), w.clone());
                    }
                }
                Event::TransferShipped { id }
                | Event::TransferReceived { id, .. }
                | Event::TransferClosed { id, .. }
                | Event::TransferCancelled { id }
                | Event::TransferPurged { id } => {
                    if let (Some(t), false) = (self.transfers.get(id), scratch.transfers.contains_key(id)) {
                        scratch.transfers.insert(id.clone(), t.clone());
                    }
                }
                Event::ReturnInTransit { id }
                | Event::ReturnReceived { id, .. }
                | Event::ReturnClosed { id }
                | Event::ReturnCancelled { id }
                | Event::ReturnPurged { id } => {
                    if let (Some(r), false) = (self.returns.get(id), scratch.returns.contains_key(id)) {
                        scratch.returns.insert(id.clone(), r.clone());
                    }
                }
                Event::StockAlert { sku, channel, .. } => {
                    if let Some(b) = self.bands.get(&(sku.clone(), channel.clone())) {
                        scratch.bands.insert((sku.clone(), channel.clone()), *b);
                    }
                }
                Event::BrandCreated { .. }
                | Event::ThresholdsSet { .. }
                | Event::ReturnCreated { .. }
                | Event::TransferCreated { .. }
                | Event::ReservationCreated { .. }
                | Event::InboundCreated { .. }
                | Event::WebhookCreated { .. }
                | Event::ImportQueued { .. } => {}
            }
        }
        for e in events {
            scratch.apply_event(at, e)?;
        }
        Ok(scratch)
    }

    fn copy_reservation(&mut self, from: &BrandState, id: &Id) {
        if let Some(r) = from.reservations.get(id) {
            if r.status == ReservationStatus::Active {
                self.expiries.insert((r.expires_at, id.clone()));
            }
            self.reservations.entry(id.clone()).or_insert_with(|| r.clone());
        }
    }

    /// Applies one record. Errors mean the record does not fit this state: a bug when
    /// live, damage or a wrong snapshot during recovery.
    pub fn apply(&mut self, lsn: Lsn, record: &BrandRecord) -> Result<(), String> {
        if lsn <= self.last_lsn {
            return Err(format!("brand {} lsn {lsn} is not after {}", self.id, self.last_lsn));
        }
        for ev in &record.events {
            self.apply_event(record.at, ev)?;
        }
        if let Some(w) = &record.idempotency {
            self.idempotency.insert(w, record.at, lsn);
        }
        self.last_lsn = lsn;
        Ok(())
    }

    fn apply_event(&mut self, at: Timestamp, ev: &Event) -> Result<(), String> {
        match ev {
            Event::BrandCreated { .. } => return Err(format!("brand {} created twice", self.id)),
            Event::SkuUpserted { sku, catalog, version } => match self.skus.get_mut(sku) {
                Some(s) => {
                    s.catalog = catalog.clone();
                    s.version = *version;
                    s.updated_at = at;
                }
                None => {
                    self.skus.insert(
                        sku.clone(),
                        Box::new(SkuState {
                            catalog: catalog.clone(),
                            version: *version,
                            stock_version: 0,
                            levels: Levels::default(),
                            created_at: at,
                            updated_at: at,
                        }),
                    );
                }
            },
            Event::SkuDeleted { sku } => {
                self.skus.remove(sku).ok_or_else(|| format!("deleted sku {sku} does not exist"))?;
                self.forget_bands_of(sku);
            }
            Event::StockChanged { sku, version, levels, .. } => {
                levels.check().map_err(|e| format!("stock of {sku}: {e}"))?;
                let s = self.skus.get_mut(sku).ok_or_else(|| format!("stock change for unknown sku {sku}"))?;
                if *version != s.stock_version + 1 {
                    return Err(format!("stock of {sku}: version {version} does not follow {}", s.stock_version));
                }
                s.stock_version = *version;
                s.levels = levels.clone();
                s.updated_at = at;
            }
            Event::ReservationCreated { reservation } => {
                let r = reservation.as_ref().clone();
                if r.status != ReservationStatus::Active {
                    return Err(format!("reservation {} created as {:?}", r.id, r.status));
                }
                self.expiries.insert((r.expires_at, r.id.clone()));
                if let Some(old) = self.reservations.insert(r.id.clone(), r) {
                    return Err(format!("reservation {} created twice", old.id));
                }
            }
            Event::ReservationReleased { id } => self.end_reservation(id, ReservationStatus::Released, at, None)?,
            Event::ReservationExpired { id } => self.end_reservation(id, ReservationStatus::Expired, at, None)?,
            Event::ShipmentCreated { shipment } => {
                if let ShipmentSource::Reservation(rid) = &shipment.source {
                    self.end_reservation(rid, ReservationStatus::Consumed, at, Some(shipment.id.clone()))?;
                }
                if self.shipments.insert(shipment.id.clone(), shipment.as_ref().clone()).is_some() {
                    return Err(format!("shipment {} created twice", shipment.id));
                }
            }
            Event::ShipmentStatusChanged { id, status, tracking_number, carrier } => {
                let s = self.shipments.get_mut(id).ok_or_else(|| format!("status change of unknown shipment {id}"))?;
                if !s.status.can_move_to(*status) {
                    return Err(format!("shipment {id}: {:?} cannot become {:?}", s.status, status));
                }
                s.status = *status;
                s.history.push(StatusEntry { status: *status, at });
                s.tracking_number = tracking_number.clone();
                s.carrier = carrier.clone();
                s.updated_at = at;
            }
            Event::ReservationPurged { id } => {
                let r = self.reservations.remove(id).ok_or_else(|| format!("purge of unknown reservation {id}"))?;
                if r.status == ReservationStatus::Active {
                    return Err(format!("purge of active reservation {id}"));
                }
            }
            Event::ShipmentPurged { id } => {
                let s = self.shipments.remove(id).ok_or_else(|| format!("purge of unknown shipment {id}"))?;
                if !s.status.is_final() {
                    return Err(format!("purge of shipment {id} in status {:?}", s.status));
                }
            }
            Event::ChannelUpserted { channel } => {
                let before = self.channels.insert(channel.id.clone(), channel.as_ref().clone());
                // A reconfiguration while another is still streaming restarts it for all SKUs.
                let sync = match self.channel_syncs.remove(&channel.id) {
                    Some(_) => ChannelSync { before: None, all: true, after: None },
                    None => ChannelSync { all: before.is_none(), before, after: None },
                };
                self.channel_syncs.insert(channel.id.clone(), sync);
            }
            Event::ChannelSynced { channel, after, .. } => {
                let sync =
                    self.channel_syncs.get_mut(channel).ok_or_else(|| format!("sync step of channel {channel} with no sync pending"))?;
                match after {
                    Some(a) => sync.after = Some(a.clone()),
                    None => {
                        self.channel_syncs.remove(channel);
                    }
                }
            }
            Event::InboundCreated { inbound } => {
                if self.inbounds.insert(inbound.id.clone(), inbound.as_ref().clone()).is_some() {
                    return Err(format!("inbound {} created twice", inbound.id));
                }
            }
            Event::InboundReceived { id, lines } => {
                let inbound = self.inbounds.get_mut(id).ok_or_else(|| format!("receipt for unknown inbound {id}"))?;
                if inbound.status == InboundStatus::Closed {
                    return Err(format!("receipt for closed inbound {id}"));
                }
                for (sku, q) in lines {
                    let line =
                        inbound.lines.iter_mut().find(|l| &l.sku == sku).ok_or_else(|| format!("receipt of {sku} not on inbound {id}"))?;
                    line.received += q;
                }
                inbound.status = InboundStatus::Receiving;
                inbound.updated_at = at;
            }
            Event::InboundClosed { id } => {
                let inbound = self.inbounds.get_mut(id).ok_or_else(|| format!("close of unknown inbound {id}"))?;
                inbound.status = InboundStatus::Closed;
                inbound.updated_at = at;
            }
            Event::WebhookCreated { .. } | Event::WebhookDeleted { .. } => self.apply_webhook_event(ev)?,
            Event::ImportQueued { .. }
            | Event::ImportStarted { .. }
            | Event::ImportChunkApplied { .. }
            | Event::ImportFinished { .. }
            | Event::ImportCancelled { .. } => self.apply_import_event(at, ev)?,
            Event::TransferCreated { .. }
            | Event::TransferShipped { .. }
            | Event::TransferReceived { .. }
            | Event::TransferClosed { .. }
            | Event::TransferCancelled { .. }
            | Event::TransferPurged { .. } => self.apply_transfer_event(at, ev)?,
            Event::ReturnCreated { .. }
            | Event::ReturnInTransit { .. }
            | Event::ReturnReceived { .. }
            | Event::ReturnClosed { .. }
            | Event::ReturnCancelled { .. }
            | Event::ReturnPurged { .. } => self.apply_return_event(at, ev)?,
            Event::ThresholdsSet { .. } | Event::StockAlert { .. } => self.apply_alert_event(ev)?,
        }
        Ok(())
    }

    fn end_reservation(&mut self, id: &Id, status: ReservationStatus, at: Timestamp, shipment: Option<Id>) -> Result<(), String> {
        let r = self.reservations.get_mut(id).ok_or_else(|| format!("unknown reservation {id}"))?;
        if r.status != ReservationStatus::Active {
            return Err(format!("reservation {id} is {:?}, not active", r.status));
        }
        self.expiries.remove(&(r.expires_at, id.clone()));
        r.status = status;
        r.ended_at = Some(at);
        r.shipment_id = shipment;
        Ok(())
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
mod tests;
