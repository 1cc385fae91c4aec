//! Returns of shipped goods (返品): `requested → in_transit → receiving → received →
//! closed`, or `cancelled` before anything was received.
//!
//! A return is made from a shipped or delivered shipment and never asks for more of a
//! SKU than the shipment shipped less what its other returns (not cancelled) already
//! ask for. Receiving inspects each unit into a disposition: `restock` (on hand at a
//! named location), `unsellable` (the location's unsellable units) or `missing`
//! (expected, not there: no stock moves). Units enter stock only by these receipts.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Deref;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::brand::{BrandState, World};
use super::error::{ErrorCode, FieldError, Rejection};
use super::event::{Cause, Event};
use super::fulfilment::{Decision, ShipmentStatus};
use super::transfer::LevelDelta;
use super::{Id, Timestamp};

/// Returns a brand may have open (neither closed nor cancelled) at once; one more is
/// refused with 422 `unprocessable`. Ended ones are forgotten after
/// [`ENDED_RETURN_RETENTION_MS`], so memory follows the open ones.
pub const OPEN_RETURNS_PER_BRAND_MAX: usize = 50_000;
/// How long a closed or cancelled return is kept (for `GET` and id-idempotency) before
/// it is purged — and never before its shipment is: while the shipment is kept, its
/// returns say how much of it was already returned.
pub const ENDED_RETURN_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturnStatus {
    Requested,
    /// The customer sent the goods back.
    InTransit,
    /// Some units were inspected, some are still expected.
    Receiving,
    /// Every expected unit was inspected.
    Received,
    /// Ended; what was still expected is not coming.
    Closed,
    /// Withdrawn before anything was received.
    Cancelled,
}

/// What inspecting a returned unit decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Back on hand (sellable) at the receipt line's location.
    Restock,
    /// Held at the receipt line's location as unsellable.
    Unsellable,
    /// Expected but not in the parcel.
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLine {
    pub sku: Id,
    pub quantity: i64,
    pub restocked: i64,
    pub unsellable: i64,
    pub missing: i64,
}

impl ReturnStatus {
    /// Closed or cancelled: nothing more happens to it.
    pub fn is_ended(self) -> bool {
        matches!(self, ReturnStatus::Closed | ReturnStatus::Cancelled)
    }
}

impl ReturnLine {
    /// Units expected and not inspected yet.
    pub fn remaining(&self) -> i64 {
        self.quantity - self.restocked - self.unsellable - self.missing
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Return {
    pub id: Id,
    pub shipment_id: Id,
    pub reason: CompactString,
    pub status: ReturnStatus,
    pub lines: Vec<ReturnLine>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A brand's returns by id, with the ids of each shipment's returns (so that "already
/// returned" and a shipment's `returned` read that shipment's returns, not the brand's)
/// and the count of open ones (the bound). Read as the map; changed only through
/// [`Returns::insert`], [`Returns::remove`] and this module's `apply`, which keep the
/// index and the count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Returns {
    by_id: BTreeMap<Id, Return>,
    by_shipment: HashMap<Id, BTreeSet<Id>>,
    open: usize,
}

impl Deref for Returns {
    type Target = BTreeMap<Id, Return>;

    fn deref(&self) -> &Self::Target {
        &self.by_id
    }
}

impl Returns {
    /// Adds (or replaces) a return, as a map's `insert` does.
    pub fn insert(&mut self, id: Id, ret: Return) -> Option<Return> {
        let old = self.remove(&id);
        self.by_shipment.entry(ret.shipment_id.clone()).or_default().insert(id.clone());
        self.open += usize::from(!ret.status.is_ended());
        self.by_id.insert(id, ret);
        old
    }

    pub fn remove(&mut self, id: &Id) -> Option<Return> {
        let old = self.by_id.remove(id)?;
        if let Some(ids) = self.by_shipment.get_mut(&old.shipment_id) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_shipment.remove(&old.shipment_id);
            }
        }
        self.open -= usize::from(!old.status.is_ended());
        Some(old)
    }

    /// Returns neither closed nor cancelled.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Every return of a shipment (cancelled ones too), by id.
    pub fn of_shipment<'a>(&'a self, shipment: &Id) -> impl Iterator<Item = &'a Return> + 'a {
        self.by_shipment.get(shipment).into_iter().flatten().map(|id| &self.by_id[id])
    }

    /// Whether any return is of `shipment`.
    pub fn has_shipment(&self, shipment: &Id) -> bool {
        self.by_shipment.contains_key(shipment)
    }

    /// The index and the count as a scan of the returns finds them (for tests).
    #[cfg(test)]
    pub fn check_index(&self) -> Result<(), String> {
        let mut scan: HashMap<Id, BTreeSet<Id>> = HashMap::new();
        for r in self.by_id.values() {
            scan.entry(r.shipment_id.clone()).or_default().insert(r.id.clone());
        }
        if scan != self.by_shipment {
            return Err(format!("index {:?} but a scan finds {scan:?}", self.by_shipment));
        }
        let open = self.by_id.values().filter(|r| !r.status.is_ended()).count();
        if open != self.open {
            return Err(format!("{} open counted, {open} found", self.open));
        }
        Ok(())
    }
}

/// One line of a receipt: `quantity` units of `sku` inspected into `disposition`, at
/// `location` (required for `restock` and `unsellable`, absent for `missing`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptLine {
    pub sku: Id,
    pub quantity: i64,
    pub disposition: Disposition,
    pub location: Option<Id>,
}

/// `POST .../returns`, as the domain receives it (lines checked by the caller:
/// 1..=`LINES_MAX`, positive quantities, each SKU once; the reason a short text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnCmd {
    pub id: Id,
    pub shipment_id: Id,
    pub reason: CompactString,
    pub lines: Vec<(Id, i64)>,
}

fn invalid_transition(detail: String) -> Rejection {
    Rejection::new(ErrorCode::InvalidTransition, detail)
}

pub fn status_name(s: ReturnStatus) -> &'static str {
    match s {
        ReturnStatus::Requested => "requested",
        ReturnStatus::InTransit => "in_transit",
        ReturnStatus::Receiving => "receiving",
        ReturnStatus::Received => "received",
        ReturnStatus::Closed => "closed",
        ReturnStatus::Cancelled => "cancelled",
    }
}

impl BrandState {
    pub fn return_of(&self, id: &Id) -> Result<&Return, Rejection> {
        self.returns.get(id).ok_or_else(|| Rejection::not_found(format!("return {id} does not exist")))
    }

    /// The returns of a shipment that are not cancelled, by id.
    pub fn returns_of_shipment<'a>(&'a self, shipment: &Id) -> impl Iterator<Item = &'a Return> + 'a {
        self.returns.of_shipment(shipment).filter(|r| r.status != ReturnStatus::Cancelled)
    }

    /// A return request. Same id and body: unchanged.
    pub fn decide_return(&self, cmd: &ReturnCmd, now: Timestamp) -> Result<Decision, Rejection> {
        self.decide_return_among(cmd, now, &[])
    }

    /// A return request decided as if the returns of `pending` (created by earlier rows
    /// of the same import chunk, not applied yet) existed too.
    pub(super) fn decide_return_among(&self, cmd: &ReturnCmd, now: Timestamp, pending: &[Return]) -> Result<Decision, Rejection> {
        if let Some(r) = self.returns.get(&cmd.id).or_else(|| pending.iter().find(|r| r.id == cmd.id)) {
            let same = r.shipment_id == cmd.shipment_id
                && r.reason == cmd.reason
                && r.lines.iter().map(|l| (l.sku.clone(), l.quantity)).eq(cmd.lines.iter().cloned());
            return if same {
                Ok(Decision::Unchanged)
            } else {
                Err(Rejection::new(ErrorCode::AlreadyExists, format!("return {} exists with a different request; use a new id", cmd.id)))
            };
        }
        let shipment = self.shipment(&cmd.shipment_id)?;
        if !matches!(shipment.status, ShipmentStatus::Shipped | ShipmentStatus::Delivered) {
            return Err(invalid_transition(format!(
                "shipment {} has not shipped; only a shipped or delivered shipment can be returned",
                cmd.shipment_id
            )));
        }
        let open = self.returns.open() + pending.len();
        if open >= OPEN_RETURNS_PER_BRAND_MAX {
            return Err(Rejection::new(
                ErrorCode::Unprocessable,
                format!(
                    "brand {} has {open} open returns, the most it may have ({OPEN_RETURNS_PER_BRAND_MAX}); close or cancel some first",
                    self.id
                ),
            ));
        }
        let others = self.returns_of_shipment(&cmd.shipment_id).chain(pending.iter().filter(|r| r.shipment_id == cmd.shipment_id));
        let others: Vec<&Return> = others.collect();
        let mut errors = Vec::new();
        for (i, (sku, q)) in cmd.lines.iter().enumerate() {
            let shipped: i64 = shipment.lines.iter().filter(|a| &a.sku == sku).map(|a| a.quantity).sum();
            let asked: i64 = others.iter().flat_map(|r| r.lines.iter().filter(|l| &l.sku == sku)).map(|l| l.quantity).sum();
            if shipped == 0 {
                errors.push(FieldError::new(format!("lines[{i}].sku"), format!("sku {sku} is not on shipment {}", cmd.shipment_id)));
            } else if *q > shipped - asked {
                errors.push(FieldError::new(
                    format!("lines[{i}].quantity"),
                    format!("shipment {} shipped {shipped} of {sku} and returns already ask for {asked}", cmd.shipment_id),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(Rejection::invalid(errors));
        }
        let ret = Return {
            id: cmd.id.clone(),
            shipment_id: cmd.shipment_id.clone(),
            reason: cmd.reason.clone(),
            status: ReturnStatus::Requested,
            lines: cmd
                .lines
                .iter()
                .map(|(sku, q)| ReturnLine { sku: sku.clone(), quantity: *q, restocked: 0, unsellable: 0, missing: 0 })
                .collect(),
            created_at: now,
            updated_at: now,
        };
        Ok(Decision::Apply(vec![Event::ReturnCreated { ret: Box::new(ret) }]))
    }

    /// Ended returns past their retention whose shipment is gone, or goes with
    /// `purged_shipments` (the same purge): nothing can be returned against a shipment
    /// that is not kept, so forgetting its returns cannot let it be returned twice.
    pub fn decide_return_purges(&self, now: Timestamp, purged_shipments: &[&Id]) -> Vec<Event> {
        let purged: HashSet<&Id> = purged_shipments.iter().copied().collect();
        self.returns
            .values()
            .filter(|r| r.status.is_ended() && now.0 - r.updated_at.0 > ENDED_RETURN_RETENTION_MS)
            .filter(|r| !self.shipments.contains_key(&r.shipment_id) || purged.contains(&r.shipment_id))
            .map(|r| Event::ReturnPurged { id: r.id.clone() })
            .collect()
    }

    /// The customer sent it. Again: unchanged.
    pub fn decide_return_in_transit(&self, id: &Id) -> Result<Decision, Rejection> {
        let r = self.return_of(id)?;
        match r.status {
            ReturnStatus::Requested => Ok(Decision::Apply(vec![Event::ReturnInTransit { id: id.clone() }])),
            ReturnStatus::InTransit => Ok(Decision::Unchanged),
            s => Err(invalid_transition(format!("return {id} is {}", status_name(s)))),
        }
    }

    /// A receipt: each line's units into their disposition, never more of a SKU than
    /// the return still expects.
    pub fn decide_return_receipt(&self, id: &Id, lines: &[ReceiptLine], world: &impl World) -> Result<Decision, Rejection> {
        let r = self.return_of(id)?;
        if !matches!(r.status, ReturnStatus::Requested | ReturnStatus::InTransit | ReturnStatus::Receiving) {
            return Err(invalid_transition(format!("return {id} is {}: nothing more is expected", status_name(r.status))));
        }
        let mut errors = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let Some(line) = r.lines.iter().find(|x| x.sku == l.sku) else {
                errors.push(FieldError::new(format!("lines[{i}].sku"), format!("sku {} is not on return {id}", l.sku)));
                continue;
            };
            // Every line of the receipt for this SKU up to this one counts against it.
            let so_far: i64 = lines[..=i].iter().filter(|x| x.sku == l.sku).map(|x| x.quantity).sum();
            if so_far > line.remaining() {
                errors.push(FieldError::new(
                    format!("lines[{i}].quantity"),
                    format!("return {id} still expects {} of {}", line.remaining(), l.sku),
                ));
            }
            match (&l.location, l.disposition) {
                (None, Disposition::Restock | Disposition::Unsellable) => {
                    errors.push(FieldError::new(format!("lines[{i}].location"), "required: the location the units go to"))
                }
                (Some(_), Disposition::Missing) => {
                    errors.push(FieldError::new(format!("lines[{i}].location"), "not allowed with missing: nothing arrived"))
                }
                (Some(loc), _) if !world.location_exists(loc) => {
                    errors.push(FieldError::new(format!("lines[{i}].location"), format!("location {loc} does not exist")))
                }
                _ => {}
            }
        }
        if !errors.is_empty() {
            return Err(Rejection::invalid(errors));
        }
        let moves: Vec<_> = lines
            .iter()
            .filter_map(|l| {
                let loc = l.location.clone()?;
                let d = match l.disposition {
                    Disposition::Restock => LevelDelta { on_hand: l.quantity, ..LevelDelta::default() },
                    Disposition::Unsellable => LevelDelta { unsellable: l.quantity, ..LevelDelta::default() },
                    Disposition::Missing => return None,
                };
                Some((l.sku.clone(), loc, d))
            })
            .collect();
        let mut events = vec![Event::ReturnReceived { id: id.clone(), lines: lines.to_vec() }];
        events.extend(self.level_events(&moves, Cause::ReturnReceived { id: id.clone() })?);
        Ok(Decision::Apply(events))
    }

    /// Closing: what is still expected is not coming (no stock moves). Again: unchanged.
    pub fn decide_close_return(&self, id: &Id) -> Result<Decision, Rejection> {
        let r = self.return_of(id)?;
        match r.status {
            ReturnStatus::Closed => Ok(Decision::Unchanged),
            ReturnStatus::Cancelled => Err(invalid_transition(format!("return {id} is cancelled"))),
            _ => Ok(Decision::Apply(vec![Event::ReturnClosed { id: id.clone() }])),
        }
    }

    /// Cancelling before anything was received. Again: unchanged.
    pub fn decide_cancel_return(&self, id: &Id) -> Result<Decision, Rejection> {
        let r = self.return_of(id)?;
        match r.status {
            ReturnStatus::Requested | ReturnStatus::InTransit => Ok(Decision::Apply(vec![Event::ReturnCancelled { id: id.clone() }])),
            ReturnStatus::Cancelled => Ok(Decision::Unchanged),
            s => Err(invalid_transition(format!("return {id} is {}: received units are closed, not cancelled", status_name(s)))),
        }
    }

    pub(super) fn apply_return_event(&mut self, at: Timestamp, ev: &Event) -> Result<(), String> {
        match ev {
            Event::ReturnCreated { ret } => {
                if self.returns.contains_key(&ret.id) {
                    return Err(format!("return {} created twice", ret.id));
                }
                self.returns.insert(ret.id.clone(), ret.as_ref().clone());
                return Ok(());
            }
            Event::ReturnPurged { id } => {
                let r = self.returns.remove(id).ok_or_else(|| format!("purge of unknown return {id}"))?;
                if !r.status.is_ended() {
                    return Err(format!("purge of return {id} in status {}", status_name(r.status)));
                }
                return Ok(());
            }
            _ => {}
        }
        let id = match ev {
            Event::ReturnInTransit { id }
            | Event::ReturnReceived { id, .. }
            | Event::ReturnClosed { id }
            | Event::ReturnCancelled { id } => id,
            _ => return Err(format!("not a return event: {}", ev.type_name())),
        };
        let r = self.returns.by_id.get_mut(id).ok_or_else(|| format!("{} of unknown return {id}", ev.type_name()))?;
        use ReturnStatus::*;
        let status = match (ev, r.status) {
            (Event::ReturnInTransit { .. }, Requested) => InTransit,
            (Event::ReturnCancelled { .. }, Requested | InTransit) => Cancelled,
            (Event::ReturnClosed { .. }, s) if !matches!(s, Closed | Cancelled) => Closed,
            (Event::ReturnReceived { lines, .. }, Requested | InTransit | Receiving) => {
                for l in lines {
                    let line =
                        r.lines.iter_mut().find(|x| x.sku == l.sku).ok_or_else(|| format!("receipt of {} not on return {id}", l.sku))?;
                    match l.disposition {
                        Disposition::Restock => line.restocked += l.quantity,
                        Disposition::Unsellable => line.unsellable += l.quantity,
                        Disposition::Missing => line.missing += l.quantity,
                    }
                    if line.remaining() < 0 {
                        return Err(format!("return {id}: more of {} received than expected", l.sku));
                    }
                }
                if r.lines.iter().all(|l| l.remaining() == 0) {
                    Received
                } else {
                    Receiving
                }
            }
            (_, s) => return Err(format!("return {id}: {s:?} cannot take {}", ev.type_name())),
        };
        let ends = status.is_ended() && !r.status.is_ended();
        r.status = status;
        r.updated_at = at;
        if ends {
            self.returns.open -= 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
