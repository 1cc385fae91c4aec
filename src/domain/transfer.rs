//! Transfers of stock between two locations of a brand (移動): `draft → shipped →
//! receiving → received → closed`, or `cancelled` while a draft.
//!
//! Shipping takes the units out of the origin's `on_hand` (only available ones: never
//! reserved units, never the safety stock) and counts them `in_transit` at the
//! destination; receipts move them into the destination's `on_hand`; closing writes off
//! what never arrived, as an explicit, evented loss. A unit is therefore always in one
//! place: on hand at the origin, in transit, on hand at the destination, or written off
//! by a `transfer.closed` event that names it.

use std::collections::BTreeMap;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use super::brand::{BrandState, World};
use super::error::{ErrorCode, FieldError, Rejection, Shortage};
use super::event::{Cause, Event};
use super::fulfilment::Decision;
use super::stock::Levels;
use super::{Id, Timestamp};

/// Transfers a brand may have open (neither closed nor cancelled) at once; one more is
/// refused with 422 `unprocessable`. Ended ones are forgotten after
/// [`ENDED_TRANSFER_RETENTION_MS`], so memory follows the open ones.
pub const OPEN_TRANSFERS_PER_BRAND_MAX: usize = 10_000;
/// How long a closed or cancelled transfer is kept (for `GET` and id-idempotency)
/// before it is purged.
pub const ENDED_TRANSFER_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    /// Created; nothing has moved yet. Can be shipped or cancelled.
    Draft,
    /// Units left the origin and are in transit to the destination.
    Shipped,
    /// Some units arrived, some are still in transit.
    Receiving,
    /// Every unit arrived.
    Received,
    /// Ended; what had not arrived was written off.
    Closed,
    /// Cancelled before shipping; nothing moved.
    Cancelled,
}

impl TransferStatus {
    /// Closed or cancelled: nothing more happens to it.
    pub fn is_ended(self) -> bool {
        matches!(self, TransferStatus::Closed | TransferStatus::Cancelled)
    }
}

/// A brand's transfers by id, with the count of open ones (the bound). Read as the map;
/// changed only through [`Transfers::insert`], [`Transfers::remove`] and this module's
/// `apply`, which keep the count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transfers {
    by_id: BTreeMap<Id, Transfer>,
    open: usize,
}

impl Deref for Transfers {
    type Target = BTreeMap<Id, Transfer>;

    fn deref(&self) -> &Self::Target {
        &self.by_id
    }
}

impl Transfers {
    /// Adds (or replaces) a transfer, as a map's `insert` does.
    pub fn insert(&mut self, id: Id, t: Transfer) -> Option<Transfer> {
        let old = self.remove(&id);
        self.open += usize::from(!t.status.is_ended());
        self.by_id.insert(id, t);
        old
    }

    pub fn remove(&mut self, id: &Id) -> Option<Transfer> {
        let old = self.by_id.remove(id)?;
        self.open -= usize::from(!old.status.is_ended());
        Some(old)
    }

    /// Transfers neither closed nor cancelled.
    pub fn open(&self) -> usize {
        self.open
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLine {
    pub sku: Id,
    pub quantity: i64,
    pub received: i64,
    /// Written off when the transfer was closed.
    pub written_off: i64,
}

impl TransferLine {
    /// Units of the line neither received nor written off (in transit once shipped).
    pub fn remaining(&self) -> i64 {
        self.quantity - self.received - self.written_off
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: Id,
    pub origin: Id,
    pub destination: Id,
    pub status: TransferStatus,
    pub lines: Vec<TransferLine>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// `POST .../transfers`, as the domain receives it (lines checked by the caller:
/// 1..=`LINES_MAX`, positive quantities, each SKU once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferCmd {
    pub id: Id,
    pub origin: Id,
    pub destination: Id,
    pub lines: Vec<(Id, i64)>,
}

/// A change of one SKU's level at one location, by deltas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelDelta {
    pub on_hand: i64,
    pub in_transit: i64,
    pub unsellable: i64,
}

fn invalid_transition(detail: String) -> Rejection {
    Rejection::new(ErrorCode::InvalidTransition, detail)
}

impl BrandState {
    pub fn transfer(&self, id: &Id) -> Result<&Transfer, Rejection> {
        self.transfers.get(id).ok_or_else(|| Rejection::not_found(format!("transfer {id} does not exist")))
    }

    /// A draft transfer; nothing moves until it ships. Same id and body: unchanged.
    pub fn decide_transfer(&self, cmd: &TransferCmd, world: &impl World, now: Timestamp) -> Result<Decision, Rejection> {
        self.decide_transfer_among(cmd, world, now, &[])
    }

    /// A transfer decided as if the transfers of `pending` (created by earlier rows of
    /// the same import chunk, not applied yet) existed too.
    pub(super) fn decide_transfer_among(
        &self,
        cmd: &TransferCmd,
        world: &impl World,
        now: Timestamp,
        pending: &[Transfer],
    ) -> Result<Decision, Rejection> {
        if let Some(t) = self.transfers.get(&cmd.id).or_else(|| pending.iter().find(|t| t.id == cmd.id)) {
            let same = t.origin == cmd.origin
                && t.destination == cmd.destination
                && t.lines.iter().map(|l| (l.sku.clone(), l.quantity)).eq(cmd.lines.iter().cloned());
            return if same {
                Ok(Decision::Unchanged)
            } else {
                Err(Rejection::new(ErrorCode::AlreadyExists, format!("transfer {} exists with a different request; use a new id", cmd.id)))
            };
        }
        if cmd.origin == cmd.destination {
            return Err(Rejection::invalid(vec![FieldError::new("destination", "must differ from origin")]));
        }
        for loc in [&cmd.origin, &cmd.destination] {
            if !world.location_exists(loc) {
                return Err(Rejection::not_found(format!(
                    "location {loc} does not exist; an admin creates it with PUT /v1/locations/{loc}"
                )));
            }
        }
        for (sku, _) in &cmd.lines {
            self.sku(sku)?;
        }
        let open = self.transfers.open() + pending.len();
        if open >= OPEN_TRANSFERS_PER_BRAND_MAX {
            return Err(Rejection::new(
                ErrorCode::Unprocessable,
                format!(
                    "brand {} has {open} open transfers, the most it may have ({OPEN_TRANSFERS_PER_BRAND_MAX}); close or cancel some first",
                    self.id
                ),
            ));
        }
        let transfer = Transfer {
            id: cmd.id.clone(),
            origin: cmd.origin.clone(),
            destination: cmd.destination.clone(),
            status: TransferStatus::Draft,
            lines: cmd.lines.iter().map(|(sku, q)| TransferLine { sku: sku.clone(), quantity: *q, received: 0, written_off: 0 }).collect(),
            created_at: now,
            updated_at: now,
        };
        Ok(Decision::Apply(vec![Event::TransferCreated { transfer: Box::new(transfer) }]))
    }

    /// Shipping: every line out of the origin's available units, all or nothing.
    /// Shipping again is unchanged.
    pub fn decide_ship_transfer(&self, id: &Id) -> Result<Decision, Rejection> {
        let t = self.transfer(id)?;
        match t.status {
            TransferStatus::Draft => {}
            TransferStatus::Shipped => return Ok(Decision::Unchanged),
            s => return Err(invalid_transition(format!("transfer {id} is {} and cannot be shipped again", status_name(s)))),
        }
        let mut shortages = Vec::new();
        for l in &t.lines {
            let available = self.sku(&l.sku)?.levels.get(&t.origin).available();
            if available < l.quantity {
                shortages.push(Shortage { sku: l.sku.clone(), requested: l.quantity, available });
            }
        }
        if !shortages.is_empty() {
            let mut r = Rejection::new(
                ErrorCode::InsufficientStock,
                format!(
                    "{} line(s) exceed what is available at {} (reserved units and safety stock are never transferred); nothing was shipped; see shortages",
                    shortages.len(),
                    t.origin
                ),
            );
            r.shortages = shortages;
            return Err(r);
        }
        let mut moves = Vec::new();
        for l in &t.lines {
            moves.push((l.sku.clone(), t.origin.clone(), LevelDelta { on_hand: -l.quantity, ..LevelDelta::default() }));
            moves.push((l.sku.clone(), t.destination.clone(), LevelDelta { in_transit: l.quantity, ..LevelDelta::default() }));
        }
        let mut events = vec![Event::TransferShipped { id: id.clone() }];
        events.extend(self.level_events(&moves, Cause::TransferShipped { id: id.clone() })?);
        Ok(Decision::Apply(events))
    }

    /// A receipt at the destination: each line moves from `in_transit` to `on_hand`,
    /// never more than is still in transit on the line.
    pub fn decide_transfer_receipt(&self, id: &Id, lines: &[(Id, i64)]) -> Result<Decision, Rejection> {
        let t = self.transfer(id)?;
        match t.status {
            TransferStatus::Shipped | TransferStatus::Receiving => {}
            TransferStatus::Draft => return Err(invalid_transition(format!("transfer {id} is a draft; ship it before receiving"))),
            s => return Err(invalid_transition(format!("transfer {id} is {}: nothing is in transit on it", status_name(s)))),
        }
        let mut errors = Vec::new();
        for (i, (sku, q)) in lines.iter().enumerate() {
            match t.lines.iter().find(|l| &l.sku == sku) {
                None => errors.push(FieldError::new(format!("lines[{i}].sku"), format!("sku {sku} is not on transfer {id}"))),
                Some(l) if *q > l.remaining() => errors.push(FieldError::new(
                    format!("lines[{i}].quantity"),
                    format!("only {} of {sku} are still in transit on transfer {id}", l.remaining()),
                )),
                Some(_) => {}
            }
        }
        if !errors.is_empty() {
            return Err(Rejection::invalid(errors));
        }
        let moves: Vec<_> = lines
            .iter()
            .map(|(sku, q)| (sku.clone(), t.destination.clone(), LevelDelta { on_hand: *q, in_transit: -q, unsellable: 0 }))
            .collect();
        let mut events = vec![Event::TransferReceived { id: id.clone(), lines: lines.to_vec() }];
        events.extend(self.level_events(&moves, Cause::TransferReceived { id: id.clone() })?);
        Ok(Decision::Apply(events))
    }

    /// Closing a shipped transfer: what is still in transit is written off (the event
    /// names each line's loss). Closing again is unchanged.
    pub fn decide_close_transfer(&self, id: &Id) -> Result<Decision, Rejection> {
        let t = self.transfer(id)?;
        match t.status {
            TransferStatus::Shipped | TransferStatus::Receiving | TransferStatus::Received => {}
            TransferStatus::Closed => return Ok(Decision::Unchanged),
            TransferStatus::Draft => return Err(invalid_transition(format!("transfer {id} was never shipped; cancel it instead"))),
            TransferStatus::Cancelled => return Err(invalid_transition(format!("transfer {id} is cancelled"))),
        }
        let written_off: Vec<(Id, i64)> = t.lines.iter().filter(|l| l.remaining() > 0).map(|l| (l.sku.clone(), l.remaining())).collect();
        let moves: Vec<_> = written_off
            .iter()
            .map(|(sku, q)| (sku.clone(), t.destination.clone(), LevelDelta { in_transit: -q, ..LevelDelta::default() }))
            .collect();
        let mut events = vec![Event::TransferClosed { id: id.clone(), written_off }];
        events.extend(self.level_events(&moves, Cause::TransferWrittenOff { id: id.clone() })?);
        Ok(Decision::Apply(events))
    }

    /// Cancelling a draft (nothing moved). Cancelling again is unchanged.
    pub fn decide_cancel_transfer(&self, id: &Id) -> Result<Decision, Rejection> {
        let t = self.transfer(id)?;
        match t.status {
            TransferStatus::Draft => Ok(Decision::Apply(vec![Event::TransferCancelled { id: id.clone() }])),
            TransferStatus::Cancelled => Ok(Decision::Unchanged),
            s => Err(invalid_transition(format!("transfer {id} is {}; a shipped transfer is closed, not cancelled", status_name(s)))),
        }
    }

    /// Closed or cancelled transfers past their retention.
    pub fn decide_transfer_purges(&self, now: Timestamp) -> Vec<Event> {
        self.transfers
            .values()
            .filter(|t| t.status.is_ended() && now.0 - t.updated_at.0 > ENDED_TRANSFER_RETENTION_MS)
            .map(|t| Event::TransferPurged { id: t.id.clone() })
            .collect()
    }

    /// One `StockChanged` per SKU for `moves` (`(sku, location, delta)`, a SKU may
    /// appear more than once), in the order SKUs first appear.
    pub(super) fn level_events(&self, moves: &[(Id, Id, LevelDelta)], cause: Cause) -> Result<Vec<Event>, Rejection> {
        let mut out: Vec<(Id, Levels, u64)> = Vec::new();
        for (sku, loc, d) in moves {
            let idx = match out.iter().position(|(s, _, _)| s == sku) {
                Some(i) => i,
                None => {
                    let s = self.sku(sku)?;
                    out.push((sku.clone(), s.levels.clone(), s.stock_version));
                    out.len() - 1
                }
            };
            let levels = &mut out[idx].1;
            let mut l = levels.get(loc);
            l.on_hand += d.on_hand;
            l.in_transit += d.in_transit;
            l.unsellable += d.unsellable;
            levels.set(loc, l);
        }
        Ok(out
            .into_iter()
            .map(|(sku, levels, version)| {
                let channels = self.channel_view(&levels);
                Event::StockChanged { sku, version: version + 1, levels, channels, cause: cause.clone() }
            })
            .collect())
    }

    pub(super) fn apply_transfer_event(&mut self, at: Timestamp, ev: &Event) -> Result<(), String> {
        let (id, to) = match ev {
            Event::TransferCreated { transfer } => {
                if self.transfers.contains_key(&transfer.id) {
                    return Err(format!("transfer {} created twice", transfer.id));
                }
                self.transfers.insert(transfer.id.clone(), transfer.as_ref().clone());
                return Ok(());
            }
            Event::TransferPurged { id } => {
                let t = self.transfers.remove(id).ok_or_else(|| format!("purge of unknown transfer {id}"))?;
                if !t.status.is_ended() {
                    return Err(format!("purge of transfer {id} in status {}", status_name(t.status)));
                }
                return Ok(());
            }
            Event::TransferShipped { id } => (id, TransferStatus::Shipped),
            Event::TransferReceived { id, .. } => (id, TransferStatus::Receiving),
            Event::TransferClosed { id, .. } => (id, TransferStatus::Closed),
            Event::TransferCancelled { id } => (id, TransferStatus::Cancelled),
            _ => return Err(format!("not a transfer event: {}", ev.type_name())),
        };
        let t = self.transfers.by_id.get_mut(id).ok_or_else(|| format!("{} of unknown transfer {id}", ev.type_name()))?;
        let allowed = match to {
            TransferStatus::Shipped | TransferStatus::Cancelled => t.status == TransferStatus::Draft,
            TransferStatus::Receiving => matches!(t.status, TransferStatus::Shipped | TransferStatus::Receiving),
            _ => matches!(t.status, TransferStatus::Shipped | TransferStatus::Receiving | TransferStatus::Received),
        };
        if !allowed {
            return Err(format!("transfer {id}: {:?} cannot take {}", t.status, ev.type_name()));
        }
        let mut status = to;
        match ev {
            Event::TransferReceived { lines, .. } => {
                for (sku, q) in lines {
                    let line =
                        t.lines.iter_mut().find(|l| &l.sku == sku).ok_or_else(|| format!("receipt of {sku} not on transfer {id}"))?;
                    line.received += q;
                }
                if t.lines.iter().all(|l| l.remaining() == 0) {
                    status = TransferStatus::Received;
                }
            }
            Event::TransferClosed { written_off, .. } => {
                for (sku, q) in written_off {
                    let line =
                        t.lines.iter_mut().find(|l| &l.sku == sku).ok_or_else(|| format!("write-off of {sku} not on transfer {id}"))?;
                    line.written_off += q;
                }
            }
            _ => {}
        }
        if t.lines.iter().any(|l| l.remaining() < 0) {
            return Err(format!("transfer {id}: more received or written off than shipped"));
        }
        let ends = status.is_ended() && !t.status.is_ended();
        t.status = status;
        t.updated_at = at;
        if ends {
            self.transfers.open -= 1;
        }
        Ok(())
    }
}

pub fn status_name(s: TransferStatus) -> &'static str {
    match s {
        TransferStatus::Draft => "draft",
        TransferStatus::Shipped => "shipped",
        TransferStatus::Receiving => "receiving",
        TransferStatus::Received => "received",
        TransferStatus::Closed => "closed",
        TransferStatus::Cancelled => "cancelled",
    }
}

#[cfg(test)]
mod tests;
