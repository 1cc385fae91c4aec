//! The public shapes of domain objects, as the API, the change feed and the search
//! index show them. Serde structs only; rendering to JSON happens at the edge.

use std::collections::BTreeMap;

use serde::Serialize;

use super::alerts::Thresholds;
use super::brand::{BrandState, ChangeOutcome, SkuState};
use super::channel::{Channel, Inbound, InboundStatus};
use super::fulfilment::{Allocation, Reservation, ReservationStatus, Shipment, ShipmentSource, ShipmentStatus};
use super::registry::{Location, LocationKind};
use super::returns::{Return, ReturnStatus};
use super::stock::{Level, Levels};
use super::time::rfc3339;
use super::transfer::{Transfer, TransferStatus};
use super::{BrandId, ErrorCode, Id, Timestamp};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LevelView {
    pub on_hand: i64,
    pub reserved: i64,
    pub safety_stock: i64,
    pub available: i64,
    pub incoming: i64,
    /// Held here but not for sale (damaged, returned for inspection); not in `on_hand`.
    pub unsellable: i64,
    /// On its way here by transfer, shipped from another location and not received yet.
    pub in_transit: i64,
}

impl From<&Level> for LevelView {
    fn from(l: &Level) -> Self {
        LevelView {
            on_hand: l.on_hand,
            reserved: l.reserved,
            safety_stock: l.safety_stock,
            available: l.available(),
            incoming: l.incoming,
            unsellable: l.unsellable,
            in_transit: l.in_transit,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChannelAvailableView {
    pub available: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StockView {
    pub sku: Id,
    pub version: u64,
    pub locations: BTreeMap<Id, LevelView>,
    pub total: LevelView,
    /// Availability to each configured channel.
    pub channels: BTreeMap<Id, ChannelAvailableView>,
}

impl StockView {
    /// The stock of a SKU of `brand`, with each configured channel's availability.
    pub fn of(brand: &BrandState, sku: &Id, s: &SkuState) -> Self {
        let mut v = StockView::new(sku, s.stock_version, &s.levels);
        v.channels = brand.channel_view(&s.levels).into_iter().map(|(c, available)| (c, ChannelAvailableView { available })).collect();
        v
    }

    pub fn new(sku: &Id, version: u64, levels: &Levels) -> Self {
        // The total's available is the sum of the per-location ones (each clamped at 0),
        // which is what can actually be sold.
        let mut total = LevelView::from(&levels.total());
        total.available = levels.iter().map(|(_, l)| l.available()).sum();
        StockView {
            sku: sku.clone(),
            version,
            locations: levels.iter().map(|(loc, l)| (loc.clone(), LevelView::from(l))).collect(),
            total,
            channels: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SkuView {
    pub brand: BrandId,
    pub sku: Id,
    pub product_id: Option<String>,
    pub name: String,
    pub color: Option<String>,
    pub size: Option<String>,
    pub category: Option<String>,
    pub price: Option<i64>,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub version: u64,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    pub updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock: Option<StockView>,
}

impl SkuView {
    pub fn new(brand: &BrandState, sku: &Id, s: &SkuState, with_stock: bool) -> Self {
        let c = &s.catalog;
        SkuView {
            brand: brand.id.clone(),
            sku: sku.clone(),
            product_id: c.product_id.as_ref().map(|v| v.to_string()),
            name: c.name.to_string(),
            color: c.color.as_ref().map(|v| v.to_string()),
            size: c.size.as_ref().map(|v| v.to_string()),
            category: c.category.as_ref().map(|v| v.to_string()),
            price: c.price,
            tags: c.tags.iter().map(|t| t.to_string()).collect(),
            attributes: c.attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
            stock: with_stock.then(|| StockView::of(brand, sku, s)),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BrandView {
    pub id: BrandId,
    pub name: String,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
}

impl From<&BrandState> for BrandView {
    fn from(b: &BrandState) -> Self {
        BrandView { id: b.id.clone(), name: b.name.clone(), created_at: b.created_at }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LocationView {
    pub id: Id,
    pub name: String,
    pub kind: LocationKind,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    pub updated_at: Timestamp,
}

impl From<&Location> for LocationView {
    fn from(l: &Location) -> Self {
        LocationView { id: l.id.clone(), name: l.name.clone(), kind: l.kind, created_at: l.created_at, updated_at: l.updated_at }
    }
}

/// One entry of the `results` of a stock-change batch.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChangeResultView {
    pub index: usize,
    /// `applied` or `rejected`.
    #[schema(value_type = String)]
    pub status: &'static str,
    pub sku: Id,
    pub location: Id,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_hand: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ChangeResultView {
    pub fn new(index: usize, sku: &Id, location: &Id, outcome: &ChangeOutcome) -> Self {
        let mut v = ChangeResultView {
            index,
            status: "applied",
            sku: sku.clone(),
            location: location.clone(),
            version: None,
            on_hand: None,
            available: None,
            code: None,
            detail: None,
        };
        match outcome {
            ChangeOutcome::Applied { version, on_hand, available } => {
                v.version = Some(*version);
                v.on_hand = Some(*on_hand);
                v.available = Some(*available);
            }
            ChangeOutcome::Rejected(r) => {
                v.status = "rejected";
                v.code = Some(r.code);
                v.detail = Some(r.detail.clone());
            }
        }
        v
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChangeResultsView {
    pub results: Vec<ChangeResultView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AllocationView {
    pub sku: Id,
    pub location: Id,
    pub quantity: i64,
}

impl From<&Allocation> for AllocationView {
    fn from(a: &Allocation) -> Self {
        AllocationView { sku: a.sku.clone(), location: a.location.clone(), quantity: a.quantity }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReservationView {
    pub id: Id,
    pub status: ReservationStatus,
    pub channel: Id,
    pub ttl_seconds: i64,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    pub expires_at: Timestamp,
    #[serde(with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipment_id: Option<Id>,
    pub lines: Vec<AllocationView>,
}

impl From<&Reservation> for ReservationView {
    fn from(r: &Reservation) -> Self {
        ReservationView {
            id: r.id.clone(),
            status: r.status,
            channel: r.channel.clone(),
            ttl_seconds: r.ttl_seconds,
            created_at: r.created_at,
            expires_at: r.expires_at,
            ended_at: r.ended_at,
            shipment_id: r.shipment_id.clone(),
            lines: r.lines.iter().map(AllocationView::from).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatusEntryView {
    pub status: ShipmentStatus,
    #[serde(with = "rfc3339")]
    pub at: Timestamp,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShipToView {
    pub name: String,
    pub postal_code: String,
    pub prefecture: String,
    pub address: String,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShipmentView {
    pub id: Id,
    pub status: ShipmentStatus,
    pub order_ref: Option<String>,
    pub channel: Option<Id>,
    pub reservation_id: Option<Id>,
    pub lines: Vec<AllocationView>,
    pub ship_to: ShipToView,
    pub tracking_number: Option<String>,
    pub carrier: Option<String>,
    pub status_history: Vec<StatusEntryView>,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    pub updated_at: Timestamp,
    /// What came back, per SKU, over the shipment's returns (not cancelled); absent
    /// when nothing was returned. Shown by `GET .../shipments/{id}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub returned: Vec<ReturnedView>,
}

/// One SKU of a shipment's returns: asked for, then inspected into each disposition.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReturnedView {
    pub sku: Id,
    pub requested: i64,
    pub restocked: i64,
    pub unsellable: i64,
    pub missing: i64,
}

impl ShipmentView {
    /// The shipment with what its returns brought back.
    pub fn with_returns(s: &Shipment, brand: &BrandState) -> Self {
        let mut v = ShipmentView::from(s);
        for r in brand.returns_of_shipment(&s.id) {
            for l in &r.lines {
                let i = match v.returned.iter().position(|x| x.sku == l.sku) {
                    Some(i) => i,
                    None => {
                        v.returned.push(ReturnedView { sku: l.sku.clone(), requested: 0, restocked: 0, unsellable: 0, missing: 0 });
                        v.returned.len() - 1
                    }
                };
                let x = &mut v.returned[i];
                x.requested += l.quantity;
                x.restocked += l.restocked;
                x.unsellable += l.unsellable;
                x.missing += l.missing;
            }
        }
        v
    }
}

impl From<&Shipment> for ShipmentView {
    fn from(s: &Shipment) -> Self {
        let t = &s.ship_to;
        ShipmentView {
            id: s.id.clone(),
            status: s.status,
            order_ref: s.order_ref.as_ref().map(|v| v.to_string()),
            channel: s.channel.clone(),
            reservation_id: match &s.source {
                ShipmentSource::Reservation(r) => Some(r.clone()),
                ShipmentSource::Lines(_) => None,
            },
            lines: s.lines.iter().map(AllocationView::from).collect(),
            ship_to: ShipToView {
                name: t.name.clone(),
                postal_code: t.postal_code.clone(),
                prefecture: t.prefecture.clone(),
                address: t.address.clone(),
                phone: t.phone.clone(),
            },
            tracking_number: s.tracking_number.as_ref().map(|v| v.to_string()),
            carrier: s.carrier.as_ref().map(|v| v.to_string()),
            status_history: s.history.iter().map(|h| StatusEntryView { status: h.status, at: h.at }).collect(),
            created_at: s.created_at,
            updated_at: s.updated_at,
            returned: Vec::new(),
        }
    }
}

/// A shipment as the search index sees it: what staff search by, and deliberately
/// *no* `ship_to` — the recipient's personal data never reaches the index, its files
/// or a search answer, because this type cannot carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentSummary {
    pub id: Id,
    pub order_ref: Option<String>,
    pub channel: Option<Id>,
    pub status: ShipmentStatus,
    pub tracking_number: Option<String>,
    pub carrier: Option<String>,
    /// The SKUs of its lines, each once, in line order.
    pub skus: Vec<Id>,
    pub reservation_id: Option<Id>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&Shipment> for ShipmentSummary {
    fn from(s: &Shipment) -> Self {
        let mut skus: Vec<Id> = Vec::with_capacity(s.lines.len());
        for l in &s.lines {
            if !skus.contains(&l.sku) {
                skus.push(l.sku.clone());
            }
        }
        ShipmentSummary {
            id: s.id.clone(),
            order_ref: s.order_ref.as_ref().map(|v| v.to_string()),
            channel: s.channel.clone(),
            status: s.status,
            tracking_number: s.tracking_number.as_ref().map(|v| v.to_string()),
            carrier: s.carrier.as_ref().map(|v| v.to_string()),
            skus,
            reservation_id: match &s.source {
                ShipmentSource::Reservation(r) => Some(r.clone()),
                ShipmentSource::Lines(_) => None,
            },
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub id: Id,
    pub name: String,
    /// `null`: every location.
    pub locations: Option<Vec<Id>>,
    pub buffer: i64,
    /// Whether the availability events of the last reconfiguration are still streaming.
    pub sync_pending: bool,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    pub updated_at: Timestamp,
}

impl ChannelView {
    pub fn new(brand: &BrandState, c: &Channel) -> Self {
        ChannelView {
            id: c.id.clone(),
            name: c.name.clone(),
            locations: c.locations.clone(),
            buffer: c.buffer,
            sync_pending: brand.channel_syncs.contains_key(&c.id),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InboundLineView {
    pub sku: Id,
    pub expected: i64,
    pub received: i64,
    pub remaining: i64,
    pub over_received: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InboundView {
    pub id: Id,
    pub location: Id,
    pub status: InboundStatus,
    #[serde(with = "rfc3339::option")]
    pub expected_at: Option<Timestamp>,
    pub lines: Vec<InboundLineView>,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    pub updated_at: Timestamp,
}

impl From<&Inbound> for InboundView {
    fn from(i: &Inbound) -> Self {
        InboundView {
            id: i.id.clone(),
            location: i.location.clone(),
            status: i.status,
            expected_at: i.expected_at,
            lines: i
                .lines
                .iter()
                .map(|l| InboundLineView {
                    sku: l.sku.clone(),
                    expected: l.expected,
                    received: l.received,
                    remaining: l.remaining(),
                    over_received: (l.received - l.expected).max(0),
                })
                .collect(),
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

/// One line of a transfer: what was sent, what arrived, what was written off, and
/// what is still in transit (0 before shipping).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TransferLineView {
    pub sku: Id,
    pub quantity: i64,
    pub received: i64,
    pub written_off: i64,
    pub in_transit: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TransferView {
    pub id: Id,
    pub origin: Id,
    pub destination: Id,
    pub status: TransferStatus,
    pub lines: Vec<TransferLineView>,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    pub updated_at: Timestamp,
}

impl From<&Transfer> for TransferView {
    fn from(t: &Transfer) -> Self {
        let shipped = !matches!(t.status, TransferStatus::Draft | TransferStatus::Cancelled);
        TransferView {
            id: t.id.clone(),
            origin: t.origin.clone(),
            destination: t.destination.clone(),
            status: t.status,
            lines: t
                .lines
                .iter()
                .map(|l| TransferLineView {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    received: l.received,
                    written_off: l.written_off,
                    in_transit: if shipped { l.remaining() } else { 0 },
                })
                .collect(),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// One SKU of a return: asked for, inspected into each disposition, still expected.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReturnLineView {
    pub sku: Id,
    pub quantity: i64,
    pub restocked: i64,
    pub unsellable: i64,
    pub missing: i64,
    pub remaining: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReturnView {
    pub id: Id,
    pub shipment_id: Id,
    pub reason: String,
    pub status: ReturnStatus,
    pub lines: Vec<ReturnLineView>,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "rfc3339")]
    pub updated_at: Timestamp,
}

impl From<&Return> for ReturnView {
    fn from(r: &Return) -> Self {
        ReturnView {
            id: r.id.clone(),
            shipment_id: r.shipment_id.clone(),
            reason: r.reason.to_string(),
            status: r.status,
            lines: r
                .lines
                .iter()
                .map(|l| ReturnLineView {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    restocked: l.restocked,
                    unsellable: l.unsellable,
                    missing: l.missing,
                    remaining: l.remaining(),
                })
                .collect(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// One SKU's own threshold.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SkuThresholdView {
    pub sku: Id,
    pub threshold: i64,
}

/// A channel's low-stock thresholds.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ThresholdsView {
    pub channel: Id,
    /// For every SKU without its own; `null`: none.
    pub default: Option<i64>,
    pub skus: Vec<SkuThresholdView>,
}

impl ThresholdsView {
    pub fn new(channel: &Id, t: &Thresholds) -> Self {
        ThresholdsView {
            channel: channel.clone(),
            default: t.default,
            skus: t.skus.iter().map(|(sku, threshold)| SkuThresholdView { sku: sku.clone(), threshold: *threshold }).collect(),
        }
    }
}
