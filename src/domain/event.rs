//! Events and the WAL record that carries them.
//!
//! A WAL payload is one format byte ([`RECORD_FORMAT`]) followed by a bincode-2
//! (standard config, via serde) encoding of [`WalRecord`]. Enum variants are encoded
//! by position: new variants are only ever appended, and any other change bumps
//! [`RECORD_FORMAT`]. Records of an older format are still read (`v1.rs`), so a
//! journal or feed store written by an earlier zaiko loads.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::alerts::{Band, Thresholds};
use super::catalog::Catalog;
use super::channel::{Channel, Inbound};
use super::fulfilment::{Reservation, Shipment, ShipmentStatus};
use super::idempotency::IdemWrite;
use super::import::{ChunkProgress, ImportSpec};
use super::registry::RegistryEvent;
use super::returns::{ReceiptLine, Return};
use super::stock::{Levels, StockOp};
use super::transfer::Transfer;
use super::webhook::Webhook;
use super::{BrandId, Id, Timestamp};

pub mod v1;

/// Version of the payload encoding, the first byte of every record. 2: stock levels
/// carry `unsellable` and `in_transit` (format 1 is read by [`v1`]).
pub const RECORD_FORMAT: u8 = 2;

/// The smallest journal record limit (`--wal-record-bytes-max`) the server runs with.
/// Whatever the state, every step the server writes on its own fits in it: an import
/// chunk's progress with its kept row errors, one SKU of a channel-sync step, one purge.
pub const RECORD_BYTES_MAX_FLOOR: usize = 64 << 10;

/// The most bytes a brand record with no idempotency entry takes besides its events:
/// the format byte, the record's variant, the brand id (at most 64 bytes and their
/// count), the time, the absent idempotency entry, and the number of events.
pub const BRAND_RECORD_OVERHEAD_BYTES_MAX: usize = 1 + 1 + (1 + 64) + 9 + 1 + 9;

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
    // Appended by record format 2 (issue 23).
    /// A transfer left its origin's `on_hand` for the destination's `in_transit`.
    TransferShipped {
        id: Id,
    },
    /// A transfer's receipt moved `in_transit` to `on_hand` at the destination.
    TransferReceived {
        id: Id,
    },
    /// Closing a transfer wrote off what was still in transit.
    TransferWrittenOff {
        id: Id,
    },
    /// A return's receipt put units back on hand or among the unsellable ones.
    ReturnReceived {
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
            Cause::TransferShipped { .. } => "transfer_shipped",
            Cause::TransferReceived { .. } => "transfer_received",
            Cause::TransferWrittenOff { .. } => "transfer_written_off",
            Cause::ReturnReceived { .. } => "return_received",
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
    /// A job cancelled by the brand: no chunk of it is applied after this.
    ImportCancelled {
        id: Id,
    },
    // Appended by record format 2 (issue 23): transfers between locations.
    TransferCreated {
        transfer: Box<Transfer>,
    },
    TransferShipped {
        id: Id,
    },
    /// Units received at the destination, per SKU.
    TransferReceived {
        id: Id,
        lines: Vec<(Id, i64)>,
    },
    /// Closed; `written_off` is what had not arrived, per SKU (the loss, explicit).
    TransferClosed {
        id: Id,
        written_off: Vec<(Id, i64)>,
    },
    TransferCancelled {
        id: Id,
    },
    // Returns of shipped goods (`returns.rs`).
    ReturnCreated {
        ret: Box<Return>,
    },
    ReturnInTransit {
        id: Id,
    },
    /// Units inspected into their dispositions.
    ReturnReceived {
        id: Id,
        lines: Vec<ReceiptLine>,
    },
    ReturnClosed {
        id: Id,
    },
    ReturnCancelled {
        id: Id,
    },
    // Low-stock alerts (`alerts.rs`).
    /// A channel's thresholds, replaced whole (none: the channel has no alerts).
    ThresholdsSet {
        channel: Id,
        thresholds: Box<Thresholds>,
    },
    /// A SKU's availability to a channel entered `band` (`stock.low`, `stock.out`,
    /// `stock.back`).
    StockAlert {
        sku: Id,
        channel: Id,
        band: Band,
        available: i64,
        threshold: i64,
    },
    /// A closed or cancelled transfer forgotten after its retention.
    TransferPurged {
        id: Id,
    },
    /// A closed or cancelled return forgotten after its retention (and its shipment).
    ReturnPurged {
        id: Id,
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
            Event::ImportCancelled { .. } => "import.cancelled",
            Event::TransferCreated { .. } => "transfer.created",
            Event::TransferShipped { .. } => "transfer.shipped",
            Event::TransferReceived { .. } => "transfer.received",
            Event::TransferClosed { .. } => "transfer.closed",
            Event::TransferCancelled { .. } => "transfer.cancelled",
            Event::ReturnCreated { .. } => "return.created",
            Event::ReturnInTransit { .. } => "return.in_transit",
            Event::ReturnReceived { .. } => "return.received",
            Event::ReturnClosed { .. } => "return.closed",
            Event::ReturnCancelled { .. } => "return.cancelled",
            Event::ThresholdsSet { .. } => "low_stock.thresholds_set",
            Event::StockAlert { band, .. } => band.event_type(),
            Event::TransferPurged { .. } => "transfer.purged",
            Event::ReturnPurged { .. } => "return.purged",
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

/// The bytes `v` takes in a record (its encoding), counted without building it.
pub fn encoded_len(v: &impl Serialize) -> usize {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(v, &mut size, config()).expect("counting bytes cannot fail");
    size.bytes_written
}

/// Room for the events of a brand record with no idempotency entry, under the journal's
/// record limit: what a step the server writes on its own (an expiry sweep, a channel
/// sync step, purges) fills at most.
pub fn events_budget(record_bytes_max: usize) -> usize {
    record_bytes_max.saturating_sub(BRAND_RECORD_OVERHEAD_BYTES_MAX)
}

/// Splits independent events into runs that each fit in `budget` bytes, in order (an
/// event larger than the budget is a run of its own).
pub fn split_by_budget(events: Vec<Event>, budget: usize) -> Vec<Vec<Event>> {
    let mut runs: Vec<Vec<Event>> = Vec::new();
    let mut used = 0;
    for e in events {
        let n = encoded_len(&e);
        match runs.last_mut() {
            Some(run) if used + n <= budget => run.push(e),
            _ => {
                runs.push(vec![e]);
                used = 0;
            }
        }
        used += n;
    }
    runs
}

/// Decodes a bincode body that must fill `body` exactly.
fn decode_exact<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, String> {
    let (v, used) = bincode::serde::decode_from_slice(body, config()).map_err(|e| format!("undecodable {what}: {e}"))?;
    if used != body.len() {
        return Err(format!("{} trailing bytes after the {what}", body.len() - used));
    }
    Ok(v)
}

fn unknown_format(what: &str, format: u8) -> String {
    format!("{what} format {format} is neither {RECORD_FORMAT} nor {}: written by another zaiko version", v1::FORMAT)
}

/// Decodes a WAL payload, of this format or format 1. Errors name what is wrong; they
/// mean a bug or damage.
pub fn decode(payload: &[u8]) -> Result<WalRecord, String> {
    let (&format, body) = payload.split_first().ok_or("empty payload")?;
    match format {
        RECORD_FORMAT => decode_exact(body, "record"),
        v1::FORMAT => decode_exact::<v1::WalRecordV1>(body, "record").map(WalRecord::from),
        _ => Err(unknown_format("record", format)),
    }
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

/// Decodes what [`encode_feed_event`] wrote (this format or format 1): the event's
/// index in its record, and the event.
pub fn decode_feed_event(bytes: &[u8]) -> Result<(usize, Event), String> {
    let (&format, body) = bytes.split_first().ok_or("empty event")?;
    let (index, event) = match format {
        RECORD_FORMAT => decode_exact::<(u64, Event)>(body, "event")?,
        v1::FORMAT => decode_exact::<(u64, v1::EventV1)>(body, "event").map(|(i, e)| (i, Event::from(e)))?,
        _ => return Err(unknown_format("event", format)),
    };
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
                levels: Levels(Box::new([(loc, Level { on_hand: 5, reserved: 1, safety_stock: 0, incoming: 0, ..Level::default() })])),
                channels: vec![(Id::parse("zozotown").unwrap(), 4)],
                cause: Cause::Change { op: StockOp::Adjust { delta: -1 }, reason: Some("sold".into()) },
            }],
        });
        let bytes = encode(&rec);
        assert_eq!(bytes[0], RECORD_FORMAT);
        assert_eq!(decode(&bytes).unwrap(), rec);
    }

    #[test]
    fn the_overhead_bound_covers_the_largest_record_header() {
        let id = Id::parse("S1").unwrap();
        let events: Vec<Event> = (0..300).map(|_| Event::SkuDeleted { sku: id.clone() }).collect();
        let rec = WalRecord::Brand(BrandRecord {
            brand: BrandId::parse(&"b".repeat(64)).unwrap(),
            at: Timestamp(i64::MIN),
            idempotency: None,
            events: events.clone(),
        });
        let events_bytes: usize = events.iter().map(encoded_len).sum();
        assert_eq!(encode(&rec).len(), encoded_len(&rec) + 1, "encoded_len counts what encode writes, less the format byte");
        assert!(encode(&rec).len() <= BRAND_RECORD_OVERHEAD_BYTES_MAX + events_bytes);
        assert_eq!(events_budget(100), 100 - BRAND_RECORD_OVERHEAD_BYTES_MAX);
    }

    #[test]
    fn independent_events_split_into_runs_within_the_budget() {
        let events: Vec<Event> = (0..100).map(|i| Event::SkuDeleted { sku: Id::parse(&format!("S{i:03}")).unwrap() }).collect();
        let one = encoded_len(&events[0]);
        let runs = split_by_budget(events.clone(), 10 * one + one / 2);
        assert_eq!(runs.len(), 10);
        assert!(runs.iter().all(|r| r.len() == 10));
        assert_eq!(runs.concat(), events, "in order, none lost");
        assert_eq!(split_by_budget(events[..3].to_vec(), 1).len(), 3, "an event over the budget is a run of its own");
        assert!(split_by_budget(Vec::new(), 100).is_empty());
    }

    /// A record as format 1 wrote it (four-integer levels) loads, with nothing unsellable
    /// or in transit; so does a feed store's event of that format.
    #[test]
    fn format_1_records_and_feed_events_still_load() {
        let loc = Id::parse("tsukuba").unwrap();
        let old = v1::WalRecordV1::Brand(v1::BrandRecordV1 {
            brand: BrandId::parse("b-001").unwrap(),
            at: Timestamp(1),
            idempotency: None,
            events: vec![v1::EventV1::StockChanged {
                sku: Id::parse("S1").unwrap(),
                version: 3,
                levels: vec![(loc.clone(), v1::LevelV1 { on_hand: 5, reserved: 1, safety_stock: 2, incoming: 4 })],
                channels: vec![],
                cause: Cause::Change { op: StockOp::Adjust { delta: -1 }, reason: None },
            }],
        });
        let mut bytes = vec![v1::FORMAT];
        bytes.extend(bincode::serde::encode_to_vec(&old, config()).unwrap());
        let WalRecord::Brand(rec) = decode(&bytes).unwrap() else { panic!("a brand record") };
        let Event::StockChanged { levels, .. } = &rec.events[0] else { panic!("a stock change") };
        assert_eq!(levels.get(&loc), Level { on_hand: 5, reserved: 1, safety_stock: 2, incoming: 4, unsellable: 0, in_transit: 0 });
        let v1::WalRecordV1::Brand(old) = old else { unreachable!() };
        let mut feed = vec![v1::FORMAT];
        feed.extend(bincode::serde::encode_to_vec((2u64, &old.events[0]), config()).unwrap());
        assert_eq!(decode_feed_event(&feed).unwrap(), (2, rec.events[0].clone()));
        bytes[0] = RECORD_FORMAT + 1;
        assert!(decode(&bytes).unwrap_err().contains("another zaiko version"));
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 0, 0]).is_err());
        assert!(decode(&[RECORD_FORMAT, 0xff, 0xff, 0xff]).is_err());
    }
}
