//! What the `utoipa` derives cannot say, written into `/openapi.json` from the same
//! constants the server checks with: every limit on a body field or a query parameter
//! (lengths, ranges, item counts, patterns, enums), one schema per stock-change `op`,
//! the two ways to make a shipment, the feed's events as a union discriminated on
//! `type`, the import upload as binary CSV or NDJSON, and the optional body of
//! `POST .../tokens`.
//!
//! The aim: a request the document calls valid is one the server can accept (a refusal
//! of one is for a reason no schema can express, such as an unknown id, and the
//! contract test names each such reason), and a request it calls invalid is refused.

use serde_json::{json, Map, Value};

use super::event_types::EVENT_TYPES;
use crate::domain::catalog::{
    ATTRIBUTES_MAX, ATTRIBUTE_VALUE_CHARS_MAX, NAME_CHARS_MAX as SKU_NAME_CHARS_MAX, PRICE_MAX, TAGS_MAX, TAG_CHARS_MAX,
    TEXT_CHARS_MAX as SKU_TEXT_CHARS_MAX,
};
use crate::domain::channel::CHANNEL_LOCATIONS_MAX;
use crate::domain::fulfilment::{ShipmentStatus, LINES_MAX, TTL_SECONDS_MAX};
use crate::domain::stock::QUANTITY_MAX;
use crate::domain::text::TEXT_CHARS_MAX;
use crate::feed::render::FEED_TYPES;
use crate::feed::{PAGE_LIMIT_MAX, WAIT_SECONDS_MAX};
use crate::index::query::{Sort, QUERY_CHARS_MAX, QUERY_TERMS_MAX, TERM_CHARS_MAX};
use crate::index::search::{CURSOR_BYTES_MAX, LIMIT_MAX};
use crate::index::shipments::query::ShipmentSort;

/// Text without control characters (Unicode `Cc`, what `char::is_control` refuses).
pub const TEXT_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";
/// What `POST .../webhooks` takes as `url` before it looks at the host: `http` or
/// `https`, in any case.
const URL_PATTERN: &str = "^[Hh][Tt][Tt][Pp]([Ss])?://";
/// A feed or delivery cursor: the decimal seq (`next` of the previous page).
const SEQ_CURSOR_PATTERN: &str = "^[0-9]{1,20}$";
/// A feed cursor: `<seq>`, or `<history>.<seq>` after a restore or repair (`feed::Cursor`).
const FEED_CURSOR_PATTERN: &str = "^([0-9a-f]{16}\\.)?[0-9]{1,20}$";

fn text(min: usize, max: usize) -> Value {
    json!({ "minLength": min, "maxLength": max, "pattern": TEXT_PATTERN })
}

fn quantity(min: i64) -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": min, "maximum": QUANTITY_MAX })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Adds `extra`'s keys to `target` (an object), replacing those it has.
fn merge(target: &mut Value, extra: Value) {
    let Value::Object(extra) = extra else { panic!("merge takes an object") };
    let target = target.as_object_mut().expect("merge into an object");
    target.extend(extra);
}

fn schemas(doc: &mut Value) -> &mut Map<String, Value> {
    doc["components"]["schemas"].as_object_mut().expect("components.schemas")
}

/// A property of a component schema, which must exist.
fn prop<'a>(doc: &'a mut Value, schema: &str, name: &str) -> &'a mut Value {
    let s = schemas(doc).get_mut(schema).unwrap_or_else(|| panic!("no schema {schema}"));
    s["properties"].get_mut(name).unwrap_or_else(|| panic!("no property {schema}.{name}"))
}

fn limit(doc: &mut Value, schema: &str, name: &str, extra: Value) {
    merge(prop(doc, schema, name), extra);
}

/// An operation, which must exist.
fn operation<'a>(doc: &'a mut Value, method: &str, path: &str) -> &'a mut Value {
    doc["paths"].get_mut(path).and_then(|p| p.get_mut(method)).unwrap_or_else(|| panic!("no operation {method} {path}"))
}

/// Replaces the schema of a query parameter, which must exist.
fn query(doc: &mut Value, method: &str, path: &str, name: &str, schema: Value) {
    let params = operation(doc, method, path)["parameters"].as_array_mut().expect("parameters");
    let p = params.iter_mut().find(|p| p["name"] == name && p["in"] == "query").unwrap_or_else(|| panic!("no parameter {name}"));
    p["schema"] = schema;
}

pub fn refine(doc: &mut Value) {
    bodies(doc);
    stock_changes(doc);
    shipments(doc);
    parameters(doc);
    answers(doc);
    feed_events(doc);
}

/// The request bodies' limits.
fn bodies(doc: &mut Value) {
    limit(doc, "CreateBrand", "name", text(1, TEXT_CHARS_MAX));
    limit(doc, "LocationInput", "name", text(1, TEXT_CHARS_MAX));
    limit(doc, "ViewerTokenInput", "role", json!({ "enum": ["viewer"] }));

    limit(doc, "SkuInput", "name", text(1, SKU_NAME_CHARS_MAX));
    for field in ["product_id", "color", "size", "category"] {
        limit(doc, "SkuInput", field, text(1, SKU_TEXT_CHARS_MAX));
    }
    limit(doc, "SkuInput", "price", json!({ "minimum": 0, "maximum": PRICE_MAX }));
    limit(doc, "SkuInput", "tags", json!({ "maxItems": TAGS_MAX, "items": merged(json!({"type": "string"}), text(1, TAG_CHARS_MAX)) }));
    limit(
        doc,
        "SkuInput",
        "attributes",
        json!({
            "maxProperties": ATTRIBUTES_MAX,
            "propertyNames": merged(json!({"type": "string"}), text(1, TAG_CHARS_MAX)),
            "additionalProperties": merged(json!({"type": "string"}), text(0, ATTRIBUTE_VALUE_CHARS_MAX)),
        }),
    );

    // No `default`s in bodies: TypeScript generators make a property with one required.
    let lines = json!({ "minItems": 1, "maxItems": LINES_MAX });
    limit(doc, "ReservationInput", "ttl_seconds", json!({ "minimum": 1, "maximum": TTL_SECONDS_MAX }));
    limit(doc, "ReservationInput", "lines", lines.clone());
    limit(doc, "LineInput", "quantity", quantity(1));
    limit(doc, "InboundInput", "lines", lines.clone());
    limit(doc, "ReceiptInput", "lines", lines.clone());
    limit(doc, "InboundLineInput", "quantity", quantity(1));
    limit(doc, "TransferInput", "lines", lines.clone());
    limit(doc, "TransferReceiptInput", "lines", lines.clone());
    limit(doc, "TransferLineInput", "quantity", quantity(1));
    limit(doc, "ReturnInput", "lines", lines.clone());
    limit(doc, "ReturnInput", "reason", text(1, TEXT_CHARS_MAX));
    limit(doc, "ReturnLineInput", "quantity", quantity(1));
    limit(doc, "ReturnReceiptInput", "lines", lines);
    limit(doc, "ReturnReceiptLineInput", "quantity", quantity(1));
    // `null` or absent: no default (only the listed SKUs alert).
    limit(doc, "ThresholdsInput", "default", json!({ "minimum": 1, "maximum": QUANTITY_MAX }));
    limit(doc, "ThresholdsInput", "skus", json!({ "maxItems": crate::domain::alerts::THRESHOLD_SKUS_MAX }));
    limit(doc, "SkuThresholdInput", "threshold", quantity(1));

    limit(doc, "ChannelInput", "name", text(1, TEXT_CHARS_MAX));
    limit(doc, "ChannelInput", "locations", json!({ "minItems": 1, "maxItems": CHANNEL_LOCATIONS_MAX, "uniqueItems": true }));
    limit(doc, "ChannelInput", "buffer", quantity(0));

    for field in ["name", "postal_code", "prefecture", "address", "phone"] {
        limit(doc, "ShipTo", field, text(1, TEXT_CHARS_MAX));
    }
    for field in ["tracking_number", "carrier"] {
        limit(doc, "ShipmentStatusInput", field, text(1, TEXT_CHARS_MAX));
    }
    // `accepted` is where a shipment starts; it cannot be set.
    let targets: Vec<&str> = ShipmentStatus::TARGETS.iter().map(|s| s.as_str()).collect();
    *prop(doc, "ShipmentStatusInput", "status") =
        json!({ "type": "string", "enum": targets, "description": "The status to move to (`accepted` is where a shipment starts)." });

    limit(
        doc,
        "WebhookInput",
        "url",
        json!({ "format": "uri", "maxLength": crate::webhooks::target::URL_CHARS_MAX, "pattern": URL_PATTERN }),
    );
    *prop(doc, "ReplayInput", "after_seq") = json!({ "type": "integer", "minimum": 0, "maximum": u64::MAX, "description": "Send again the subscribed events after this feed seq." });
    limit(doc, "WebhookInput", "events", json!({ "minItems": 1, "maxItems": FEED_TYPES.len(), "uniqueItems": true }));

    // `POST .../tokens` takes no body, or `{}`.
    let tokens = operation(doc, "post", "/v1/brands/{brand}/tokens");
    tokens["requestBody"]["required"] = json!(false);
    // The upload is the file itself, streamed: binary to generators.
    let upload = &mut operation(doc, "post", "/v1/brands/{brand}/imports")["requestBody"];
    upload["required"] = json!(true);
    for media in ["text/csv", "application/x-ndjson"] {
        upload["content"][media]["schema"] = json!({ "type": "string", "format": "binary" });
    }
}

fn merged(mut a: Value, b: Value) -> Value {
    merge(&mut a, b);
    a
}

/// One schema per stock-change `op`, each with exactly the fields it takes.
fn stock_changes(doc: &mut Value) {
    limit(doc, "StockChangesInput", "changes", json!({ "minItems": 1, "maxItems": crate::config::Limits::default().changes_max }));
    let variant = |op: &str, field: &str, description: &str, schema: Value| {
        json!({
            "type": "object",
            "description": description,
            "required": ["sku", "location", "op", field],
            "additionalProperties": false,
            "properties": {
                "sku": reference("Id"),
                "location": reference("Id"),
                "op": { "type": "string", "const": op },
                field: schema,
                "expected_version": {
                    "type": ["integer", "null"], "minimum": 0, "maximum": u64::MAX,
                    "description": "Apply only if the SKU's stock `version` is this one (else `version_conflict`)."
                },
                "reason": merged(json!({ "type": ["string", "null"], "description": "Why (shown in the feed)." }), text(1, TEXT_CHARS_MAX)),
            }
        })
    };
    // `delta` is never 0 (a no-op is a mistake).
    let delta = json!({
        "type": "integer", "format": "int64", "minimum": -QUANTITY_MAX, "maximum": QUANTITY_MAX, "not": { "const": 0 },
        "description": "Added to `on_hand` (negative to take away); not 0."
    });
    let s = schemas(doc);
    s.insert("AdjustStockChange".into(), variant("adjust", "delta", "Adjust `on_hand` by `delta`.", delta));
    s.insert("SetStockChange".into(), variant("set", "on_hand", "Set `on_hand` (a count).", quantity(0)));
    s.insert(
        "SetSafetyStockChange".into(),
        variant("set_safety_stock", "quantity", "Set the safety stock held back from `available`.", quantity(0)),
    );
    s.insert(
        "MarkUnsellableStockChange".into(),
        variant("mark_unsellable", "quantity", "Move `quantity` units of `on_hand` into `unsellable` (never reserved ones).", quantity(1)),
    );
    s.insert(
        "ReleaseUnsellableStockChange".into(),
        variant("release_unsellable", "quantity", "Move `quantity` units of `unsellable` back into `on_hand`.", quantity(1)),
    );
    s.insert(
        "DisposeStockChange".into(),
        variant("dispose", "quantity", "Write `quantity` units of `unsellable` off: they leave the location.", quantity(1)),
    );
    s.insert(
        "StockChangeInput".into(),
        json!({
            "description": "One change; each stands alone (not atomic across changes).",
            "oneOf": [
                reference("AdjustStockChange"), reference("SetStockChange"), reference("SetSafetyStockChange"),
                reference("MarkUnsellableStockChange"), reference("ReleaseUnsellableStockChange"), reference("DisposeStockChange"),
            ],
            "discriminator": { "propertyName": "op", "mapping": {
                "adjust": "#/components/schemas/AdjustStockChange",
                "set": "#/components/schemas/SetStockChange",
                "set_safety_stock": "#/components/schemas/SetSafetyStockChange",
                "mark_unsellable": "#/components/schemas/MarkUnsellableStockChange",
                "release_unsellable": "#/components/schemas/ReleaseUnsellableStockChange",
                "dispose": "#/components/schemas/DisposeStockChange",
            } }
        }),
    );
    s.remove("StockOp");
}

/// A shipment is made from a reservation or from lines: one schema for each.
fn shipments(doc: &mut Value) {
    let input = schemas(doc).remove("ShipmentInput").expect("ShipmentInput");
    let mut common = input["properties"].as_object().expect("properties").clone();
    common.remove("reservation_id");
    common.remove("lines");
    merge(&mut common["order_ref"], text(1, TEXT_CHARS_MAX));
    let variant = |field: &str, schema: Value, description: &str| {
        let mut properties = common.clone();
        properties.insert(field.into(), schema);
        json!({
            "type": "object",
            "description": description,
            "required": ["id", field, "ship_to"],
            "additionalProperties": false,
            "properties": properties,
        })
    };
    let from_reservation = variant(
        "reservation_id",
        merged(reference("Id"), json!({ "description": "The active reservation to ship; it is consumed." })),
        "A shipment of what a reservation holds.",
    );
    let from_lines = variant(
        "lines",
        json!({ "type": "array", "items": reference("LineInput"), "minItems": 1, "maxItems": LINES_MAX,
                "description": "Reserved at once, all or nothing, as a reservation would be." }),
        "A shipment of lines, reserved as it is made.",
    );
    let s = schemas(doc);
    s.insert("ShipmentFromReservation".into(), from_reservation);
    s.insert("ShipmentFromLines".into(), from_lines);
    s.insert(
        "ShipmentInput".into(),
        json!({
            "description": "The body of `POST .../shipments`: with `reservation_id` or with `lines`, not both.",
            "oneOf": [reference("ShipmentFromReservation"), reference("ShipmentFromLines")]
        }),
    );
}

/// Query parameters: their real types, ranges and enums.
fn parameters(doc: &mut Value) {
    let events = "/v1/brands/{brand}/events";
    query(doc, "get", events, "after", json!({ "type": "string", "pattern": FEED_CURSOR_PATTERN }));
    query(doc, "get", events, "limit", json!({ "type": "integer", "minimum": 1, "maximum": PAGE_LIMIT_MAX, "default": 100 }));
    query(doc, "get", events, "wait", json!({ "type": "integer", "minimum": 0, "maximum": WAIT_SECONDS_MAX, "default": 0 }));

    let deliveries = "/v1/brands/{brand}/webhooks/{id}/deliveries";
    query(doc, "get", deliveries, "status", reference("DeliveryStatus"));
    query(doc, "get", deliveries, "after", json!({ "type": "string", "pattern": SEQ_CURSOR_PATTERN }));
    query(doc, "get", deliveries, "limit", json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 }));

    query(doc, "post", "/v1/brands/{brand}/imports", "kind", reference("ImportKind"));

    let filter = merged(json!({ "type": "string" }), text(0, super::search::FILTER_CHARS_MAX));
    let sku_sorts: Vec<&str> = Sort::ALL.iter().map(|s| s.name()).collect();
    let shipment_sorts: Vec<&str> = ShipmentSort::ALL.iter().map(|s| s.name()).collect();
    for (path, sorts) in [("/v1/search/skus", sku_sorts), ("/v1/search/shipments", shipment_sorts)] {
        // The word limit is counted after normalisation, which no JSON Schema keyword
        // can say; it is stated as an extension.
        let q = json!({ "type": "string", "x-zaiko-words-max": QUERY_TERMS_MAX, "x-zaiko-word-chars-max": TERM_CHARS_MAX });
        query(doc, "get", path, "q", merged(q, text(0, QUERY_CHARS_MAX)));
        query(doc, "get", path, "brand", reference("BrandId"));
        query(doc, "get", path, "sort", json!({ "type": "string", "enum": sorts }));
        query(doc, "get", path, "limit", json!({ "type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": 20 }));
        query(doc, "get", path, "cursor", json!({ "type": "string", "maxLength": CURSOR_BYTES_MAX }));
        query(doc, "get", path, "min_lsn", json!({ "type": "integer", "minimum": 0, "maximum": u64::MAX }));
    }
    let skus = "/v1/search/skus";
    for name in ["category", "color", "size"] {
        query(doc, "get", skus, name, filter.clone());
    }
    query(doc, "get", skus, "group", json!({ "type": "string", "enum": ["product"] }));
    query(doc, "get", skus, "location", reference("Id"));
    query(doc, "get", skus, "channel", reference("Id"));
    query(doc, "get", skus, "in_stock", json!({ "type": "boolean", "default": false }));
    for name in ["price_min", "price_max"] {
        query(doc, "get", skus, name, json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": PRICE_MAX }));
    }
    let shipments = "/v1/search/shipments";
    query(
        doc,
        "get",
        shipments,
        "status",
        json!({ "type": "array", "items": reference("ShipmentStatus"), "maxItems": super::search::STATUSES_GIVEN_MAX }),
    );
    for name in ["created_from", "created_to"] {
        query(doc, "get", shipments, name, reference("Timestamp"));
    }
}

/// Answers: enums and times where the derives see plain strings.
fn answers(doc: &mut Value) {
    let time = reference("Timestamp");
    let optional_time = json!({ "oneOf": [{ "type": "null" }, reference("Timestamp")] });
    limit(doc, "ChangeResultView", "status", json!({ "type": "string", "enum": ["applied", "rejected"] }));
    limit(doc, "TokenCreated", "role", json!({ "type": "string", "enum": ["brand", "viewer"] }));
    limit(doc, "Replaying", "status", json!({ "type": "string", "enum": ["replaying"] }));
    *prop(doc, "SnapshotInfo", "lsn") = json!({ "type": "integer", "format": "int64", "minimum": 0 });
    *prop(doc, "ShipmentHit", "status") = reference("ShipmentStatus");
    for field in ["created_at", "updated_at"] {
        *prop(doc, "ShipmentHit", field) = time.clone();
    }
    *prop(doc, "DeliveryView", "type") = reference("FeedEventType");
    for field in ["next_attempt_at", "last_attempt_at"] {
        *prop(doc, "DeliveryView", field) = optional_time.clone();
    }
    *prop(doc, "WebhookView", "events") = json!({ "type": "array", "items": reference("FeedEventType") });
    limit(doc, "WebhookView", "secret", json!({ "description": "`whsec_` and the base64 key: only in the answer that created it." }));
    limit(doc, "EventPage", "events", json!({ "items": reference("FeedEvent") }));
    let s = schemas(doc);
    s.remove("u64");
}

/// `FeedEvent`: one envelope per event type, a union discriminated on `type`.
fn feed_events(doc: &mut Value) {
    let s = schemas(doc);
    let mut mapping = Map::new();
    let mut one_of = Vec::new();
    for (kind, data, envelope) in EVENT_TYPES {
        s.insert(
            envelope.into(),
            json!({
                "type": "object",
                "description": format!("A `{kind}` event."),
                "required": ["id", "seq", "type", "at", "data"],
                "properties": {
                    "id": { "type": "string", "description": "Unique and stable: the `webhook-id` of its deliveries." },
                    "seq": { "type": "integer", "format": "int64", "minimum": 1, "description": "Per brand, increasing by one in commit order." },
                    "type": { "type": "string", "const": kind },
                    "at": reference("Timestamp"),
                    "data": reference(data),
                }
            }),
        );
        mapping.insert(kind.into(), json!(format!("#/components/schemas/{envelope}")));
        one_of.push(reference(envelope));
    }
    s.insert(
        "FeedEvent".into(),
        json!({
            "description": "One event of the change feed, and the body of a webhook delivery: `data` depends on `type`.",
            "oneOf": one_of,
            "discriminator": { "propertyName": "type", "mapping": mapping }
        }),
    );
}
