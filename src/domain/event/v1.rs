//! Record format 1, as zaiko wrote it before stock levels had `unsellable` and
//! `in_transit`: read so that journals (and feed stores) written then still load.
//!
//! Only the shape of a stock level differs (four integers, not six); every other type
//! is the current one. The enum mirrors format 1's variants in their order — bincode
//! encodes a variant by its position — and is never written again except by tests.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::{BrandRecord, Cause, Event, RegistryRecord, WalRecord};
use crate::domain::catalog::Catalog;
use crate::domain::channel::{Channel, Inbound};
use crate::domain::fulfilment::{Reservation, Shipment, ShipmentStatus};
use crate::domain::idempotency::IdemWrite;
use crate::domain::import::{ChunkProgress, ImportSpec};
use crate::domain::stock::{Level, Levels};
use crate::domain::webhook::Webhook;
use crate::domain::{BrandId, Id, Timestamp};

/// The record format this module reads.
pub const FORMAT: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelV1 {
    pub on_hand: i64,
    pub reserved: i64,
    pub safety_stock: i64,
    pub incoming: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalRecordV1 {
    Brand(BrandRecordV1),
    Registry(RegistryRecord),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrandRecordV1 {
    pub brand: BrandId,
    pub at: Timestamp,
    pub idempotency: Option<IdemWrite>,
    pub events: Vec<EventV1>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventV1 {
    BrandCreated { name: String },
    SkuUpserted { sku: Id, catalog: Catalog, version: u64 },
    SkuDeleted { sku: Id },
    StockChanged { sku: Id, version: u64, levels: Vec<(Id, LevelV1)>, channels: Vec<(Id, i64)>, cause: Cause },
    ReservationCreated { reservation: Box<Reservation> },
    ReservationReleased { id: Id },
    ReservationExpired { id: Id },
    ShipmentCreated { shipment: Box<Shipment> },
    ShipmentStatusChanged { id: Id, status: ShipmentStatus, tracking_number: Option<CompactString>, carrier: Option<CompactString> },
    ReservationPurged { id: Id },
    ShipmentPurged { id: Id },
    ChannelUpserted { channel: Box<Channel> },
    ChannelSynced { channel: Id, skus: Vec<(Id, i64)>, after: Option<Id> },
    InboundCreated { inbound: Box<Inbound> },
    InboundReceived { id: Id, lines: Vec<(Id, i64)> },
    InboundClosed { id: Id },
    WebhookCreated { webhook: Box<Webhook> },
    WebhookDeleted { id: Id },
    ImportQueued { job: Box<ImportSpec> },
    ImportStarted { id: Id, rows_total: u64 },
    ImportChunkApplied { progress: Box<ChunkProgress> },
    ImportFinished { id: Id, failed: Option<String> },
    ImportCancelled { id: Id },
}

impl From<LevelV1> for Level {
    fn from(l: LevelV1) -> Level {
        Level { on_hand: l.on_hand, reserved: l.reserved, safety_stock: l.safety_stock, incoming: l.incoming, ..Level::default() }
    }
}

impl From<WalRecordV1> for WalRecord {
    fn from(r: WalRecordV1) -> WalRecord {
        match r {
            WalRecordV1::Brand(b) => WalRecord::Brand(BrandRecord {
                brand: b.brand,
                at: b.at,
                idempotency: b.idempotency,
                events: b.events.into_iter().map(Event::from).collect(),
            }),
            WalRecordV1::Registry(r) => WalRecord::Registry(r),
        }
    }
}

impl From<EventV1> for Event {
    fn from(e: EventV1) -> Event {
        match e {
            EventV1::BrandCreated { name } => Event::BrandCreated { name },
            EventV1::SkuUpserted { sku, catalog, version } => Event::SkuUpserted { sku, catalog, version },
            EventV1::SkuDeleted { sku } => Event::SkuDeleted { sku },
            EventV1::StockChanged { sku, version, levels, channels, cause } => Event::StockChanged {
                sku,
                version,
                levels: Levels(levels.into_iter().map(|(loc, l)| (loc, Level::from(l))).collect()),
                channels,
                cause,
            },
            EventV1::ReservationCreated { reservation } => Event::ReservationCreated { reservation },
            EventV1::ReservationReleased { id } => Event::ReservationReleased { id },
            EventV1::ReservationExpired { id } => Event::ReservationExpired { id },
            EventV1::ShipmentCreated { shipment } => Event::ShipmentCreated { shipment },
            EventV1::ShipmentStatusChanged { id, status, tracking_number, carrier } => {
                Event::ShipmentStatusChanged { id, status, tracking_number, carrier }
            }
            EventV1::ReservationPurged { id } => Event::ReservationPurged { id },
            EventV1::ShipmentPurged { id } => Event::ShipmentPurged { id },
            EventV1::ChannelUpserted { channel } => Event::ChannelUpserted { channel },
            EventV1::ChannelSynced { channel, skus, after } => Event::ChannelSynced { channel, skus, after },
            EventV1::InboundCreated { inbound } => Event::InboundCreated { inbound },
            EventV1::InboundReceived { id, lines } => Event::InboundReceived { id, lines },
            EventV1::InboundClosed { id } => Event::InboundClosed { id },
            EventV1::WebhookCreated { webhook } => Event::WebhookCreated { webhook },
            EventV1::WebhookDeleted { id } => Event::WebhookDeleted { id },
            EventV1::ImportQueued { job } => Event::ImportQueued { job },
            EventV1::ImportStarted { id, rows_total } => Event::ImportStarted { id, rows_total },
            EventV1::ImportChunkApplied { progress } => Event::ImportChunkApplied { progress },
            EventV1::ImportFinished { id, failed } => Event::ImportFinished { id, failed },
            EventV1::ImportCancelled { id } => Event::ImportCancelled { id },
        }
    }
}
