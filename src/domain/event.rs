//! Events and the WAL record that carries them.
//!
//! A WAL payload is one format byte ([`RECORD_FORMAT`]) followed by a bincode-2
//! (standard config, via serde) encoding of [`WalRecord`]. Enum variants are encoded
//! by position: new variants are only ever appended, and any other change bumps
//! [`RECORD_FORMAT`].

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::catalog::Catalog;
use super::channel::{Channel, Inbound};
use super::fulfilment::{Reservation, Shipment, ShipmentStatus};
use super::idempotency::IdemWrite;
use super::import::{ChunkProgress, ImportSpec};
use super::registry::RegistryEvent;
use super::stock::{Levels, StockOp};
use super::webhook::Webhook;
use super::{BrandId, Id, Timestamp};

/// Version of the payload encoding, the first byte of every record.
pub const RECORD_FORMAT: u8 = 1;

/// One WAL record: the unit of atomicity. Everything in it is applied or nothing is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalRecord {
    Brand(BrandRecord),
    Registry(RegistryRecord),
}

/// A change to one brand's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrandRecord {
    pub brand: BrandId,
    pub at: Timestamp,
    pub idempotency: Option<IdemWrite>,
    pub events: Vec<Event>,
}

/// A change to the global registry (locations, tokens).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRecord {
    pub at: Timestamp,
    pub idempotency: Option<IdemWrite>,
    pub events: Vec<RegistryEvent>,
}

/// Why a SKU's stock changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    /// A stock change of `POST .../stock/changes` (or a stock import row).
    Change {
        op: StockOp,
        reason: Option<CompactString>,
    },
    /// Held by a reservation, or by a shipment created from lines.
    Reserved {
        id: Id,
    },
    Released {
        id: Id,
    },
    Expired {
        id: Id,
    },
    Shipped {
        id: Id,
    },
    Cancelled {
        id: Id,
    },
    /// An inbound notice raised `incoming`.
    Inbound {
        id: Id,
    },
    /// A receipt moved `incoming` to `on_hand`.
    Received {
        id: Id,
    },
    /// Closing an inbound dropped what was not received from `incoming`.
    InboundClosed {
        id: Id,
    },
}

impl Cause {
    pub fn kind(&self) -> &'static str {
        match self {
            Cause::Change { op, .. } => op.name(),
            Cause::Reserved { .. } => "reserved",
            Cause::Released { .. } => "released",
            Cause::Expired { .. } => "expired",
            Cause::Shipped { .. } => "shipped",
            Cause::Cancelled { .. } => "cancelled",
            Cause::Inbound { .. } => "inbound",
            Cause::Received { .. } => "received",
            Cause::InboundClosed { .. } => "inbound_closed",
        }
    }
}

/// A fact about a brand's state. Events carry resulting values (not deltas), so that
/// applying one is an assignment and replay cannot drift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    BrandCreated {
        name: String,
    },
    SkuUpserted {
        sku: Id,
        catalog: Catalog,
        version: u64,
    },
    SkuDeleted {
        sku: Id,
    },
    /// The SKU's levels at every location after the change, and its new stock version.
    StockChanged {
        sku: Id,
        version: u64,
        levels: Levels,
        /// Availability to each configured channel after the change (derived from
        /// `levels` and the channel configuration; carried so a channel can be kept in
        /// sync from the feed alone).
        channels: Vec<(Id, i64)>,
        cause: Cause,
    },
    ReservationCreated {
        reservation: Box<Reservation>,
    },
    ReservationReleased {
        id: Id,
    },
    ReservationExpired {
        id: Id,
    },
    /// Creates the shipment; a reservation it comes from becomes `consumed`.
    ShipmentCreated {
        shipment: Box<Shipment>,
    },
    ShipmentStatusChanged {
        id: Id,
        status: ShipmentStatus,
        tracking_number: Option<CompactString>,
        carrier: Option<CompactString>,
    },
    /// An ended reservation forgotten after its retention.
    ReservationPurged {
        id: Id,
    },
    /// A delivered or cancelled shipment forgotten after its retention.
    ShipmentPurged {
        id: Id,
    },
    ChannelUpserted {
        channel: Box<Channel>,
    },
    /// One step of streaming a channel reconfiguration: the new availability of the SKUs
    /// that changed (or of all, see `ChannelSync::all`), and the last SKU looked at
    /// (`None`: done).
    ChannelSynced {
        channel: Id,
        skus: Vec<(Id, i64)>,
        after: Option<Id>,
    },
    InboundCreated {
        inbound: Box<Inbound>,
    },
    InboundReceived {
        id: Id,
        lines: Vec<(Id, i64)>,
    },
    InboundClosed {
        id: Id,
    },
    // Webhook subscriptions and import jobs (`webhook.rs`, `import.rs`). These are
    // brand state but not inventory changes: the change feed does not show them.
    /// A webhook subscription, with the secret its deliveries are signed with.
    WebhookCreated {
        webhook: Box<Webhook>,
    },
    WebhookDeleted {
        id: Id,
    },
    /// An import whose upload is on disk (fsynced), queued for the runner.
    ImportQueued {
        job: Box<ImportSpec>,
    },
    ImportStarted {
        id: Id,
        rows_total: u64,
    },
    /// One chunk of an import; the chunk's rows' events are in the same record.
    ImportChunkApplied {
        progress: Box<ChunkProgress>,
    },
    /// `failed` says why a job stopped before its end.
    ImportFinished {
        id: Id,
        failed: Option<String>,
    },
}

impl Event {
    /// The feed type name of this event.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::BrandCreated { .. } => "brand.created",
            Event::SkuUpserted { .. } => "sku.upserted",
            Event::SkuDeleted { .. } => "sku.deleted",
            Event::StockChanged { .. } => "stock.changed",
            Event::ReservationCreated { .. } => "reservation.created",
            Event::ReservationReleased { .. } => "reservation.released",
            Event::ReservationExpired { .. } => "reservation.expired",
            Event::ShipmentCreated { .. } => "shipment.created",
            Event::ShipmentStatusChanged { .. } => "shipment.status_changed",
            Event::ReservationPurged { .. } => "reservation.purged",
            Event::ShipmentPurged { .. } => "shipment.purged",
            Event::ChannelUpserted { .. } => "channel.upserted",
            Event::ChannelSynced { .. } => "channel.availability_changed",
            Event::InboundCreated { .. } => "inbound.created",
            Event::InboundReceived { .. } => "inbound.received",
            Event::InboundClosed { .. } => "inbound.closed",
            Event::WebhookCreated { .. } => "webhook.created",
            Event::WebhookDeleted { .. } => "webhook.deleted",
            Event::ImportQueued { .. } => "import.queued",
            Event::ImportStarted { .. } => "import.started",
            Event::ImportChunkApplied { .. } => "import.chunk_applied",
            Event::ImportFinished { .. } => "import.finished",
        }
    }
}

impl BrandRecord {
    /// The SKUs whose catalog or stock this record changes (for the search index).
    pub fn touched_skus(&self) -> impl Iterator<Item = &Id> {
        self.events.iter().filter_map(|e| match e {
            Event::SkuUpserted { sku, .. } | Event::SkuDeleted { sku } | Event::StockChanged { sku, .. } => Some(sku),
            _ => None,
        })
    }
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a record as a WAL payload.
pub fn encode(record: &WalRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(RECORD_FORMAT);
    bincode::serde::encode_into_std_write(record, &mut out, config()).expect("encoding into a Vec cannot fail");
    out
}

/// Decodes a WAL payload. Errors name what is wrong; they mean a bug or damage.
pub fn decode(payload: &[u8]) -> Result<WalRecord, String> {
    let (&format, body) = payload.split_first().ok_or("empty payload")?;
    if format != RECORD_FORMAT {
        return Err(format!("record format {format} is not {RECORD_FORMAT}: written by another zaiko version"));
    }
    let (record, used) = bincode::serde::decode_from_slice(body, config()).map_err(|e| format!("undecodable record: {e}"))?;
    if used != body.len() {
        return Err(format!("{} trailing bytes after the record", body.len() - used));
    }
    Ok(record)
}

/// Encodes one event of the record at some LSN, with its index in the record, as the
/// feed store keeps it: the format byte, then `(index, event)` in the WAL's encoding.
/// (So the feed stores a fifth of the bytes JSON would take, and renders on read.)
pub fn encode_feed_event(index: usize, event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.push(RECORD_FORMAT);
    bincode::serde::encode_into_std_write((index as u64, event), &mut out, config()).expect("encoding into a Vec cannot fail");
    out
}

/// Decodes what [`encode_feed_event`] wrote: the event's index in its record, and the event.
pub fn decode_feed_event(bytes: &[u8]) -> Result<(usize, Event), String> {
    let (&format, body) = bytes.split_first().ok_or("empty event")?;
    if format != RECORD_FORMAT {
        return Err(format!("event format {format} is not {RECORD_FORMAT}: written by another zaiko version"));
    }
    let ((index, event), used): ((u64, Event), usize) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| format!("undecodable event: {e}"))?;
    if used != body.len() {
        return Err(format!("{} trailing bytes after the event", body.len() - used));
    }
    Ok((index as usize, event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::stock::Level;

    #[test]
    fn feed_events_round_trip_with_their_index() {
        let ev = Event::SkuDeleted { sku: Id::parse("S1").unwrap() };
        let bytes = encode_feed_event(7, &ev);
        assert_eq!(decode_feed_event(&bytes).unwrap(), (7, ev));
        assert!(decode_feed_event(&bytes[..bytes.len() - 1]).is_err());
        let mut other = bytes.clone();
        other[0] = RECORD_FORMAT + 1;
        assert!(decode_feed_event(&other).unwrap_err().contains("another zaiko version"));
    }

    #[test]
    fn records_round_trip() {
        let loc = Id::parse("tsukuba").unwrap();
        let rec = WalRecord::Brand(BrandRecord {
            brand: BrandId::parse("b-001").unwrap(),
            at: Timestamp(1),
            idempotency: None,
            events: vec![Event::StockChanged {
                sku: Id::parse("S1").unwrap(),
                version: 3,
                levels: Levels(Box::new([(loc, Level { on_hand: 5, reserved: 1, safety_stock: 0, incoming: 0 })])),
                channels: vec![(Id::parse("zozotown").unwrap(), 4)],
                cause: Cause::Change { op: StockOp::Adjust { delta: -1 }, reason: Some("sold".into()) },
            }],
        });
        let bytes = encode(&rec);
        assert_eq!(bytes[0], RECORD_FORMAT);
        assert_eq!(decode(&bytes).unwrap(), rec);
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 0, 0]).is_err());
        assert!(decode(&[RECORD_FORMAT, 0xff, 0xff, 0xff]).is_err());
    }
}
