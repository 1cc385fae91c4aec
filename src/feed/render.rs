//! What a feed event looks like: the `data` of each event type, rendered from the
//! event alone (events carry resulting values, so no state is needed), and the
//! ordering key that webhook delivery keeps in order.
//!
//! Never rendered: a shipment's `ship_to` (personal data). Not feed events at all:
//! purges (the server forgetting ended objects from memory), webhook subscriptions
//! and import-job bookkeeping (configuration and progress, not inventory changes).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::catalog::Catalog;
use crate::domain::event::{Cause, Event};
use crate::domain::fulfilment::{Shipment, ShipmentSource, ShipmentStatus};
use crate::domain::stock::{Level, Levels, StockOp};
use crate::domain::time::rfc3339;
use crate::domain::view::{AllocationView, InboundView, ReservationView, ReturnView, TransferView};
use crate::domain::{Id, Timestamp};
use crate::journal::history::HistoryId;

/// Every type the feed carries, for validating webhook filters.
pub const FEED_TYPES: [&str; 27] = [
    "brand.created",
    "sku.upserted",
    "sku.deleted",
    "stock.changed",
    "reservation.created",
    "reservation.released",
    "reservation.expired",
    "shipment.created",
    "shipment.status_changed",
    "channel.upserted",
    "channel.availability_changed",
    "inbound.created",
    "inbound.received",
    "inbound.closed",
    "transfer.created",
    "transfer.shipped",
    "transfer.received",
    "transfer.closed",
    "transfer.cancelled",
    "return.created",
    "return.in_transit",
    "return.received",
    "return.closed",
    "return.cancelled",
    "stock.low",
    "stock.out",
    "stock.back",
];

/// A feed event before it has a sequence number (the tests' view of [`key`] and
/// [`data`] together).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub kind: &'static str,
    /// Events with the same key are delivered to a webhook in feed order.
    pub key: String,
    /// The `data` object, as JSON text.
    pub data: String,
}

#[derive(Serialize)]
pub(super) struct CauseView<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_hand: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantity: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    /// The reservation or shipment that moved the stock.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Id>,
}

pub(super) fn cause_view(c: &Cause) -> CauseView<'_> {
    let mut v = CauseView { kind: c.kind(), delta: None, on_hand: None, quantity: None, reason: None, id: None };
    match c {
        Cause::Change { op, reason } => {
            match *op {
                StockOp::Adjust { delta } => v.delta = Some(delta),
                StockOp::Set { on_hand } => v.on_hand = Some(on_hand),
                StockOp::SetSafetyStock { quantity }
                | StockOp::MarkUnsellable { quantity }
                | StockOp::ReleaseUnsellable { quantity }
                | StockOp::Dispose { quantity } => v.quantity = Some(quantity),
            }
            v.reason = reason.as_deref();
        }
        Cause::Reserved { id }
        | Cause::Released { id }
        | Cause::Expired { id }
        | Cause::Shipped { id }
        | Cause::Cancelled { id }
        | Cause::Inbound { id }
        | Cause::Received { id }
        | Cause::InboundClosed { id }
        | Cause::TransferShipped { id }
        | Cause::TransferReceived { id }
        | Cause::TransferWrittenOff { id }
        | Cause::ReturnReceived { id } => v.id = Some(id),
    }
    v
}

/// `stock.changed` data, written by hand: it is most of the feed (one per row of a
/// stock import), and building a `StockView` with its maps for each cost as much as the
/// rest of the feed thread's work. Ids need no escaping (`[A-Za-z0-9._:-]`); the one
/// free-text field, `reason`, goes through serde_json. The shape is the stock view's
/// (locations in location order, as `Levels` keeps them) plus `cause`.
fn stock_changed(sku: &Id, version: u64, levels: &Levels, channels: &[(Id, i64)], cause: &Cause) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(160 + 110 * levels.0.len() + 40 * channels.len());
    let level = |out: &mut String, l: &Level, available: i64| {
        let _ = write!(
            out,
            r#"{{"on_hand":{},"reserved":{},"safety_stock":{},"available":{available},"incoming":{},"unsellable":{},"in_transit":{}}}"#,
            l.on_hand, l.reserved, l.safety_stock, l.incoming, l.unsellable, l.in_transit
        );
    };
    let _ = write!(out, r#"{{"sku":"{sku}","version":{version},"locations":{{"#);
    for (i, (loc, l)) in levels.iter().enumerate() {
        let _ = write!(out, r#"{}"{loc}":"#, if i == 0 { "" } else { "," });
        level(&mut out, l, l.available());
    }
    out.push_str(r#"},"total":"#);
    // The total's available is the sum of the per-location ones (each clamped at 0).
    level(&mut out, &levels.total(), levels.iter().map(|(_, l)| l.available()).sum());
    out.push_str(r#","channels":{"#);
    for (i, (c, available)) in channels.iter().enumerate() {
        let _ = write!(out, r#"{}"{c}":{{"available":{available}}}"#, if i == 0 { "" } else { "," });
    }
    out.push_str(r#"},"cause":"#);
    out.push_str(&json(&cause_view(cause)));
    out.push('}');
    out
}

#[derive(Serialize)]
struct SkuUpsertedView<'a> {
    sku: &'a Id,
    version: u64,
    product_id: Option<&'a str>,
    name: &'a str,
    color: Option<&'a str>,
    size: Option<&'a str>,
    category: Option<&'a str>,
    price: Option<i64>,
    tags: Vec<&'a str>,
    attributes: BTreeMap<&'a str, &'a str>,
}

fn sku_upserted<'a>(sku: &'a Id, version: u64, c: &'a Catalog) -> SkuUpsertedView<'a> {
    SkuUpsertedView {
        sku,
        version,
        product_id: c.product_id.as_deref(),
        name: &c.name,
        color: c.color.as_deref(),
        size: c.size.as_deref(),
        category: c.category.as_deref(),
        price: c.price,
        tags: c.tags.iter().map(|t| t.as_str()).collect(),
        attributes: c.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
    }
}

/// A shipment as the feed shows it: everything but `ship_to`.
#[derive(Serialize)]
struct ShipmentFeedView<'a> {
    id: &'a Id,
    status: ShipmentStatus,
    order_ref: Option<&'a str>,
    channel: Option<&'a Id>,
    reservation_id: Option<&'a Id>,
    lines: Vec<AllocationView>,
    #[serde(with = "rfc3339")]
    created_at: Timestamp,
}

fn shipment_created(s: &Shipment) -> ShipmentFeedView<'_> {
    ShipmentFeedView {
        id: &s.id,
        status: s.status,
        order_ref: s.order_ref.as_deref(),
        channel: s.channel.as_ref(),
        reservation_id: match &s.source {
            ShipmentSource::Reservation(r) => Some(r),
            ShipmentSource::Lines(_) => None,
        },
        lines: s.lines.iter().map(AllocationView::from).collect(),
        created_at: s.created_at,
    }
}

fn quantity_lines(lines: &[(Id, i64)]) -> Vec<serde_json::Value> {
    lines.iter().map(|(sku, quantity)| serde_json::json!({ "sku": sku, "quantity": quantity })).collect()
}

fn json(v: &impl Serialize) -> String {
    serde_json::to_string(v).expect("feed views serialise")
}

/// The feed form of an event, or `None` for events the feed does not carry.
#[cfg(test)]
pub fn render(ev: &Event) -> Option<Rendered> {
    Some(Rendered { kind: ev.type_name(), key: key(ev)?, data: data(ev)? })
}

/// The ordering key of a feed event (events with one key reach a webhook in feed
/// order), or `None` for events the feed does not carry.
pub fn key(ev: &Event) -> Option<String> {
    Some(match ev {
        Event::BrandCreated { .. } => "brand".to_string(),
        Event::SkuUpserted { sku, .. } | Event::SkuDeleted { sku } | Event::StockChanged { sku, .. } | Event::StockAlert { sku, .. } => {
            format!("sku:{sku}")
        }
        Event::ReservationCreated { reservation } => format!("reservation:{}", reservation.id),
        Event::ReservationReleased { id } | Event::ReservationExpired { id } => format!("reservation:{id}"),
        Event::ShipmentCreated { shipment } => format!("shipment:{}", shipment.id),
        Event::ShipmentStatusChanged { id, .. } => format!("shipment:{id}"),
        Event::ChannelUpserted { channel } => format!("channel:{}", channel.id),
        Event::ChannelSynced { channel, .. } => format!("channel:{channel}"),
        Event::InboundCreated { inbound } => format!("inbound:{}", inbound.id),
        Event::InboundReceived { id, .. } | Event::InboundClosed { id } => format!("inbound:{id}"),
        Event::TransferCreated { transfer } => format!("transfer:{}", transfer.id),
        Event::TransferShipped { id }
        | Event::TransferReceived { id, .. }
        | Event::TransferClosed { id, .. }
        | Event::TransferCancelled { id } => format!("transfer:{id}"),
        Event::ReturnCreated { ret } => format!("return:{}", ret.id),
        Event::ReturnInTransit { id } | Event::ReturnReceived { id, .. } | Event::ReturnClosed { id } | Event::ReturnCancelled { id } => {
            format!("return:{id}")
        }
        Event::ReservationPurged { .. }
        | Event::ShipmentPurged { .. }
        | Event::TransferPurged { .. }
        | Event::ReturnPurged { .. }
        | Event::WebhookCreated { .. }
        | Event::WebhookDeleted { .. }
        | Event::ImportQueued { .. }
        | Event::ImportStarted { .. }
        | Event::ImportChunkApplied { .. }
        | Event::ImportFinished { .. }
        | Event::ImportCancelled { .. }
        | Event::ThresholdsSet { .. } => return None,
    })
}

/// The `data` object of a feed event, as JSON text; `None` for events the feed does
/// not carry.
pub fn data(ev: &Event) -> Option<String> {
    Some(match ev {
        Event::BrandCreated { name } => json(&serde_json::json!({ "name": name })),
        Event::SkuUpserted { sku, catalog, version } => json(&sku_upserted(sku, *version, catalog)),
        Event::SkuDeleted { sku } => json(&serde_json::json!({ "sku": sku })),
        Event::StockChanged { sku, version, levels, channels, cause } => stock_changed(sku, *version, levels, channels, cause),
        Event::ReservationCreated { reservation } => json(&ReservationView::from(reservation.as_ref())),
        Event::ReservationReleased { id } => json(&serde_json::json!({ "id": id, "status": "released" })),
        Event::ReservationExpired { id } => json(&serde_json::json!({ "id": id, "status": "expired" })),
        Event::ShipmentCreated { shipment } => json(&shipment_created(shipment)),
        Event::ShipmentStatusChanged { id, status, tracking_number, carrier } => {
            json(&serde_json::json!({ "id": id, "status": status, "tracking_number": tracking_number, "carrier": carrier }))
        }
        Event::ChannelUpserted { channel: c } => json(
            &serde_json::json!({ "id": c.id, "name": c.name, "locations": c.locations, "buffer": c.buffer, "updated_at": c.updated_at.to_rfc3339() }),
        ),
        Event::ChannelSynced { channel, skus, after } => {
            let skus: Vec<_> = skus.iter().map(|(sku, available)| serde_json::json!({ "sku": sku, "available": available })).collect();
            json(&serde_json::json!({ "channel": channel, "skus": skus, "done": after.is_none() }))
        }
        Event::InboundCreated { inbound } => json(&InboundView::from(inbound.as_ref())),
        Event::InboundReceived { id, lines } => {
            let lines: Vec<_> = lines.iter().map(|(sku, quantity)| serde_json::json!({ "sku": sku, "quantity": quantity })).collect();
            json(&serde_json::json!({ "id": id, "lines": lines }))
        }
        Event::InboundClosed { id } => json(&serde_json::json!({ "id": id, "status": "closed" })),
        Event::TransferCreated { transfer } => json(&TransferView::from(transfer.as_ref())),
        Event::TransferShipped { id } => json(&serde_json::json!({ "id": id, "status": "shipped" })),
        Event::TransferReceived { id, lines } => json(&serde_json::json!({ "id": id, "lines": quantity_lines(lines) })),
        Event::TransferClosed { id, written_off } => {
            json(&serde_json::json!({ "id": id, "status": "closed", "written_off": quantity_lines(written_off) }))
        }
        Event::TransferCancelled { id } => json(&serde_json::json!({ "id": id, "status": "cancelled" })),
        Event::ReturnCreated { ret } => json(&ReturnView::from(ret.as_ref())),
        Event::ReturnInTransit { id } => json(&serde_json::json!({ "id": id, "status": "in_transit" })),
        Event::ReturnReceived { id, lines } => json(&serde_json::json!({ "id": id, "lines": lines })),
        Event::ReturnClosed { id } => json(&serde_json::json!({ "id": id, "status": "closed" })),
        Event::ReturnCancelled { id } => json(&serde_json::json!({ "id": id, "status": "cancelled" })),
        Event::StockAlert { sku, channel, available, threshold, .. } => {
            json(&serde_json::json!({ "sku": sku, "channel": channel, "available": available, "threshold": threshold }))
        }
        _ => return None,
    })
}

/// The id of the `index`-th event of the record at `lsn`: unique, and the same every
/// time the journal is read (it is the Standard Webhooks `webhook-id` too). `history`
/// is the label of the journal history the record belongs to (`None` in a data dir's
/// first history): after a restore or a repair the same LSN holds another record, and
/// its event must not have the id of the one it replaced.
pub fn event_id(history: Option<HistoryId>, lsn: u64, index: usize) -> String {
    match history {
        Some(h) => format!("evt_{h}_{lsn}_{index}"),
        None => format!("evt_{lsn}_{index}"),
    }
}

/// The whole event object as the feed and webhooks send it; `at` is RFC 3339.
pub fn event_json(id: &str, seq: u64, kind: &str, at: &str, data: &str) -> String {
    let mut out = String::with_capacity(80 + data.len());
    let seq = seq.to_string();
    for part in [r#"{"id":""#, id, r#"","seq":"#, &seq, r#","type":""#, kind, r#"","at":""#, at, r#"","data":"#, data, "}"] {
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fulfilment::{Allocation, ShipTo, StatusEntry};

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap()
    }

    #[test]
    fn stock_changed_carries_levels_totals_and_cause() {
        let levels = Levels(Box::new([
            (id("osaka"), Level { on_hand: 3, reserved: 0, safety_stock: 0, incoming: 5, ..Level::default() }),
            (id("tsukuba"), Level { on_hand: 10, reserved: 2, safety_stock: 1, incoming: 0, ..Level::default() }),
        ]));
        let ev = Event::StockChanged {
            sku: id("S1"),
            version: 8,
            levels,
            channels: vec![(id("zozotown"), 4)],
            cause: Cause::Change { op: StockOp::Adjust { delta: -1 }, reason: None },
        };
        let r = render(&ev).unwrap();
        assert_eq!((r.kind, r.key.as_str()), ("stock.changed", "sku:S1"));
        let v: serde_json::Value = serde_json::from_str(&r.data).unwrap();
        assert_eq!(v["sku"], "S1");
        assert_eq!(v["version"], 8);
        assert_eq!(
            v["locations"]["tsukuba"],
            serde_json::json!({"on_hand":10,"reserved":2,"safety_stock":1,"available":7,"incoming":0,"unsellable":0,"in_transit":0})
        );
        assert_eq!(v["total"]["available"], 10);
        assert_eq!(v["total"]["incoming"], 5);
        assert_eq!(v["cause"], serde_json::json!({"kind": "adjust", "delta": -1}));
        assert_eq!(v["channels"], serde_json::json!({"zozotown": {"available": 4}}));
    }

    #[test]
    fn stock_changed_is_the_stock_view_plus_the_cause() {
        use crate::domain::view::{ChannelAvailableView, StockView};
        let levels = Levels(Box::new([
            (id("a"), Level { on_hand: 1, reserved: 1, safety_stock: 3, incoming: 0, unsellable: 4, in_transit: 6 }),
            (id("b.2"), Level { on_hand: 9, reserved: 0, safety_stock: 0, incoming: 2, ..Level::default() }),
        ]));
        let cause = Cause::Change { op: StockOp::Set { on_hand: 9 }, reason: Some("棚卸 \"q\"\n".into()) };
        let channels = vec![(id("ec"), 3), (id("zozo"), 0)];
        let ev =
            Event::StockChanged { sku: id("S-1"), version: 2, levels: levels.clone(), channels: channels.clone(), cause: cause.clone() };
        let fast: serde_json::Value = serde_json::from_str(&render(&ev).unwrap().data).unwrap();
        let mut view = StockView::new(&id("S-1"), 2, &levels);
        view.channels = channels.into_iter().map(|(c, available)| (c, ChannelAvailableView { available })).collect();
        let mut slow = serde_json::to_value(&view).unwrap();
        slow["cause"] = serde_json::to_value(cause_view(&cause)).unwrap();
        assert_eq!(fast, slow);
    }

    #[test]
    fn shipments_never_show_ship_to() {
        let s = Shipment {
            id: id("SH1"),
            order_ref: Some("EC-1".into()),
            channel: None,
            source: ShipmentSource::Reservation(id("R1")),
            lines: vec![Allocation { sku: id("S1"), location: id("tsukuba"), quantity: 1 }],
            ship_to: ShipTo {
                name: "山田 太郎".into(),
                postal_code: "100-0001".into(),
                prefecture: "東京都".into(),
                address: "千代田区1-1".into(),
                phone: Some("03-0000-0000".into()),
            },
            status: ShipmentStatus::Accepted,
            history: vec![StatusEntry { status: ShipmentStatus::Accepted, at: Timestamp(0) }],
            tracking_number: None,
            carrier: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        };
        let r = render(&Event::ShipmentCreated { shipment: Box::new(s) }).unwrap();
        for secret in ["山田", "100-0001", "千代田", "03-0000", "ship_to"] {
            assert!(!r.data.contains(secret), "{secret} in {}", r.data);
        }
        assert!(r.data.contains("\"reservation_id\":\"R1\""));
    }

    #[test]
    fn bookkeeping_events_are_not_feed_events_and_every_feed_type_is_listed() {
        assert!(render(&Event::ReservationPurged { id: id("R1") }).is_none());
        assert!(render(&Event::WebhookDeleted { id: id("W1") }).is_none());
        for ev in [Event::SkuDeleted { sku: id("S1") }, Event::ReservationExpired { id: id("R1") }] {
            assert!(FEED_TYPES.contains(&render(&ev).unwrap().kind));
        }
        let body = event_json("evt_1_0", 3, "sku.deleted", &Timestamp(0).to_rfc3339(), r#"{"sku":"S1"}"#);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["seq"], 3);
        assert_eq!(v["at"], "1970-01-01T00:00:00.000Z");
    }
}
