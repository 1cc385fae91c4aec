//! A shard actor: the brand partitions that hash to it, and the commands on them —
//! the vocabulary ([`BrandCmd`]), the decisions rendered into answers, the journal
//! append and apply, and the timer sweep. Webhook and import commands are decided in
//! `integrations.rs`; the search index's drain protocol is `drain.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context as ActixContext, Handler, Message};

use super::drain::{touched_docs, DirtySet, DrainDirty, MarkDirty};
use super::integrations;
use super::{
    append_refused, fatal_apply, idempotent_replay, partition_moved, to_json, Context, Decided, Gated, IdemKey, Logs, Pending, Reply,
    ReplyTx,
};
use crate::domain::alerts::Thresholds;
use crate::domain::brand::{apply_brand_record, BrandState, StockChangeCmd};
use crate::domain::catalog::Catalog;
use crate::domain::channel::{ChannelCmd, InboundCmd};
use crate::domain::event::{self, BrandRecord, Event, WalRecord};
use crate::domain::fulfilment::{Decision, LineRequest, ReserveCmd, ShipCmd, ShipmentSource, StatusCmd};
use crate::domain::idempotency::Status;
use crate::domain::import::ImportCmd;
use crate::domain::returns::{ReceiptLine, ReturnCmd};
use crate::domain::transfer::TransferCmd;
use crate::domain::view::{
    BrandView, ChangeResultView, ChangeResultsView, ChannelView, InboundView, ReservationView, ReturnView, ShipmentView, SkuView,
    StockView, ThresholdsView, TransferView,
};
use crate::domain::webhook::WebhookCmd;
use crate::domain::{BrandId, ErrorCode, Id, Rejection, Timestamp};
use crate::journal::{LogRef, Lsn};

/// Default mailbox bound; a full mailbox answers `overloaded`.
pub const MAILBOX_CAPACITY_DEFAULT: usize = 4096;

/// How often each shard expires reservations whose time is up.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Purging ended reservations and shipments scans every object; it runs every this
/// many sweeps.
const PURGE_EVERY_SWEEPS: u64 = 300;
/// Channel-sync chunks (of `SYNC_CHUNK_SKUS` SKUs) written per brand per sweep.
const CHANNEL_SYNC_CHUNKS_PER_SWEEP: usize = 20;
/// Records of expiries written per brand by a timer sweep (each within the journal's
/// record limit); what is still due waits for the next sweep, a second later, so a
/// burst of expiries never holds the shard for long.
const EXPIRY_RECORDS_PER_SWEEP: usize = 16;

/// A command on one brand partition.
#[derive(Debug)]
pub enum BrandCmd {
    Create {
        name: String,
    },
    Get,
    PutSku {
        sku: Id,
        catalog: Catalog,
    },
    GetSku {
        sku: Id,
    },
    DeleteSku {
        sku: Id,
    },
    GetStock {
        sku: Id,
    },
    StockChanges {
        changes: Vec<StockChangeCmd>,
    },
    Reserve(ReserveCmd),
    GetReservation {
        id: Id,
    },
    Release {
        id: Id,
    },
    Ship(ShipCmd),
    GetShipment {
        id: Id,
    },
    SetStatus(StatusCmd),
    PutChannel(ChannelCmd),
    ListChannels,
    CreateInbound(InboundCmd),
    GetInbound {
        id: Id,
    },
    Receive {
        id: Id,
        lines: Vec<(Id, i64)>,
    },
    CloseInbound {
        id: Id,
    },
    CreateTransfer(TransferCmd),
    GetTransfer {
        id: Id,
    },
    ShipTransfer {
        id: Id,
    },
    ReceiveTransfer {
        id: Id,
        lines: Vec<(Id, i64)>,
    },
    CloseTransfer {
        id: Id,
    },
    CancelTransfer {
        id: Id,
    },
    PutThresholds {
        channel: Id,
        thresholds: Thresholds,
    },
    GetThresholds {
        channel: Id,
    },
    CreateReturn(ReturnCmd),
    GetReturn {
        id: Id,
    },
    ReturnInTransit {
        id: Id,
    },
    ReceiveReturn {
        id: Id,
        lines: Vec<ReceiptLine>,
    },
    CloseReturn {
        id: Id,
    },
    CancelReturn {
        id: Id,
    },
    /// Webhook subscriptions (`integrations.rs`).
    Webhook(WebhookCmd),
    /// Import jobs and their chunks (`integrations.rs`).
    Import(ImportCmd),
}

impl BrandCmd {
    fn is_read(&self) -> bool {
        matches!(
            self,
            BrandCmd::Get
                | BrandCmd::GetSku { .. }
                | BrandCmd::GetStock { .. }
                | BrandCmd::GetReservation { .. }
                | BrandCmd::GetShipment { .. }
                | BrandCmd::GetTransfer { .. }
                | BrandCmd::GetReturn { .. }
                | BrandCmd::GetThresholds { .. }
        ) || matches!(self, BrandCmd::Webhook(c) if c.is_read())
            || matches!(self, BrandCmd::Import(c) if c.is_read())
    }
}

/// Expires what is due (and purges what is old) in every brand of the shard now;
/// replies with the newest position written, if any. Sent on a timer, at start, and by the manual
/// clock endpoint after it moves time. A sweep that is answered (`reply`: at start and
/// for the clock) expires everything due before it answers; the timer's writes at most
/// [`EXPIRY_RECORDS_PER_SWEEP`] records of expiries per brand.
pub struct Sweep {
    pub reply: Option<tokio::sync::oneshot::Sender<Vec<Pending>>>,
}

impl Message for Sweep {
    type Result = ();
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
    pub reply: tokio::sync::oneshot::Sender<(Vec<Pending>, Vec<BrandView>)>,
}

impl Message for ListBrands {
    type Result = ();
}

pub struct Shard {
    pub index: usize,
    pub brands: HashMap<BrandId, BrandState>,
    /// Documents (SKUs, shipments) changed since the search index last drained them.
    pub dirty: DirtySet,
    pub ctx: Context,
    /// Where the shard's records go.
    pub logs: Logs,
    pub mailbox_capacity: usize,
    /// Newest LSN applied by this shard: what a read of "all brands" waits for.
    pub last_lsn: Lsn,
    /// Sweeps run so far (purges run every `PURGE_EVERY_SWEEPS`).
    pub sweeps: u64,
    /// Brand commands queued for this shard (see `Router::try_send_brand`).
    pub queued: Arc<AtomicI64>,
    /// Cluster mode: partitions removed since the search index last drained, whose
    /// documents it deletes (see `DrainDirty`).
    pub purged: Vec<u32>,
}

impl Actor for Shard {
    type Context = ActixContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        ctx.run_interval(SWEEP_INTERVAL, |shard, _| {
            shard.sweep(false);
        });
        tracing::info!(shard = self.index, brands = self.brands.len(), "shard started");
    }
}

impl Handler<BrandMsg> for Shard {
    type Result = ();

    fn handle(&mut self, msg: BrandMsg, _ctx: &mut Self::Context) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        let gated = self.execute(msg.brand, msg.cmd, msg.idem);
        // The caller may have given up (client gone); the change stands either way.
        let _ = msg.reply.send(gated);
    }
}

impl Handler<Sweep> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Sweep, _ctx: &mut Self::Context) {
        let lsn = self.sweep(msg.reply.is_some());
        if let Some(reply) = msg.reply {
            let _ = reply.send(self.seen(lsn));
        }
    }
}

impl Handler<DrainDirty> for Shard {
    type Result = ();

    fn handle(&mut self, msg: DrainDirty, _ctx: &mut Self::Context) {
        let mut drained = self.dirty.drain(&self.brands, msg.max);
        drained.purged = std::mem::take(&mut self.purged);
        let _ = msg.reply.send(drained);
    }
}

impl Handler<MarkDirty> for Shard {
    type Result = ();

    fn handle(&mut self, msg: MarkDirty, _ctx: &mut Self::Context) {
        self.dirty.extend(msg.keys);
        // Purged before any that left since: the order of leaving and arriving again.
        let newer = std::mem::replace(&mut self.purged, msg.purged);
        self.purged.extend(newer);
    }
}

/// Cluster mode: this node now owns `partition`; its brands (as the takeover's catch-up
/// left them) are served from here, their records go to `log`.
pub struct InstallPartition {
    pub partition: u32,
    pub brands: HashMap<BrandId, BrandState>,
    pub log: LogRef,
}

impl Message for InstallPartition {
    type Result = ();
}

/// Cluster mode: this node no longer owns `partition`; its brands are dropped (they may
/// hold changes that were never acknowledged — the partition's journal is the truth).
pub struct RemovePartition {
    pub partition: u32,
}

impl Message for RemovePartition {
    type Result = ();
}

impl Handler<InstallPartition> for Shard {
    type Result = ();

    fn handle(&mut self, msg: InstallPartition, _ctx: &mut Self::Context) {
        let Logs::Partitioned { owned, .. } = &mut self.logs else {
            tracing::error!(partition = msg.partition, "a partition was installed in a single-node shard; ignored");
            return;
        };
        owned.insert(msg.partition, msg.log);
        self.last_lsn = self.last_lsn.max(msg.brands.values().map(|b| b.last_lsn).max().unwrap_or(0));
        // The node's search index holds only the partitions it owns: all of this one's
        // documents are indexed again (after the purge of its last stay, if any).
        self.dirty.extend(msg.brands.values().flat_map(crate::actors::drain::all_docs));
        self.brands.extend(msg.brands);
        tracing::info!(shard = self.index, partition = msg.partition, brands = self.brands.len(), "serving the partition");
        // Reservations that expired while the partition changed owner expire before the
        // new owner answers anything about them.
        self.sweep(true);
    }
}

impl Handler<RemovePartition> for Shard {
    type Result = ();

    fn handle(&mut self, msg: RemovePartition, _ctx: &mut Self::Context) {
        if let Logs::Partitioned { owned, .. } = &mut self.logs {
            owned.remove(&msg.partition);
        }
        let logs = &self.logs;
        self.brands.retain(|id, _| logs.partition(id) != Some(msg.partition));
        self.purged.push(msg.partition);
        tracing::info!(shard = self.index, partition = msg.partition, "stopped serving the partition");
    }
}

impl Handler<ListBrands> for Shard {
    type Result = ();

    fn handle(&mut self, msg: ListBrands, _ctx: &mut Self::Context) {
        let views = self.brands.values().map(BrandView::from).collect();
        let _ = msg.reply.send((self.seen(self.last_lsn), views));
    }
}

impl Shard {
    pub fn new(
        index: usize,
        brands: HashMap<BrandId, BrandState>,
        dirty: DirtySet,
        ctx: Context,
        logs: Logs,
        mailbox_capacity: usize,
        queued: Arc<AtomicI64>,
    ) -> Shard {
        let last_lsn = brands.values().map(|b| b.last_lsn).max().unwrap_or(0);
        Shard { index, brands, dirty, ctx, logs, mailbox_capacity, last_lsn, sweeps: 0, queued, purged: Vec::new() }
    }

    /// What a read across the shard's brands could have seen, for it to wait on: up to
    /// `last_lsn` of the one journal, or everything handed out in each partition's.
    fn seen(&self, last_lsn: Lsn) -> Vec<Pending> {
        match &self.logs {
            Logs::One(log) => vec![Pending { log: log.clone(), lsn: last_lsn }],
            Logs::Partitioned { owned, .. } => {
                owned.values().map(|log| Pending { log: log.clone(), lsn: log.last_assigned_lsn() }).collect()
            }
        }
    }

    fn execute(&mut self, brand_id: BrandId, cmd: BrandCmd, idem: Option<IdemKey>) -> Gated {
        let Some(log) = self.logs.for_brand(&brand_id).cloned() else {
            return Gated::refused(partition_moved(&brand_id));
        };
        if let BrandCmd::Create { name } = cmd {
            return self.create_brand(&log, brand_id, name, idem);
        }
        let Some(brand) = self.brands.get(&brand_id) else {
            return Gated::refused(Rejection::not_found(format!("brand {brand_id} does not exist")));
        };
        let seen = brand.last_lsn;
        if !cmd.is_read() {
            if let Some(k) = &idem {
                if let Some(g) = idempotent_replay(brand.idempotency.lookup(&k.key, &k.fingerprint), &log) {
                    return g;
                }
            }
        }
        let now = self.ctx.clock.now();
        let hint = too_large_hint(&cmd);
        let decided = match self.decide(brand, cmd, now) {
            Ok(d) => d,
            Err(r) => return Gated::after(&log, seen, Err(r)),
        };
        let (events, status, body) = match decided {
            Decided::Read(body) => return read(&log, seen, body),
            Decided::Write { events, status, render } => match brand.preview(now, &events) {
                Ok(scratch) => (events, status, render(&scratch)),
                Err(e) => fatal_apply("a preview of a decided record", seen, &e),
            },
            Decided::WriteAnswered { events, status, body } => (events, status, body),
        };
        if events.is_empty() && idem.is_none() {
            // Nothing to record (every change of a batch was rejected).
            return read(&log, seen, body);
        }
        self.commit(brand_id, events, status, body, idem, now, hint)
    }

    /// Runs the domain decision for one command, without changing anything.
    fn decide(&self, brand: &BrandState, cmd: BrandCmd, now: Timestamp) -> Result<Decided, Rejection> {
        Ok(match cmd {
            BrandCmd::Create { .. } => unreachable!("handled by create_brand"),
            BrandCmd::Get => Decided::Read(to_json(&BrandView::from(brand))),
            BrandCmd::GetSku { sku } => Decided::Read(to_json(&SkuView::new(brand, &sku, brand.sku(&sku)?, true))),
            BrandCmd::GetStock { sku } => Decided::Read(to_json(&StockView::of(brand, &sku, brand.sku(&sku)?))),
            BrandCmd::GetReservation { id } => Decided::Read(to_json(&ReservationView::from(brand.reservation(&id)?))),
            BrandCmd::GetShipment { id } => Decided::Read(to_json(&ShipmentView::with_returns(brand.shipment(&id)?, brand))),
            BrandCmd::PutSku { sku, catalog } => {
                let (event, created) = brand.decide_put_sku(&sku, catalog)?;
                let status = if created { Status::Created } else { Status::Done };
                Decided::write(vec![event], status, move |s| to_json(&SkuView::new(s, &sku, &s.skus[&sku], false)))
            }
            BrandCmd::DeleteSku { sku } => Decided::write(vec![brand.decide_delete_sku(&sku)?], Status::Removed, |_| Vec::new()),
            BrandCmd::StockChanges { changes } => {
                let locations = self.ctx.locations.load();
                let (events, outcomes) = brand.decide_stock_changes(&changes, &**locations);
                // What a preview would catch before the record is written; the answer
                // comes from the decision, so the preview's copies would be wasted.
                if let Err(e) = brand.check_bulk_events(&events) {
                    fatal_apply("a check of decided stock changes", brand.last_lsn, &e);
                }
                let results =
                    changes.iter().zip(&outcomes).enumerate().map(|(i, (c, o))| ChangeResultView::new(i, &c.sku, &c.location, o)).collect();
                Decided::WriteAnswered { events, status: Status::Done, body: to_json(&ChangeResultsView { results }) }
            }
            BrandCmd::Reserve(cmd) => {
                self.check_locations(&cmd.lines)?;
                let id = cmd.id.clone();
                match brand.decide_reserve(&cmd, &brand.scope_for(Some(&cmd.channel)), now)? {
                    Decision::Unchanged => Decided::Read(to_json(&ReservationView::from(brand.reservation(&id)?))),
                    Decision::Apply(events) => {
                        Decided::write(events, Status::Created, move |s| to_json(&ReservationView::from(&s.reservations[&id])))
                    }
                }
            }
            BrandCmd::Release { id } => match brand.decide_release(&id, now)? {
                Decision::Unchanged => Decided::Read(to_json(&ReservationView::from(brand.reservation(&id)?))),
                Decision::Apply(events) => {
                    Decided::write(events, Status::Done, move |s| to_json(&ReservationView::from(&s.reservations[&id])))
                }
            },
            BrandCmd::Ship(cmd) => {
                if let ShipmentSource::Lines(lines) = &cmd.source {
                    self.check_locations(lines)?;
                }
                let id = cmd.id.clone();
                match brand.decide_ship(&cmd, &brand.scope_for(cmd.channel.as_ref()), now)? {
                    Decision::Unchanged => Decided::Read(to_json(&ShipmentView::from(brand.shipment(&id)?))),
                    Decision::Apply(events) => {
                        Decided::write(events, Status::Created, move |s| to_json(&ShipmentView::from(&s.shipments[&id])))
                    }
                }
            }
            BrandCmd::PutChannel(cmd) => {
                let locations = self.ctx.locations.load();
                let id = cmd.id.clone();
                let (event, created) = brand.decide_put_channel(cmd, |l| locations.contains_key(l), now)?;
                let status = if created { Status::Created } else { Status::Done };
                Decided::write(vec![event], status, move |s| to_json(&ChannelView::new(s, &s.channels[&id])))
            }
            BrandCmd::ListChannels => {
                let channels: Vec<_> = brand.channels.values().map(|c| ChannelView::new(brand, c)).collect();
                Decided::Read(to_json(&serde_json::json!({ "channels": channels })))
            }
            BrandCmd::CreateInbound(cmd) => {
                self.check_location(&cmd.location)?;
                let id = cmd.id.clone();
                match brand.decide_inbound(&cmd, now)? {
                    Decision::Unchanged => Decided::Read(to_json(&InboundView::from(brand.inbound(&id)?))),
                    Decision::Apply(events) => {
                        Decided::write(events, Status::Created, move |s| to_json(&InboundView::from(&s.inbounds[&id])))
                    }
                }
            }
            BrandCmd::GetInbound { id } => Decided::Read(to_json(&InboundView::from(brand.inbound(&id)?))),
            BrandCmd::Receive { id, lines } => match brand.decide_receipt(&id, &lines)? {
                Decision::Unchanged => Decided::Read(to_json(&InboundView::from(brand.inbound(&id)?))),
                Decision::Apply(events) => Decided::write(events, Status::Done, move |s| to_json(&InboundView::from(&s.inbounds[&id]))),
            },
            BrandCmd::CloseInbound { id } => match brand.decide_close_inbound(&id)? {
                Decision::Unchanged => Decided::Read(to_json(&InboundView::from(brand.inbound(&id)?))),
                Decision::Apply(events) => Decided::write(events, Status::Done, move |s| to_json(&InboundView::from(&s.inbounds[&id]))),
            },
            BrandCmd::CreateTransfer(cmd) => {
                let id = cmd.id.clone();
                let decision = brand.decide_transfer(&cmd, &**self.ctx.locations.load(), now)?;
                transfer_answer(brand, id, decision, Status::Created)?
            }
            BrandCmd::GetTransfer { id } => Decided::Read(to_json(&TransferView::from(brand.transfer(&id)?))),
            BrandCmd::ShipTransfer { id } => transfer_answer(brand, id.clone(), brand.decide_ship_transfer(&id)?, Status::Done)?,
            BrandCmd::ReceiveTransfer { id, lines } => {
                transfer_answer(brand, id.clone(), brand.decide_transfer_receipt(&id, &lines)?, Status::Done)?
            }
            BrandCmd::CloseTransfer { id } => transfer_answer(brand, id.clone(), brand.decide_close_transfer(&id)?, Status::Done)?,
            BrandCmd::CancelTransfer { id } => transfer_answer(brand, id.clone(), brand.decide_cancel_transfer(&id)?, Status::Done)?,
            BrandCmd::PutThresholds { channel, thresholds } => {
                configured_channel(brand, &channel)?;
                let view = ThresholdsView::new(&channel, &thresholds);
                let body = to_json(&view);
                Decided::WriteAnswered {
                    events: vec![Event::ThresholdsSet { channel, thresholds: Box::new(thresholds) }],
                    status: Status::Done,
                    body,
                }
            }
            BrandCmd::GetThresholds { channel } => {
                configured_channel(brand, &channel)?;
                let t = brand.thresholds.get(&channel).cloned().unwrap_or_default();
                Decided::Read(to_json(&ThresholdsView::new(&channel, &t)))
            }
            BrandCmd::CreateReturn(cmd) => {
                let id = cmd.id.clone();
                let decision = brand.decide_return(&cmd, now)?;
                return_answer(brand, id, decision, Status::Created)?
            }
            BrandCmd::GetReturn { id } => Decided::Read(to_json(&ReturnView::from(brand.return_of(&id)?))),
            BrandCmd::ReturnInTransit { id } => return_answer(brand, id.clone(), brand.decide_return_in_transit(&id)?, Status::Done)?,
            BrandCmd::ReceiveReturn { id, lines } => {
                let decision = brand.decide_return_receipt(&id, &lines, &**self.ctx.locations.load())?;
                return_answer(brand, id, decision, Status::Done)?
            }
            BrandCmd::CloseReturn { id } => return_answer(brand, id.clone(), brand.decide_close_return(&id)?, Status::Done)?,
            BrandCmd::CancelReturn { id } => return_answer(brand, id.clone(), brand.decide_cancel_return(&id)?, Status::Done)?,
            BrandCmd::SetStatus(cmd) => {
                let id = cmd.id.clone();
                match brand.decide_status(&cmd)? {
                    Decision::Unchanged => Decided::Read(to_json(&ShipmentView::from(brand.shipment(&id)?))),
                    Decision::Apply(events) => {
                        Decided::write(events, Status::Done, move |s| to_json(&ShipmentView::from(&s.shipments[&id])))
                    }
                }
            }
            BrandCmd::Webhook(cmd) => integrations::decide_webhook(brand, cmd)?,
            BrandCmd::Import(cmd) => integrations::decide_import(brand, cmd, &**self.ctx.locations.load(), now)?,
        })
    }

    /// A line pinned to a location names one that exists.
    fn check_locations(&self, lines: &[LineRequest]) -> Result<(), Rejection> {
        lines.iter().filter_map(|l| l.location.as_ref()).try_for_each(|l| self.check_location(l))
    }

    fn check_location(&self, location: &Id) -> Result<(), Rejection> {
        if self.ctx.locations.load().contains_key(location) {
            Ok(())
        } else {
            Err(Rejection::not_found(format!("location {location} does not exist")))
        }
    }

    /// Expires due reservations (and, now and then, purges old ones) in every brand.
    /// Returns the newest LSN this shard has written. Every record it writes is bounded
    /// by the journal's record limit, however much is due at once.
    fn sweep(&mut self, exhaustive: bool) -> Lsn {
        self.sweeps += 1;
        let now = self.ctx.clock.now();
        let purge = self.sweeps % PURGE_EVERY_SWEEPS == 1;
        // A brand with a channel reconfiguration still streaming is due too: its steps
        // run here, not only when something expires.
        let due: Vec<BrandId> = self
            .brands
            .values()
            .filter(|b| purge || !b.channel_syncs.is_empty() || b.expiries.first().is_some_and(|(at, _)| *at <= now))
            .map(|b| b.id.clone())
            .collect();
        for id in due {
            self.expire_due(&id, now, exhaustive, purge);
            if purge {
                self.purge_ended(&id, now);
            }
            self.step_channel_syncs(&id, now);
        }
        self.last_lsn
    }

    /// The room for events in a record the server writes on its own.
    fn events_budget(&self) -> usize {
        event::events_budget(self.ctx.record_bytes_max)
    }

    /// Expires a brand's due reservations, oldest first, one record of whole
    /// reservations at a time (`EXPIRY_RECORDS_PER_SWEEP` at most unless `exhaustive`).
    fn expire_due(&mut self, brand: &BrandId, now: Timestamp, exhaustive: bool, report: bool) {
        let budget = self.events_budget();
        let records_max = if exhaustive { usize::MAX } else { EXPIRY_RECORDS_PER_SWEEP };
        for _ in 0..records_max {
            let Some(b) = self.brands.get(brand) else { return };
            let due = match b.decide_expiries_within(now, budget) {
                Ok(d) => d,
                Err(r) => fatal_apply("an expiry decision", b.last_lsn, &r.to_string()),
            };
            if report && !due.too_large.is_empty() {
                tracing::warn!(
                    brand = %brand,
                    count = due.too_large.len(),
                    first = %due.too_large[0],
                    "due reservations stay active: expiring one would take a journal record over --wal-record-bytes-max; raise it"
                );
            }
            if due.events.is_empty() {
                return;
            }
            if let Err(r) = self.commit(brand.clone(), due.events, Status::Done, Vec::new(), None, now, "").result {
                tracing::warn!(error = %r, "expiry sweep could not be written; retrying on the next sweep");
                return;
            }
            if !due.more {
                return;
            }
        }
    }

    /// Forgets a brand's reservations and shipments past their retention, in records
    /// within the journal's record limit.
    fn purge_ended(&mut self, brand: &BrandId, now: Timestamp) {
        let Some(b) = self.brands.get(brand) else { return };
        for run in event::split_by_budget(b.decide_purges(now), self.events_budget()) {
            if let Err(r) = self.commit(brand.clone(), run, Status::Done, Vec::new(), None, now, "").result {
                tracing::warn!(error = %r, "purge could not be written; retrying on the next purge");
                return;
            }
        }
    }

    /// Streams pending channel-reconfiguration events: a few chunks per sweep, one
    /// record each (within the journal's record limit), so a large catalog never
    /// stalls the shard.
    fn step_channel_syncs(&mut self, brand: &BrandId, now: Timestamp) {
        let budget = self.events_budget();
        for _ in 0..CHANNEL_SYNC_CHUNKS_PER_SWEEP {
            let Some(event) = self.brands.get(brand).and_then(|b| b.decide_channel_sync_within(budget)) else { return };
            if let Err(r) = self.commit(brand.clone(), vec![event], Status::Done, Vec::new(), None, now, "").result {
                tracing::warn!(error = %r, "channel sync step could not be written; retrying on the next sweep");
                return;
            }
        }
    }

    fn create_brand(&mut self, log: &LogRef, id: BrandId, name: String, idem: Option<IdemKey>) -> Gated {
        if let Some(b) = self.brands.get(&id) {
            if let Some(k) = &idem {
                if let Some(g) = idempotent_replay(b.idempotency.lookup(&k.key, &k.fingerprint), log) {
                    return g;
                }
            }
            return Gated::after(log, b.last_lsn, Err(Rejection::new(ErrorCode::AlreadyExists, format!("brand {id} already exists"))));
        }
        let now = self.ctx.clock.now();
        let body = to_json(&BrandView::from(&BrandState::new(id.clone(), name.clone(), now)));
        self.commit(id, vec![Event::BrandCreated { name }], Status::Created, body, idem, now, "")
    }

    /// Appends one record to the journal and applies it. The reply waits for the LSN.
    /// A record over the journal's limit is refused here, before anything changes,
    /// with `payload_too_large` and `hint` (what the caller can do about it).
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        brand: BrandId,
        events: Vec<Event>,
        status: Status,
        body: Vec<u8>,
        idem: Option<IdemKey>,
        at: Timestamp,
        hint: &str,
    ) -> Gated {
        let Some(log) = self.logs.for_brand(&brand).cloned() else {
            return Gated::refused(partition_moved(&brand));
        };
        let idempotency = idem.map(|k| k.to_write(status, &body));
        // The low-stock alerts the changes cause go in the same record. A record they
        // would take over the limit goes without them: the bands stay as recorded, so
        // the next change of those SKUs reports the crossing (`alerts.rs`).
        let alerts = self.brands.get(&brand).map(|b| b.stock_alerts(&events)).unwrap_or_default();
        let bare = events.len();
        let mut events = events;
        events.extend(alerts);
        let max = self.ctx.record_bytes_max;
        let mut wal = WalRecord::Brand(BrandRecord { brand, at, idempotency, events });
        let mut payload = event::encode(&wal);
        if payload.len() > max {
            if let WalRecord::Brand(r) = &mut wal {
                r.events.truncate(bare);
            }
            payload = event::encode(&wal);
        }
        if payload.len() > max {
            return Gated::refused(too_large(payload.len(), max, hint));
        }
        let lsn = match log.append(payload) {
            Ok(lsn) => lsn,
            Err(e) => return Gated::refused(append_refused(e)),
        };
        let WalRecord::Brand(record) = wal else { unreachable!("built as a brand record above") };
        if let Err(e) = apply_brand_record(&mut self.brands, lsn, &record) {
            fatal_apply("a brand record", lsn, &e);
        }
        self.dirty.extend(touched_docs(&record));
        self.last_lsn = lsn;
        Gated::after(&log, lsn, Ok(Reply { status, body, lsn: Some(lsn) }))
    }
}

/// A transfer command's answer: the transfer as it is (unchanged) or as the events
/// leave it.
fn transfer_answer(brand: &BrandState, id: Id, decision: Decision, status: Status) -> Result<Decided, Rejection> {
    Ok(match decision {
        Decision::Unchanged => Decided::Read(to_json(&TransferView::from(brand.transfer(&id)?))),
        Decision::Apply(events) => Decided::write(events, status, move |s| to_json(&TransferView::from(&s.transfers[&id]))),
    })
}

/// Alerts follow the availability `stock.changed` carries, which is that of the
/// configured channels: thresholds are for those only.
fn configured_channel(brand: &BrandState, channel: &Id) -> Result<(), Rejection> {
    if brand.channels.contains_key(channel) {
        return Ok(());
    }
    Err(Rejection::new(
        ErrorCode::UnknownChannel,
        format!("channel {channel} is not configured for this brand; configure it first (PUT .../channels/{channel})"),
    ))
}

/// A return command's answer: the return as it is (unchanged) or as the events leave it.
fn return_answer(brand: &BrandState, id: Id, decision: Decision, status: Status) -> Result<Decided, Rejection> {
    Ok(match decision {
        Decision::Unchanged => Decided::Read(to_json(&ReturnView::from(brand.return_of(&id)?))),
        Decision::Apply(events) => Decided::write(events, status, move |s| to_json(&ReturnView::from(&s.returns[&id]))),
    })
}

/// A read's answer, given once what it saw (`seen`) is durable.
fn read(log: &LogRef, seen: Lsn, body: Vec<u8>) -> Gated {
    Gated::after(log, seen, Ok(Reply { status: Status::Done, body, lsn: None }))
}

/// What a caller can do about a command whose record would be over the journal's limit.
fn too_large_hint(cmd: &BrandCmd) -> &'static str {
    match cmd {
        BrandCmd::StockChanges { .. } => "each change records its SKU's stock at every location: send fewer changes per request",
        BrandCmd::Reserve(_)
        | BrandCmd::Ship(_)
        | BrandCmd::CreateInbound(_)
        | BrandCmd::Receive { .. }
        | BrandCmd::ShipTransfer { .. }
        | BrandCmd::ReceiveTransfer { .. }
        | BrandCmd::CloseTransfer { .. } => "each line records its SKU's stock at every location: send fewer lines per request",
        // The runner splits the chunk, and reports a row that cannot fit alone.
        BrandCmd::Import(ImportCmd::Chunk(_)) => "",
        _ => "an operator can raise --wal-record-bytes-max (at most 16 MiB)",
    }
}

/// The refusal of a command whose record would be over the journal's record limit.
fn too_large(bytes: usize, max: usize, hint: &str) -> Rejection {
    let hint = if hint.is_empty() { String::new() } else { format!("; {hint}") };
    Rejection::new(
        ErrorCode::PayloadTooLarge,
        format!("this change would take a journal record of {bytes} bytes, over the limit of {max} bytes (--wal-record-bytes-max); nothing was changed{hint}"),
    )
}
