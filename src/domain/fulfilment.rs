//! Reservations and shipments: holding stock for an order, and moving it out.
//!
//! Holding is `reserved` at a (SKU, location). The invariant, checked by the property
//! tests: at every (SKU, location), `reserved` equals the sum of the allocations of the
//! active reservations plus those of the shipments not yet shipped or cancelled.

use std::collections::HashMap;
use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::brand::BrandState;
use super::error::{ErrorCode, FieldError, Rejection, Shortage};
use super::event::{encoded_len, Cause, Event};
use super::stock::Levels;
use super::text::check_text;
use super::{Id, Timestamp};

/// Most lines of one reservation or shipment.
pub const LINES_MAX: usize = 100;
/// Bounds of `ttl_seconds`; the default when it is not given.
pub const TTL_SECONDS_MAX: i64 = 86_400;
pub const TTL_SECONDS_DEFAULT: i64 = 900;
/// How long ended reservations are kept (for `GET` and id-idempotency) before purging.
pub const ENDED_RESERVATION_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// How long delivered or cancelled shipments are kept in memory before purging.
pub const ENDED_SHIPMENT_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// Checks the lines of a request or of an imported document: 1..=`max` of them,
/// quantities 1..=`QUANTITY_MAX`, no SKU twice. Each problem is pushed to `errors`
/// naming `field[i].quantity`/`.sku`.
pub fn check_line_set<'a>(field: &str, lines: impl ExactSizeIterator<Item = (&'a Id, i64)>, max: usize, errors: &mut Vec<FieldError>) {
    use super::stock::QUANTITY_MAX;
    if lines.len() == 0 || lines.len() > max {
        errors.push(FieldError::new(field, format!("must hold 1..={max} lines, got {}", lines.len())));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, (sku, quantity)) in lines.enumerate() {
        if !(1..=QUANTITY_MAX).contains(&quantity) {
            errors.push(FieldError::new(format!("{field}[{i}].quantity"), format!("must be 1..={QUANTITY_MAX}")));
        }
        if !seen.insert(sku) {
            errors.push(FieldError::new(format!("{field}[{i}].sku"), "the same sku may not appear twice; add the quantities up"));
        }
    }
}

/// One requested line: a SKU, optionally pinned to a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRequest {
    pub sku: Id,
    pub location: Option<Id>,
    pub quantity: i64,
}

/// Units of a SKU held at one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub sku: Id,
    pub location: Id,
    pub quantity: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    Active,
    Released,
    Expired,
    /// Turned into a shipment; it no longer expires.
    Consumed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: Id,
    pub channel: Id,
    pub status: ReservationStatus,
    pub ttl_seconds: i64,
    pub requested: Vec<LineRequest>,
    pub lines: Vec<Allocation>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub shipment_id: Option<Id>,
}

/// A reservation request, as the domain receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveCmd {
    pub id: Id,
    pub channel: Id,
    pub ttl_seconds: i64,
    pub lines: Vec<LineRequest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    Accepted,
    Picking,
    Packed,
    Shipped,
    Delivered,
    Cancelled,
}

impl ShipmentStatus {
    /// The statuses a command may move a shipment to: all but `accepted`, where a
    /// shipment starts.
    pub const TARGETS: [ShipmentStatus; 5] =
        [ShipmentStatus::Picking, ShipmentStatus::Packed, ShipmentStatus::Shipped, ShipmentStatus::Delivered, ShipmentStatus::Cancelled];

    /// The status named exactly `name` (`"shipped"`), if any.
    pub fn parse(name: &str) -> Option<ShipmentStatus> {
        std::iter::once(ShipmentStatus::Accepted).chain(ShipmentStatus::TARGETS).find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentStatus::Accepted => "accepted",
            ShipmentStatus::Picking => "picking",
            ShipmentStatus::Packed => "packed",
            ShipmentStatus::Shipped => "shipped",
            ShipmentStatus::Delivered => "delivered",
            ShipmentStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the shipment still holds its quantities as `reserved`.
    pub fn holds_stock(self) -> bool {
        matches!(self, ShipmentStatus::Accepted | ShipmentStatus::Picking | ShipmentStatus::Packed)
    }

    pub fn can_move_to(self, next: ShipmentStatus) -> bool {
        use ShipmentStatus::*;
        matches!(
            (self, next),
            (Accepted, Picking) | (Picking, Packed) | (Packed, Shipped) | (Shipped, Delivered) | (Accepted | Picking | Packed, Cancelled)
        )
    }

    pub fn is_final(self) -> bool {
        matches!(self, ShipmentStatus::Delivered | ShipmentStatus::Cancelled)
    }
}

/// Where a shipment goes. Personal data: stored and returned to the brand, never
/// logged — `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipTo {
    pub name: String,
    pub postal_code: String,
    pub prefecture: String,
    pub address: String,
    pub phone: Option<String>,
}

impl fmt::Debug for ShipTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShipTo(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    pub status: ShipmentStatus,
    pub at: Timestamp,
}

/// Where a shipment's quantities come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShipmentSource {
    Reservation(Id),
    Lines(Vec<LineRequest>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub id: Id,
    pub order_ref: Option<CompactString>,
    pub channel: Option<Id>,
    pub source: ShipmentSource,
    pub lines: Vec<Allocation>,
    pub ship_to: ShipTo,
    pub status: ShipmentStatus,
    pub history: Vec<StatusEntry>,
    pub tracking_number: Option<CompactString>,
    pub carrier: Option<CompactString>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipCmd {
    pub id: Id,
    pub order_ref: Option<CompactString>,
    pub channel: Option<Id>,
    pub source: ShipmentSource,
    pub ship_to: ShipTo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCmd {
    pub id: Id,
    pub status: ShipmentStatus,
    pub tracking_number: Option<CompactString>,
    pub carrier: Option<CompactString>,
}

impl StatusCmd {
    /// A status change checked as every way in checks it (`POST .../shipments/{id}/status`,
    /// a shipment-status import row): the status one a shipment can be moved to, the
    /// tracking number and carrier short texts. The problems come in that order.
    pub fn new(
        id: Id,
        status: ShipmentStatus,
        tracking_number: Option<CompactString>,
        carrier: Option<CompactString>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut problems = Vec::new();
        if status == ShipmentStatus::Accepted {
            problems.push(FieldError::new("status", "a shipment starts as accepted; it cannot be moved back to it"));
        }
        for (field, v) in [("tracking_number", &tracking_number), ("carrier", &carrier)] {
            problems.extend(v.as_deref().and_then(|v| check_text(field, v)));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(StatusCmd { id, status, tracking_number, carrier })
    }
}

/// What a status change reads of a shipment: its status, tracking number and carrier
/// as they are (or as earlier rows of the same import chunk left them).
#[derive(Debug, Clone, Copy)]
pub struct StatusNow<'a> {
    pub status: ShipmentStatus,
    pub tracking_number: Option<&'a CompactString>,
    pub carrier: Option<&'a CompactString>,
}

/// What a decision on an object returns: the events, and whether the command was a
/// repeat that changes nothing (answered with the current object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Apply(Vec<Event>),
    Unchanged,
}

/// Which locations a request may take stock from, and how much of a SKU at most.
/// (Channels narrow this; see the channel rules.)
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// `None`: every location.
    pub locations: Option<Vec<Id>>,
    /// Units of every SKU held back from this scope.
    pub buffer: i64,
}

impl Scope {
    fn allows(&self, loc: &Id) -> bool {
        self.locations.as_ref().is_none_or(|l| l.contains(loc))
    }
}

fn invalid_transition(detail: String) -> Rejection {
    Rejection::new(ErrorCode::InvalidTransition, detail)
}

impl BrandState {
    pub fn reservation(&self, id: &Id) -> Result<&Reservation, Rejection> {
        self.reservations.get(id).ok_or_else(|| Rejection::not_found(format!("reservation {id} does not exist")))
    }

    pub fn shipment(&self, id: &Id) -> Result<&Shipment, Rejection> {
        self.shipments.get(id).ok_or_else(|| Rejection::not_found(format!("shipment {id} does not exist")))
    }

    /// Finds locations for every line, all or nothing. A line without a location takes
    /// from the locations with the most available first and may be split.
    pub fn allocate(&self, lines: &[LineRequest], scope: &Scope) -> Result<Vec<Allocation>, Rejection> {
        let mut allocations = Vec::new();
        let mut shortages = Vec::new();
        for line in lines {
            let sku = self.sku(&line.sku)?;
            let mut candidates: Vec<(Id, i64)> = sku
                .levels
                .iter()
                .filter(|(loc, _)| scope.allows(loc) && line.location.as_ref().is_none_or(|want| want == loc))
                .map(|(loc, l)| (loc.clone(), l.available()))
                .filter(|(_, a)| *a > 0)
                .collect();
            let total: i64 = candidates.iter().map(|c| c.1).sum();
            let can_take = (total - scope.buffer).max(0);
            if can_take < line.quantity {
                shortages.push(Shortage { sku: line.sku.clone(), requested: line.quantity, available: can_take });
                continue;
            }
            candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let mut left = line.quantity;
            for (loc, avail) in candidates {
                if left == 0 {
                    break;
                }
                let take = avail.min(left);
                allocations.push(Allocation { sku: line.sku.clone(), location: loc, quantity: take });
                left -= take;
            }
            debug_assert_eq!(left, 0);
        }
        if !shortages.is_empty() {
            let n = shortages.len();
            let mut r =
                Rejection::new(ErrorCode::InsufficientStock, format!("{n} line(s) cannot be covered; nothing was held; see shortages"));
            r.shortages = shortages;
            return Err(r);
        }
        Ok(allocations)
    }

    /// The current levels and stock version of a SKU.
    pub(super) fn levels_of(&self, sku: &Id) -> Result<(Levels, u64), Rejection> {
        self.sku(sku).map(|s| (s.levels.clone(), s.stock_version))
    }

    /// Creating a reservation. `Unchanged` when the same id was already created with
    /// the same request (the existing reservation is the answer).
    pub fn decide_reserve(&self, cmd: &ReserveCmd, scope: &Scope, now: Timestamp) -> Result<Decision, Rejection> {
        if let Some(existing) = self.reservations.get(&cmd.id) {
            let same = existing.channel == cmd.channel && existing.ttl_seconds == cmd.ttl_seconds && existing.requested == cmd.lines;
            return if same {
                Ok(Decision::Unchanged)
            } else {
                Err(Rejection::new(
                    ErrorCode::AlreadyExists,
                    format!("reservation {} exists with a different request; use a new id", cmd.id),
                ))
            };
        }
        self.check_channel(&cmd.channel)?;
        let lines = self.allocate(&cmd.lines, scope)?;
        let reservation = Reservation {
            id: cmd.id.clone(),
            channel: cmd.channel.clone(),
            status: ReservationStatus::Active,
            ttl_seconds: cmd.ttl_seconds,
            requested: cmd.lines.clone(),
            lines,
            created_at: now,
            expires_at: now.plus_seconds(cmd.ttl_seconds),
            ended_at: None,
            shipment_id: None,
        };
        let mut events =
            stock_events(self, |sku| self.levels_of(sku), &reservation.lines, 1, false, Cause::Reserved { id: cmd.id.clone() })?;
        events.insert(0, Event::ReservationCreated { reservation: Box::new(reservation) });
        Ok(Decision::Apply(events))
    }

    /// Checks that a reservation can still be used (released, shipped from).
    fn usable(&self, id: &Id, now: Timestamp) -> Result<&Reservation, Rejection> {
        let r = self.reservation(id)?;
        match r.status {
            ReservationStatus::Active if now >= r.expires_at => {
                Err(invalid_transition(format!("reservation {id} expired at {}", r.expires_at.to_rfc3339())))
            }
            ReservationStatus::Active => Ok(r),
            other => Err(invalid_transition(format!("reservation {id} is {}; it cannot be used again", status_name(other)))),
        }
    }

    /// Releasing a reservation; releasing a released one again changes nothing.
    pub fn decide_release(&self, id: &Id, now: Timestamp) -> Result<Decision, Rejection> {
        if self.reservation(id)?.status == ReservationStatus::Released {
            return Ok(Decision::Unchanged);
        }
        let r = self.usable(id, now)?;
        let mut events = stock_events(self, |sku| self.levels_of(sku), &r.lines, -1, false, Cause::Released { id: id.clone() })?;
        events.insert(0, Event::ReservationReleased { id: id.clone() });
        Ok(Decision::Apply(events))
    }

    /// Every active reservation whose time is up at `now`, expired in one go.
    pub fn decide_expiries(&self, now: Timestamp) -> Result<Vec<Event>, Rejection> {
        Ok(self.decide_expiries_within(now, usize::MAX)?.events)
    }

    /// The reservations whose time is up at `now`, oldest first, as many whole ones as
    /// fit in `budget` bytes of events (one journal record): a sweep writes these,
    /// applies them, and asks again while `more` says so.
    pub fn decide_expiries_within(&self, now: Timestamp, budget: usize) -> Result<Expiries, Rejection> {
        let mut out = Expiries::default();
        let mut used = 0;
        // Expire one at a time against the evolving levels, so two reservations of the
        // same SKU both come off it.
        let mut draft = ExpiryDraft { base: self, levels: HashMap::new() };
        for (at, id) in self.expiries.iter() {
            if *at > now {
                break;
            }
            let r = &self.reservations[id];
            let mut evs = stock_events(self, |sku| draft.levels_of(sku), &r.lines, -1, false, Cause::Expired { id: id.clone() })?;
            evs.insert(0, Event::ReservationExpired { id: id.clone() });
            let bytes: usize = if budget == usize::MAX { 0 } else { evs.iter().map(encoded_len).sum() };
            if bytes > budget {
                out.too_large.push(id.clone());
                continue;
            }
            if used + bytes > budget {
                out.more = true;
                break;
            }
            used += bytes;
            for e in &evs {
                draft.apply_stock_event(e);
            }
            out.events.extend(evs);
        }
        Ok(out)
    }

    /// Reservations, shipments, transfers and returns that ended long enough ago to
    /// forget (a return not before its shipment).
    pub fn decide_purges(&self, now: Timestamp) -> Vec<Event> {
        let mut reservations: Vec<&Id> = self
            .reservations
            .values()
            .filter(|r| r.ended_at.is_some_and(|t| now.0 - t.0 > ENDED_RESERVATION_RETENTION_MS))
            .map(|r| &r.id)
            .collect();
        let mut shipments: Vec<&Id> = self
            .shipments
            .values()
            .filter(|s| s.status.is_final() && now.0 - s.updated_at.0 > ENDED_SHIPMENT_RETENTION_MS)
            .map(|s| &s.id)
            .collect();
        reservations.sort();
        shipments.sort();
        let returns = self.decide_return_purges(now, &shipments);
        let transfers = self.decide_transfer_purges(now);
        let purged_r = reservations.into_iter().map(|id| Event::ReservationPurged { id: id.clone() });
        let purged_s = shipments.into_iter().map(|id| Event::ShipmentPurged { id: id.clone() });
        purged_r.chain(purged_s).chain(returns).chain(transfers).collect()
    }

    /// Creating a shipment from a reservation (consumed) or from lines (reserved now).
    pub fn decide_ship(&self, cmd: &ShipCmd, scope: &Scope, now: Timestamp) -> Result<Decision, Rejection> {
        if let Some(existing) = self.shipments.get(&cmd.id) {
            let same = existing.order_ref == cmd.order_ref
                && existing.channel == cmd.channel
                && existing.source == cmd.source
                && existing.ship_to == cmd.ship_to;
            return if same {
                Ok(Decision::Unchanged)
            } else {
                Err(Rejection::new(ErrorCode::AlreadyExists, format!("shipment {} exists with a different request; use a new id", cmd.id)))
            };
        }
        let (lines, channel, mut events) = match &cmd.source {
            ShipmentSource::Reservation(rid) => {
                let r = self.usable(rid, now)?;
                if let Some(ch) = &cmd.channel {
                    if ch != &r.channel {
                        return Err(Rejection::invalid(vec![super::FieldError::new(
                            "channel",
                            format!("the reservation is for channel {}, not {ch}", r.channel),
                        )]));
                    }
                }
                (r.lines.clone(), Some(r.channel.clone()), Vec::new())
            }
            ShipmentSource::Lines(lines) => {
                if let Some(ch) = &cmd.channel {
                    self.check_channel(ch)?;
                }
                let allocs = self.allocate(lines, scope)?;
                let evs = stock_events(self, |sku| self.levels_of(sku), &allocs, 1, false, Cause::Reserved { id: cmd.id.clone() })?;
                (allocs, cmd.channel.clone(), evs)
            }
        };
        let shipment = Shipment {
            id: cmd.id.clone(),
            order_ref: cmd.order_ref.clone(),
            channel,
            source: cmd.source.clone(),
            lines,
            ship_to: cmd.ship_to.clone(),
            status: ShipmentStatus::Accepted,
            history: vec![StatusEntry { status: ShipmentStatus::Accepted, at: now }],
            tracking_number: None,
            carrier: None,
            created_at: now,
            updated_at: now,
        };
        events.insert(0, Event::ShipmentCreated { shipment: Box::new(shipment) });
        Ok(Decision::Apply(events))
    }

    /// Moving a shipment along. Repeating the current status changes nothing.
    pub fn decide_status(&self, cmd: &StatusCmd) -> Result<Decision, Rejection> {
        let s = self.shipment(&cmd.id)?;
        let now = StatusNow { status: s.status, tracking_number: s.tracking_number.as_ref(), carrier: s.carrier.as_ref() };
        self.status_events(cmd, now, &s.lines, |sku| self.levels_of(sku))
    }

    /// The rules of [`decide_status`](Self::decide_status) against a shipment's status
    /// `now` and the SKUs' levels as `levels_of` gives them: what an import chunk uses
    /// to apply several rows in order before any of them is applied.
    pub(super) fn status_events(
        &self,
        cmd: &StatusCmd,
        now: StatusNow<'_>,
        lines: &[Allocation],
        levels_of: impl Fn(&Id) -> Result<(Levels, u64), Rejection>,
    ) -> Result<Decision, Rejection> {
        if now.status == cmd.status {
            return Ok(Decision::Unchanged);
        }
        if !now.status.can_move_to(cmd.status) {
            return Err(invalid_transition(format!(
                "shipment {} is {}; it cannot become {} (allowed: accepted→picking→packed→shipped→delivered, cancelled before shipped)",
                cmd.id,
                now.status.as_str(),
                cmd.status.as_str()
            )));
        }
        let mut events = vec![Event::ShipmentStatusChanged {
            id: cmd.id.clone(),
            status: cmd.status,
            tracking_number: cmd.tracking_number.clone().or_else(|| now.tracking_number.cloned()),
            carrier: cmd.carrier.clone().or_else(|| now.carrier.cloned()),
        }];
        match cmd.status {
            ShipmentStatus::Shipped => {
                events.extend(stock_events(self, levels_of, lines, -1, true, Cause::Shipped { id: cmd.id.clone() })?)
            }
            ShipmentStatus::Cancelled => {
                events.extend(stock_events(self, levels_of, lines, -1, false, Cause::Cancelled { id: cmd.id.clone() })?)
            }
            _ => {}
        }
        Ok(Decision::Apply(events))
    }

    /// Deleting a SKU: only when nothing of it is held or expected.
    pub fn decide_delete_sku(&self, sku: &Id) -> Result<Event, Rejection> {
        let s = self.sku(sku)?;
        let t = s.levels.total();
        // Every unit held or on its way: deleting the SKU would lose them unsaid.
        if t.on_hand != 0 || t.reserved != 0 || t.incoming != 0 || t.unsellable != 0 || t.in_transit != 0 {
            return Err(invalid_transition(format!(
                "sku {sku} still has on_hand {}, reserved {}, incoming {}, unsellable {}, in_transit {}; bring them to zero first",
                t.on_hand, t.reserved, t.incoming, t.unsellable, t.in_transit
            )));
        }
        Ok(Event::SkuDeleted { sku: sku.clone() })
    }
}

pub fn status_name(s: ReservationStatus) -> &'static str {
    match s {
        ReservationStatus::Active => "active",
        ReservationStatus::Released => "released",
        ReservationStatus::Expired => "expired",
        ReservationStatus::Consumed => "consumed",
    }
}

/// The `StockChanged` events for moving `reserved` (and `on_hand`) by `allocations`:
/// `sign` +1 holds, -1 releases; `ship` also takes the units out of `on_hand`. One
/// event per SKU, with the SKU's next stock version.
fn stock_events(
    brand: &BrandState,
    levels_of: impl Fn(&Id) -> Result<(Levels, u64), Rejection>,
    allocations: &[Allocation],
    sign: i64,
    ship: bool,
    cause: Cause,
) -> Result<Vec<Event>, Rejection> {
    let mut per_sku: Vec<(Id, Levels, u64)> = Vec::new();
    for a in allocations {
        let idx = match per_sku.iter().position(|(s, _, _)| s == &a.sku) {
            Some(i) => i,
            None => {
                let (levels, version) = levels_of(&a.sku)?;
                per_sku.push((a.sku.clone(), levels, version));
                per_sku.len() - 1
            }
        };
        let levels = &mut per_sku[idx].1;
        let mut l = levels.get(&a.location);
        l.reserved += sign * a.quantity;
        if ship {
            l.on_hand -= a.quantity;
        }
        levels.set(&a.location, l);
    }
    Ok(per_sku
        .into_iter()
        .map(|(sku, levels, version)| {
            let channels = brand.channel_view(&levels);
            Event::StockChanged { sku, version: version + 1, levels, channels, cause: cause.clone() }
        })
        .collect())
}

/// Due expiries that fit in one record ([`BrandState::decide_expiries_within`]).
#[derive(Debug, Default)]
pub struct Expiries {
    pub events: Vec<Event>,
    /// More are due than fit: decide again once these are applied.
    pub more: bool,
    /// Due reservations whose expiry alone does not fit (their SKUs' stock grew to more
    /// locations than a record holds since they were made): left active, named for the log.
    pub too_large: Vec<Id>,
}

/// Levels of SKUs as they evolve through a batch of expiries.
struct ExpiryDraft<'a> {
    base: &'a BrandState,
    levels: HashMap<Id, (Levels, u64)>,
}

impl ExpiryDraft<'_> {
    fn levels_of(&self, sku: &Id) -> Result<(Levels, u64), Rejection> {
        match self.levels.get(sku) {
            Some((l, v)) => Ok((l.clone(), *v)),
            None => self.base.levels_of(sku),
        }
    }

    fn apply_stock_event(&mut self, e: &Event) {
        if let Event::StockChanged { sku, version, levels, .. } = e {
            self.levels.insert(sku.clone(), (levels.clone(), *version));
        }
    }
}

#[cfg(test)]
mod tests;
