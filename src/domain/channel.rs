//! Channels (the places a brand sells through) and inbound stock (入荷予定).
//!
//! A channel's available is derived, never stored: `max(0, sum of available over its
//! locations - buffer)`, computed from the SKU's levels whenever it is needed, so it
//! cannot drift from the stock it comes from. A channel never configured sells from
//! every location with no buffer.
//!
//! Reconfiguring a channel changes the availability of every SKU at once. The events
//! for that are streamed in chunks of [`SYNC_CHUNK_SKUS`] (one WAL record each, and no
//! more than the record limit holds) by the shard's sweep, with the position kept in
//! the state, so the work is bounded per step and resumes after a crash.

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::brand::BrandState;
use super::error::{ErrorCode, FieldError, Rejection};
use super::event::{encoded_len, Cause, Event};
use super::fulfilment::{Decision, Scope};
use super::stock::{Levels, QUANTITY_MAX};
use super::{Id, Timestamp};

/// SKUs looked at per channel-sync step.
pub const SYNC_CHUNK_SKUS: usize = 1000;
/// Most channels per brand, and most locations per channel.
pub const CHANNELS_MAX: usize = 64;
/// Channels an `unknown_channel` answer names.
const CHANNELS_LISTED_MAX: usize = 10;
pub const CHANNEL_LOCATIONS_MAX: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: Id,
    pub name: String,
    /// `None`: every location.
    pub locations: Option<Vec<Id>>,
    pub buffer: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Channel {
    pub fn scope(&self) -> Scope {
        Scope { locations: self.locations.clone(), buffer: self.buffer }
    }
}

/// Why a request naming `channel` is refused, given the brand's `configured`
/// channels: once a brand has any, a channel must be one of them (a misspelt channel
/// would otherwise sell from every location with no buffer); a brand with none sells
/// to any channel name from every location.
pub fn unknown_channel<'a>(channel: &Id, configured: impl Iterator<Item = &'a Id> + Clone) -> Option<Rejection> {
    let mut names = configured.clone().peekable();
    if names.peek().is_none() || configured.clone().any(|c| c == channel) {
        return None;
    }
    let mut listed: Vec<&str> = names.by_ref().take(CHANNELS_LISTED_MAX).map(Id::as_str).collect();
    if names.next().is_some() {
        listed.push("…");
    }
    Some(Rejection::new(
        ErrorCode::UnknownChannel,
        format!(
            "channel {channel} is not configured for this brand; use one of {}, or configure it first (PUT .../channels/{channel})",
            listed.join(", ")
        ),
    ))
}

/// The availability of a SKU to a channel of this configuration (`None`: unconfigured).
pub fn channel_available(config: Option<&Channel>, levels: &Levels) -> i64 {
    let (locations, buffer) = match config {
        Some(c) => (c.locations.as_deref(), c.buffer),
        None => (None, 0),
    };
    let sum: i64 = levels.iter().filter(|(loc, _)| locations.is_none_or(|ls| ls.contains(loc))).map(|(_, l)| l.available()).sum();
    (sum - buffer).max(0)
}

/// A reconfiguration whose availability events are still being streamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSync {
    /// The configuration consumers last saw; `None` for a new channel.
    pub before: Option<Channel>,
    /// Emit every SKU, not only changed ones (after a reconfiguration interrupted
    /// another one, what consumers saw is no longer one configuration).
    pub all: bool,
    /// The last SKU done; `None` before the first step.
    pub after: Option<Id>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InboundStatus {
    Expected,
    Receiving,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundLine {
    pub sku: Id,
    pub expected: i64,
    pub received: i64,
}

impl InboundLine {
    /// Still counted as `incoming`.
    pub fn remaining(&self) -> i64 {
        (self.expected - self.received).max(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    pub id: Id,
    pub location: Id,
    pub expected_at: Option<Timestamp>,
    pub status: InboundStatus,
    pub lines: Vec<InboundLine>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundCmd {
    pub id: Id,
    pub location: Id,
    pub expected_at: Option<Timestamp>,
    /// (sku, quantity), SKUs distinct.
    pub lines: Vec<(Id, i64)>,
}

/// Upsert of a channel, as the domain receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelCmd {
    pub id: Id,
    pub name: String,
    pub locations: Option<Vec<Id>>,
    pub buffer: i64,
}

impl BrandState {
    /// The scope a request for `channel` may take stock from.
    pub fn scope_for(&self, channel: Option<&Id>) -> Scope {
        channel.and_then(|c| self.channels.get(c)).map_or_else(Scope::default, Channel::scope)
    }

    /// A channel a request names must be one of the brand's once it has any (see
    /// [`unknown_channel`]).
    pub fn check_channel(&self, channel: &Id) -> Result<(), Rejection> {
        unknown_channel(channel, self.channels.keys()).map_or(Ok(()), Err)
    }

    /// Availability of `levels` to every configured channel, for `stock.changed`.
    pub fn channel_view(&self, levels: &Levels) -> Vec<(Id, i64)> {
        self.channels.values().map(|c| (c.id.clone(), channel_available(Some(c), levels))).collect()
    }

    pub fn decide_put_channel(
        &self,
        cmd: ChannelCmd,
        location_exists: impl Fn(&Id) -> bool,
        now: Timestamp,
    ) -> Result<(Event, bool), Rejection> {
        let mut errors = Vec::new();
        if !(0..=QUANTITY_MAX).contains(&cmd.buffer) {
            errors.push(FieldError::new("buffer", format!("must be 0..={QUANTITY_MAX}")));
        }
        if let Some(locs) = &cmd.locations {
            if locs.is_empty() || locs.len() > CHANNEL_LOCATIONS_MAX {
                errors.push(FieldError::new("locations", format!("must hold 1..={CHANNEL_LOCATIONS_MAX} locations (omit it for all)")));
            }
            for (i, l) in locs.iter().enumerate() {
                if !location_exists(l) {
                    errors.push(FieldError::new(format!("locations[{i}]"), format!("location {l} does not exist")));
                }
                if locs[..i].contains(l) {
                    errors.push(FieldError::new(format!("locations[{i}]"), "listed twice"));
                }
            }
        }
        if !errors.is_empty() {
            return Err(Rejection::invalid(errors));
        }
        let existing = self.channels.get(&cmd.id);
        if existing.is_none() && self.channels.len() >= CHANNELS_MAX {
            return Err(Rejection::new(ErrorCode::Unprocessable, format!("a brand has at most {CHANNELS_MAX} channels")));
        }
        let channel = Channel {
            id: cmd.id,
            name: cmd.name,
            locations: cmd.locations.map(|mut l| {
                l.sort();
                l
            }),
            buffer: cmd.buffer,
            created_at: existing.map_or(now, |c| c.created_at),
            updated_at: now,
        };
        Ok((Event::ChannelUpserted { channel: Box::new(channel) }, existing.is_none()))
    }

    /// The next step of the first pending channel sync: availability of up to
    /// [`SYNC_CHUNK_SKUS`] SKUs, and where to go on. `None` when nothing is pending.
    pub fn decide_channel_sync(&self) -> Option<Event> {
        self.decide_channel_sync_within(usize::MAX)
    }

    /// [`decide_channel_sync`](Self::decide_channel_sync) in at most `budget` bytes (the
    /// room for events in one journal record): the step ends early at a SKU whose entry
    /// would not fit, and the next step starts there. One SKU's entry always fits.
    pub fn decide_channel_sync_within(&self, budget: usize) -> Option<Event> {
        let (channel_id, sync) = self.channel_syncs.iter().next()?;
        let measure = budget != usize::MAX;
        // The event with no SKU yet, the longest `after` an id can be, and the longest
        // count of SKUs: what the SKUs' entries add to.
        let mut used = if measure {
            encoded_len(&Event::ChannelSynced { channel: channel_id.clone(), skus: Vec::new(), after: None }) + 1 + 1 + 128 + 8
        } else {
            0
        };
        let now_config = self.channels.get(channel_id);
        let start = match &sync.after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let mut skus = Vec::new();
        let mut last = None;
        for (id, s) in self.skus.range::<Id, _>((start, Bound::Unbounded)).take(SYNC_CHUNK_SKUS) {
            let now_available = channel_available(now_config, &s.levels);
            if sync.all || channel_available(sync.before.as_ref(), &s.levels) != now_available {
                let entry = (id.clone(), now_available);
                if measure {
                    let bytes = encoded_len(&entry);
                    if used + bytes > budget && !skus.is_empty() {
                        break;
                    }
                    used += bytes;
                }
                skus.push(entry);
            }
            last = Some(id.clone());
        }
        // A short chunk means the end: `after: None` finishes the sync.
        let done =
            last.is_none() || self.skus.range::<Id, _>((Bound::Excluded(last.as_ref().expect("some")), Bound::Unbounded)).next().is_none();
        Some(Event::ChannelSynced { channel: channel_id.clone(), skus, after: if done { None } else { last } })
    }

    pub fn inbound(&self, id: &Id) -> Result<&Inbound, Rejection> {
        self.inbounds.get(id).ok_or_else(|| Rejection::not_found(format!("inbound {id} does not exist")))
    }

    /// An inbound notice: `incoming` grows at its location. Same id and body: unchanged.
    pub fn decide_inbound(&self, cmd: &InboundCmd, now: Timestamp) -> Result<Decision, Rejection> {
        if let Some(existing) = self.inbounds.get(&cmd.id) {
            let same = existing.location == cmd.location
                && existing.expected_at == cmd.expected_at
                && existing.lines.iter().map(|l| (l.sku.clone(), l.expected)).eq(cmd.lines.iter().cloned());
            return if same {
                Ok(Decision::Unchanged)
            } else {
                Err(Rejection::new(ErrorCode::AlreadyExists, format!("inbound {} exists with a different request; use a new id", cmd.id)))
            };
        }
        let lines: Vec<InboundLine> =
            cmd.lines.iter().map(|(sku, q)| InboundLine { sku: sku.clone(), expected: *q, received: 0 }).collect();
        let moves: Vec<(Id, i64, i64)> = lines.iter().map(|l| (l.sku.clone(), l.expected, 0)).collect();
        let mut events = self.incoming_events(&cmd.location, &moves, Cause::Inbound { id: cmd.id.clone() })?;
        let inbound = Inbound {
            id: cmd.id.clone(),
            location: cmd.location.clone(),
            expected_at: cmd.expected_at,
            status: InboundStatus::Expected,
            lines,
            created_at: now,
            updated_at: now,
        };
        events.insert(0, Event::InboundCreated { inbound: Box::new(inbound) });
        Ok(Decision::Apply(events))
    }

    /// A receipt: each line moves up to what remains from `incoming` to `on_hand`;
    /// receiving more than expected is allowed and counted.
    pub fn decide_receipt(&self, id: &Id, lines: &[(Id, i64)]) -> Result<Decision, Rejection> {
        let inbound = self.inbound(id)?;
        if inbound.status == InboundStatus::Closed {
            return Err(Rejection::new(ErrorCode::InvalidTransition, format!("inbound {id} is closed; open a new inbound for more stock")));
        }
        let mut errors = Vec::new();
        let mut moves = Vec::new();
        for (i, (sku, q)) in lines.iter().enumerate() {
            match inbound.lines.iter().find(|l| &l.sku == sku) {
                None => errors.push(FieldError::new(format!("lines[{i}].sku"), format!("sku {sku} is not on inbound {id}"))),
                Some(l) => moves.push((sku.clone(), -(*q).min(l.remaining()), *q)),
            }
        }
        if !errors.is_empty() {
            return Err(Rejection::invalid(errors));
        }
        let mut events = self.incoming_events(&inbound.location, &moves, Cause::Received { id: id.clone() })?;
        events.insert(0, Event::InboundReceived { id: id.clone(), lines: lines.to_vec() });
        Ok(Decision::Apply(events))
    }

    /// Closing: what was not received leaves `incoming`. Closing again: unchanged.
    pub fn decide_close_inbound(&self, id: &Id) -> Result<Decision, Rejection> {
        let inbound = self.inbound(id)?;
        if inbound.status == InboundStatus::Closed {
            return Ok(Decision::Unchanged);
        }
        let moves: Vec<(Id, i64, i64)> =
            inbound.lines.iter().filter(|l| l.remaining() > 0).map(|l| (l.sku.clone(), -l.remaining(), 0)).collect();
        let mut events = self.incoming_events(&inbound.location, &moves, Cause::InboundClosed { id: id.clone() })?;
        events.insert(0, Event::InboundClosed { id: id.clone() });
        Ok(Decision::Apply(events))
    }

    /// `StockChanged` events for moving `incoming` by `d_incoming` and `on_hand` by
    /// `d_on_hand` at `location`, per `(sku, d_incoming, d_on_hand)`.
    fn incoming_events(&self, location: &Id, moves: &[(Id, i64, i64)], cause: Cause) -> Result<Vec<Event>, Rejection> {
        let mut out: Vec<(Id, Levels, u64)> = Vec::new();
        for (sku, d_incoming, d_on_hand) in moves {
            let idx = match out.iter().position(|(s, _, _)| s == sku) {
                Some(i) => i,
                None => {
                    let s = self.sku(sku)?;
                    out.push((sku.clone(), s.levels.clone(), s.stock_version));
                    out.len() - 1
                }
            };
            let levels = &mut out[idx].1;
            let mut l = levels.get(location);
            l.incoming += d_incoming;
            l.on_hand += d_on_hand;
            levels.set(location, l);
        }
        Ok(out
            .into_iter()
            .map(|(sku, levels, version)| {
                let channels = self.channel_view(&levels);
                Event::StockChanged { sku, version: version + 1, levels, channels, cause: cause.clone() }
            })
            .collect())
    }
}

/// Validates a channel's display name.
pub fn check_channel_name(name: &str) -> Option<FieldError> {
    super::text::check_text("name", name)
}

#[cfg(test)]
mod tests;
