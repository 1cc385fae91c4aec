//! The change feed's events as `/openapi.json` describes them: the `data` of each of
//! the 27 event types (`feed::render` writes them), for the document only. `openapi.rs`
//! wraps each in its event envelope and makes `FeedEvent` a union discriminated on
//! `type`, so a generated client gets typed `data` for every type.
//!
//! The test `every_event_type_renders_as_documented` in `openapi.rs` renders one event
//! of each type and checks it against these schemas, so they cannot drift apart.

#![allow(dead_code)] // schemas only: the feed renders events in `feed::render`

use std::collections::BTreeMap;

use utoipa::ToSchema;

use crate::domain::channel::InboundStatus;
use crate::domain::fulfilment::{ReservationStatus, ShipmentStatus};
use crate::domain::returns::{Disposition, ReturnStatus};
use crate::domain::transfer::TransferStatus;
use crate::domain::view::{AllocationView, ChannelAvailableView, LevelView};
use crate::domain::{Id, Timestamp};

/// Every event type of the feed, in the order of `feed::render::FEED_TYPES`, with the
/// schema of its `data` and the name of its envelope.
pub(super) const EVENT_TYPES: [(&str, &str, &str); 27] = [
    ("brand.created", "BrandCreatedData", "BrandCreatedEvent"),
    ("sku.upserted", "SkuUpsertedData", "SkuUpsertedEvent"),
    ("sku.deleted", "SkuDeletedData", "SkuDeletedEvent"),
    ("stock.changed", "StockChangedData", "StockChangedEvent"),
    ("reservation.created", "ReservationView", "ReservationCreatedEvent"),
    ("reservation.released", "ReservationEndedData", "ReservationReleasedEvent"),
    ("reservation.expired", "ReservationEndedData", "ReservationExpiredEvent"),
    ("shipment.created", "ShipmentCreatedData", "ShipmentCreatedEvent"),
    ("shipment.status_changed", "ShipmentStatusChangedData", "ShipmentStatusChangedEvent"),
    ("channel.upserted", "ChannelUpsertedData", "ChannelUpsertedEvent"),
    ("channel.availability_changed", "ChannelAvailabilityChangedData", "ChannelAvailabilityChangedEvent"),
    ("inbound.created", "InboundView", "InboundCreatedEvent"),
    ("inbound.received", "InboundReceivedData", "InboundReceivedEvent"),
    ("inbound.closed", "InboundClosedData", "InboundClosedEvent"),
    ("transfer.created", "TransferView", "TransferCreatedEvent"),
    ("transfer.shipped", "TransferStatusData", "TransferShippedEvent"),
    ("transfer.received", "TransferReceivedData", "TransferReceivedEvent"),
    ("transfer.closed", "TransferClosedData", "TransferClosedEvent"),
    ("transfer.cancelled", "TransferStatusData", "TransferCancelledEvent"),
    ("return.created", "ReturnView", "ReturnCreatedEvent"),
    ("return.in_transit", "ReturnStatusData", "ReturnInTransitEvent"),
    ("return.received", "ReturnReceivedData", "ReturnReceivedEvent"),
    ("return.closed", "ReturnStatusData", "ReturnClosedEvent"),
    ("return.cancelled", "ReturnStatusData", "ReturnCancelledEvent"),
    ("stock.low", "StockAlertData", "StockLowEvent"),
    ("stock.out", "StockAlertData", "StockOutEvent"),
    ("stock.back", "StockAlertData", "StockBackEvent"),
];

/// `brand.created`.
#[derive(ToSchema)]
pub(super) struct BrandCreatedData {
    name: String,
}

/// `sku.upserted`: the catalog fields after the change.
#[derive(ToSchema)]
pub(super) struct SkuUpsertedData {
    sku: Id,
    /// Increases with every catalog change of the SKU: drop events older than one seen.
    version: u64,
    #[schema(required = true)]
    product_id: Option<String>,
    name: String,
    #[schema(required = true)]
    color: Option<String>,
    #[schema(required = true)]
    size: Option<String>,
    #[schema(required = true)]
    category: Option<String>,
    #[schema(required = true)]
    price: Option<i64>,
    tags: Vec<String>,
    attributes: BTreeMap<String, String>,
}

/// `sku.deleted`.
#[derive(ToSchema)]
pub(super) struct SkuDeletedData {
    sku: Id,
}

/// What moved the stock of a `stock.changed` event.
#[derive(ToSchema)]
pub(super) enum StockCauseKind {
    #[schema(rename = "adjust")]
    Adjust,
    #[schema(rename = "set")]
    Set,
    #[schema(rename = "set_safety_stock")]
    SetSafetyStock,
    #[schema(rename = "mark_unsellable")]
    MarkUnsellable,
    #[schema(rename = "release_unsellable")]
    ReleaseUnsellable,
    #[schema(rename = "dispose")]
    Dispose,
    #[schema(rename = "reserved")]
    Reserved,
    #[schema(rename = "released")]
    Released,
    #[schema(rename = "expired")]
    Expired,
    #[schema(rename = "shipped")]
    Shipped,
    #[schema(rename = "cancelled")]
    Cancelled,
    #[schema(rename = "inbound")]
    Inbound,
    #[schema(rename = "received")]
    Received,
    #[schema(rename = "inbound_closed")]
    InboundClosed,
    #[schema(rename = "transfer_shipped")]
    TransferShipped,
    #[schema(rename = "transfer_received")]
    TransferReceived,
    #[schema(rename = "transfer_written_off")]
    TransferWrittenOff,
    #[schema(rename = "return_received")]
    ReturnReceived,
}

/// Why the stock changed: a stock change (`adjust` with `delta`, `set` with
/// `on_hand`, `set_safety_stock`, `mark_unsellable`, `release_unsellable` or `dispose`
/// with `quantity`, each with its `reason`), or the
/// reservation, shipment, inbound notice, transfer or return `id` that moved it.
#[derive(ToSchema)]
pub(super) struct StockCause {
    kind: StockCauseKind,
    #[schema(nullable = false)]
    delta: Option<i64>,
    #[schema(nullable = false)]
    on_hand: Option<i64>,
    #[schema(nullable = false)]
    quantity: Option<i64>,
    #[schema(nullable = false)]
    reason: Option<String>,
    #[schema(nullable = false)]
    id: Option<Id>,
}

/// `stock.changed`: the stock view of the SKU after the change, and its cause.
#[derive(ToSchema)]
pub(super) struct StockChangedData {
    sku: Id,
    /// Increases by one with every stock change of the SKU: drop events older than one seen.
    version: u64,
    /// Levels per location.
    locations: BTreeMap<String, LevelView>,
    total: LevelView,
    /// Availability to each configured channel.
    channels: BTreeMap<String, ChannelAvailableView>,
    cause: StockCause,
}

/// `reservation.released` and `reservation.expired`.
#[derive(ToSchema)]
pub(super) struct ReservationEndedData {
    id: Id,
    status: ReservationStatus,
}

/// `shipment.created`: the shipment without `ship_to` (personal data never leaves
/// through the feed or webhooks).
#[derive(ToSchema)]
pub(super) struct ShipmentCreatedData {
    id: Id,
    status: ShipmentStatus,
    #[schema(required = true)]
    order_ref: Option<String>,
    #[schema(required = true)]
    channel: Option<Id>,
    #[schema(required = true)]
    reservation_id: Option<Id>,
    lines: Vec<AllocationView>,
    created_at: Timestamp,
}

/// `shipment.status_changed`.
#[derive(ToSchema)]
pub(super) struct ShipmentStatusChangedData {
    id: Id,
    status: ShipmentStatus,
    #[schema(required = true)]
    tracking_number: Option<String>,
    #[schema(required = true)]
    carrier: Option<String>,
}

/// `channel.upserted`.
#[derive(ToSchema)]
pub(super) struct ChannelUpsertedData {
    id: Id,
    name: String,
    /// `null`: every location.
    #[schema(required = true)]
    locations: Option<Vec<Id>>,
    buffer: i64,
    updated_at: Timestamp,
}

/// One SKU of a `channel.availability_changed` event.
#[derive(ToSchema)]
pub(super) struct SkuAvailability {
    sku: Id,
    available: i64,
}

/// `channel.availability_changed`: a chunk of the SKUs whose availability to the
/// channel a reconfiguration changed; `done` on the last chunk.
#[derive(ToSchema)]
pub(super) struct ChannelAvailabilityChangedData {
    channel: Id,
    skus: Vec<SkuAvailability>,
    done: bool,
}

/// One line of an `inbound.received` event.
#[derive(ToSchema)]
pub(super) struct ReceivedLine {
    sku: Id,
    quantity: i64,
}

/// `inbound.received`: what this receipt moved from `incoming` to `on_hand`.
#[derive(ToSchema)]
pub(super) struct InboundReceivedData {
    id: Id,
    lines: Vec<ReceivedLine>,
}

/// `inbound.closed`.
#[derive(ToSchema)]
pub(super) struct InboundClosedData {
    id: Id,
    status: InboundStatus,
}

/// `transfer.shipped` and `transfer.cancelled`.
#[derive(ToSchema)]
pub(super) struct TransferStatusData {
    id: Id,
    status: TransferStatus,
}

/// `transfer.received`: what this receipt moved from `in_transit` to `on_hand` at the
/// destination.
#[derive(ToSchema)]
pub(super) struct TransferReceivedData {
    id: Id,
    lines: Vec<ReceivedLine>,
}

/// `transfer.closed`: `written_off` is what was still in transit, lost (per SKU; empty
/// when everything arrived).
#[derive(ToSchema)]
pub(super) struct TransferClosedData {
    id: Id,
    status: TransferStatus,
    written_off: Vec<ReceivedLine>,
}

/// `return.in_transit`, `return.closed` and `return.cancelled`.
#[derive(ToSchema)]
pub(super) struct ReturnStatusData {
    id: Id,
    status: ReturnStatus,
}

/// One line of a `return.received` event: units inspected into a disposition (at
/// `location` for `restock` and `unsellable`, `null` for `missing`).
#[derive(ToSchema)]
pub(super) struct ReturnReceivedLine {
    sku: Id,
    quantity: i64,
    disposition: Disposition,
    #[schema(required = true)]
    location: Option<Id>,
}

/// `return.received`: the dispositions of this receipt.
#[derive(ToSchema)]
pub(super) struct ReturnReceivedData {
    id: Id,
    lines: Vec<ReturnReceivedLine>,
}

/// `stock.low` (the SKU's availability to the channel fell below its threshold),
/// `stock.out` (to zero) and `stock.back` (at or above the threshold again): once per
/// crossing.
#[derive(ToSchema)]
pub(super) struct StockAlertData {
    sku: Id,
    channel: Id,
    available: i64,
    threshold: i64,
}
