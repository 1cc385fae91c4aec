//! `GET /openapi.json`: the OpenAPI 3.1 description of the API, generated from the
//! handlers' `#[utoipa::path]` annotations and the `ToSchema` types they name.
//!
//! What every operation shares is added here once, by [`Conventions`], instead of on
//! each handler: the bearer scheme, the `Idempotency-Key` header on writes, the
//! `X-Zaiko-Lsn` header of durable answers, and the problem responses that any request
//! of its kind can get (bad input, auth, rate limit, overload). Handlers declare only
//! their own successes and specific conflicts. What the derives cannot say — every
//! limit the server checks, one schema per stock-change `op`, the feed's events as a
//! union on `type` — `openapi_refine` writes into the document from the same constants
//! the server checks with.
//!
//! Not in the document: `POST /v1/admin/clock`, the test hook of `--manual-clock`.

use std::sync::LazyLock;

use actix_web::{web, HttpResponse};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi_json));
}

/// Rendered once: the document is a function of the code.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| serde_json::to_string_pretty(&document()).expect("the OpenAPI document serialises"));

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(DOCUMENT.as_str())
}

/// The document as served, for tests and tools.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises");
    super::openapi_refine::refine(&mut doc);
    doc
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "zaiko",
        description = "Inventory and fulfilment sync: stock, reservations, shipments, channels, inbound stock, \
                       the change feed, webhooks, imports and search. Every 2xx answer to a write is durable and \
                       carries `X-Zaiko-Lsn`, its position in the journal (pass it as `min_lsn` to search to read \
                       your write); every error is `application/problem+json` with a `code` (see the `Problem` schema).",
        license(name = "Proprietary")
    ),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::metrics::metrics,
        super::admin::create_brand,
        super::admin::list_brands,
        super::admin::get_brand,
        super::admin::create_brand_token,
        super::admin::create_token,
        super::admin::revoke_token,
        super::admin::list_locations,
        super::admin::put_location,
        super::admin::create_snapshot,
        super::admin::list_snapshots,
        super::admin::cluster_status,
        super::admin::drain_node,
        super::admin::undrain_node,
        super::catalog::put_sku,
        super::catalog::get_sku,
        super::catalog::delete_sku,
        super::stock::get_stock,
        super::stock::post_changes,
        super::history::sku_history,
        super::fulfilment::reserve,
        super::fulfilment::get_reservation,
        super::fulfilment::release,
        super::fulfilment::ship,
        super::fulfilment::get_shipment,
        super::fulfilment::set_status,
        super::channels::list_channels,
        super::channels::put_channel,
        super::channels::create_inbound,
        super::channels::get_inbound,
        super::channels::receive,
        super::channels::close,
        super::transfers::create,
        super::transfers::get,
        super::transfers::ship,
        super::transfers::receive,
        super::transfers::close,
        super::transfers::cancel,
        super::returns::create,
        super::returns::get,
        super::returns::in_transit,
        super::returns::receive,
        super::returns::close,
        super::returns::cancel,
        super::alerts::put_thresholds,
        super::alerts::get_thresholds,
        super::feed::events,
        super::webhooks::create,
        super::webhooks::list,
        super::webhooks::delete,
        super::webhooks::deliveries,
        super::webhooks::redrive,
        super::webhooks::replay,
        super::imports::create,
        super::imports::get,
        super::imports::cancel,
        super::search::search_skus,
        super::search::search_shipments,
        super::search::search_labels,
    ),
    components(schemas(
        super::schemas::Problem,
        super::schemas::FeedEventType,
        super::event_types::BrandCreatedData,
        super::event_types::SkuUpsertedData,
        super::event_types::SkuDeletedData,
        super::event_types::StockChangedData,
        super::event_types::ReservationEndedData,
        super::event_types::ShipmentCreatedData,
        super::event_types::ShipmentStatusChangedData,
        super::event_types::ChannelUpsertedData,
        super::event_types::ChannelAvailabilityChangedData,
        super::event_types::InboundReceivedData,
        super::event_types::InboundClosedData,
        super::event_types::TransferStatusData,
        super::event_types::TransferReceivedData,
        super::event_types::TransferClosedData,
        super::event_types::ReturnStatusData,
        super::event_types::ReturnReceivedData,
        super::event_types::StockAlertData,
        crate::domain::view::ReturnView,
        crate::domain::view::ReservationView,
        crate::domain::view::InboundView,
        crate::domain::view::TransferView,
    )),
    modifiers(&Conventions),
    tags(
        (name = "health", description = "Liveness, readiness, metrics (no token)."),
        (name = "admin", description = "Brands, tokens, locations, snapshots (admin token)."),
        (name = "catalog", description = "The SKUs of a brand."),
        (name = "stock", description = "Stock levels and changes."),
        (name = "reservations", description = "Holds on stock for a channel, until shipped, released or expired."),
        (name = "shipments", description = "Shipments and their status, from a reservation or from lines."),
        (name = "channels", description = "Where a brand sells, and what each channel may sell."),
        (name = "inbound", description = "Stock on its way to a location (入荷予定) and its receipts."),
        (name = "low-stock", description = "Thresholds per channel, and the `stock.low` / `stock.out` / `stock.back` events they cause."),
        (name = "returns", description = "Goods sent back from a shipment (返品), inspected into restock, unsellable or missing."),
        (name = "transfers", description = "Stock moved between two locations (移動): shipped, in transit, received, closed."),
        (name = "feed", description = "The change feed: every change of a brand, in commit order, by cursor."),
        (name = "webhooks", description = "Feed events pushed to the brand's endpoints (Standard Webhooks)."),
        (name = "imports", description = "Bulk CSV or NDJSON files applied as background jobs."),
        (name = "search", description = "Full-text search of SKUs and shipments."),
    )
)]
struct ApiDoc;

/// The conventions every operation follows, applied to the whole document.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Put, item.put.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    conventions(path, method, op);
                }
            }
        }
    }
}

/// POSTs that check an `Idempotency-Key` but do not replay answers: a token's secret
/// is never stored, so its creation cannot be answered twice; the others are safe to
/// repeat as they are.
const NOT_IDEMPOTENT: &[&str] = &[
    "/v1/tokens",
    "/v1/brands/{brand}/tokens",
    "/v1/admin/snapshots",
    "/v1/brands/{brand}/webhooks/{id}/redrive",
    "/v1/brands/{brand}/webhooks/{id}/replay",
];

/// Writes whose answer is not a journal record, so it carries no `X-Zaiko-Lsn`: a
/// snapshot (its body has its `lsn`), and redrive and replay (delivery state lives in
/// `webhooks.sqlite`, not in the journal).
const NO_LSN: &[&str] = &["/v1/admin/snapshots", "/v1/brands/{brand}/webhooks/{id}/redrive", "/v1/brands/{brand}/webhooks/{id}/replay"];

/// Paths served without a token.
const PUBLIC: &[&str] = &["/healthz", "/readyz", "/metrics"];

fn conventions(path: &str, method: HttpMethod, op: &mut Operation) {
    if PUBLIC.contains(&path) {
        return;
    }
    op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    let writes = !matches!(method, HttpMethod::Get);
    let has_body = op.request_body.is_some();
    if writes && matches!(method, HttpMethod::Post) {
        let required = path == "/v1/brands/{brand}/stock/changes";
        let honoured = !NOT_IDEMPOTENT.contains(&path);
        let header = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(if required { Required::True } else { Required::False })
            .description(Some(if honoured {
                "1..=255 visible ASCII characters. The same key with the same request answers the first answer \
                 again (nothing re-applied) for 24 h; with another request: 422 `idempotency_key_reused`."
            } else {
                "Checked (1..=255 visible ASCII characters) but not honoured by this operation: see its description."
            }))
            .schema(Some(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some("^[\\x21-\\x7e]+$")),
            ))
            .build();
        op.parameters.get_or_insert_with(Vec::new).push(header);
    }
    if writes && !NO_LSN.contains(&path) {
        for (status, response) in op.responses.responses.iter_mut() {
            if let (true, utoipa::openapi::RefOr::T(response)) = (status.starts_with('2'), response) {
                response.headers.insert("X-Zaiko-Lsn".to_string(), lsn_header());
            }
        }
    }
    let mut problems: Vec<(&str, &str)> = vec![
        ("400", "`invalid_request`: a bad id, query parameter, header or body; `errors` names each field."),
        ("401", "`unauthorized`: no token, or an unknown or revoked one."),
        ("403", "`forbidden`: the token may not do this (another brand's, or a viewer writing)."),
        ("429", "`rate_limited`: the brand's request rate is over its limit; retry after `Retry-After` seconds."),
        ("503", "`overloaded` or `not_ready`: retry after `Retry-After` seconds; nothing was changed."),
        ("414", "`uri_too_long`: the path and query string are over 8 KiB; nothing was read past them."),
        ("431", "`headers_too_large`: the request head is over 32 KiB or 64 header fields."),
    ];
    if path.contains('{') {
        problems.push(("404", "`not_found`: the brand or the object does not exist."));
    }
    if has_body || writes {
        problems.push((
            "413",
            "`payload_too_large`: the body is over the limit (nothing was read past it), or the change would take a journal \
             record over `--wal-record-bytes-max` (nothing was changed; send fewer items).",
        ));
    }
    if writes {
        problems.push(("409", "`idempotency_in_progress` (and the operation's own conflicts)."));
        problems.push(("422", "`idempotency_key_reused` (and the operation's own)."));
    }
    for (status, description) in problems {
        if op.responses.responses.contains_key(status) {
            continue;
        }
        op.responses.responses.insert(status.to_string(), problem_response(description).into());
    }
}

/// `X-Zaiko-Lsn`: where the answer is in the journal.
fn lsn_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::Integer).minimum(Some(1)))
        .description(Some(
            "The journal position (LSN) that holds this answer's change, durable before the answer was sent (for an \
             idempotent replay, the first answer's; for a request that changed nothing, the state it saw). Pass it as \
             `min_lsn` to a search to read your write.",
        ))
        .build()
}

/// A problem response with the given description.
pub fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Routes the server registers but the document leaves out: test hooks.
    const UNDOCUMENTED: &[&str] = &["/v1/admin/clock"];

    /// Every route the server registers is described, with the same method (but the
    /// test hooks, which are not).
    #[test]
    fn every_registered_route_is_in_the_document() {
        let doc = document();
        let src = concat!(
            include_str!("admin.rs"),
            include_str!("alerts.rs"),
            include_str!("catalog.rs"),
            include_str!("channels.rs"),
            include_str!("feed.rs"),
            include_str!("fulfilment.rs"),
            include_str!("health.rs"),
            include_str!("history.rs"),
            include_str!("imports.rs"),
            include_str!("metrics.rs"),
            include_str!("returns.rs"),
            include_str!("search.rs"),
            include_str!("stock.rs"),
            include_str!("transfers.rs"),
            include_str!("webhooks.rs"),
        );
        let mut routes = 0;
        for (i, _) in src.match_indices(".route(\"") {
            let rest = &src[i + 8..];
            let path = &rest[..rest.find('"').unwrap()];
            let method = rest.split("web::").nth(1).unwrap().split("()").next().unwrap();
            routes += 1;
            if UNDOCUMENTED.contains(&path) {
                assert!(doc["paths"].get(path).is_none(), "{path} is a test hook: keep it out of /openapi.json");
                continue;
            }
            let item = doc["paths"].get(path).unwrap_or_else(|| panic!("{path} is not in /openapi.json"));
            assert!(item.get(method).is_some(), "{} {path} is not in /openapi.json", method.to_uppercase());
        }
        assert_eq!(routes, 62, "the route count changed: check this test still scans every routes file");
    }

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((method.clone(), path.clone(), op));
            }
        }
        out
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_reference_resolves() {
        let json = document();
        assert!(json["openapi"].as_str().unwrap().starts_with("3.1"));
        let schemas = json["components"]["schemas"].as_object().unwrap();
        let text = json.to_string();
        for (i, _) in text.match_indices("#/components/schemas/") {
            let rest = &text[i + 21..];
            let name = &rest[..rest.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling reference to {name}");
        }
        let stock = &json["paths"]["/v1/brands/{brand}/stock/changes"]["post"];
        let key = stock["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "Idempotency-Key").unwrap();
        assert_eq!(key["required"], true);
        assert_eq!(stock["responses"]["429"]["content"]["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem");
    }

    /// Generators name functions and modules after these: each operation has its own
    /// id and one resource tag.
    #[test]
    fn operation_ids_are_unique_and_every_operation_has_one_tag() {
        let doc = document();
        let mut seen = std::collections::BTreeSet::new();
        let tags: Vec<&str> = doc["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        for (method, path, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(seen.insert(id.to_string()), "operationId {id} is used twice");
            let op_tags = op["tags"].as_array().unwrap();
            assert_eq!(op_tags.len(), 1, "{method} {path}");
            assert!(tags.contains(&op_tags[0].as_str().unwrap()), "{method} {path}: tag {} is not declared", op_tags[0]);
        }
    }

    /// Query parameters have their real types, never a bare string where the server
    /// reads a number, a flag, a time or one of a set.
    #[test]
    fn query_parameters_are_typed() {
        let doc = document();
        let types = |path: &str, method: &str| -> Vec<(String, Value)> {
            doc["paths"][path][method]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| (p["name"].as_str().unwrap().to_string(), p["schema"].clone()))
                .collect()
        };
        let skus = types("/v1/search/skus", "get");
        let get = |ps: &[(String, Value)], name: &str| ps.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(get(&skus, "limit")["type"], "integer");
        assert_eq!(get(&skus, "limit")["maximum"], 100);
        assert_eq!(get(&skus, "in_stock")["type"], "boolean");
        assert_eq!(get(&skus, "min_lsn")["type"], "integer");
        assert_eq!(get(&skus, "sort")["enum"].as_array().unwrap().len(), 5);
        let shipments = types("/v1/search/shipments", "get");
        assert_eq!(get(&shipments, "status")["items"]["$ref"], "#/components/schemas/ShipmentStatus");
        assert_eq!(get(&shipments, "created_from")["$ref"], "#/components/schemas/Timestamp");
        let events = types("/v1/brands/{brand}/events", "get");
        assert_eq!(get(&events, "wait")["maximum"], 30);
        let kind = types("/v1/brands/{brand}/imports", "post");
        assert_eq!(get(&kind, "kind")["$ref"], "#/components/schemas/ImportKind");
    }

    /// Checks `value` against `schema` for what the document uses: `$ref`, `type`
    /// (one or several), `enum`, `const`, `properties`, `required`,
    /// `additionalProperties`, `items`, `oneOf` and `format: date-time`.
    fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.trim_start_matches("#/components/schemas/");
            return conforms(doc, &doc["components"]["schemas"][name], value, at);
        }
        if let Some(options) = schema["oneOf"].as_array() {
            let matching = options.iter().filter(|o| conforms(doc, o, value, at).is_ok()).count();
            return if matching == 1 { Ok(()) } else { Err(format!("{at}: {matching} of oneOf match {value}")) };
        }
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let typed = types.is_empty() || types.contains(&kind) || (kind == "integer" && types.contains(&"number"));
        if !typed {
            return Err(format!("{at}: {kind} is not {types:?}"));
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(value) {
                return Err(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        if schema.get("const").is_some_and(|c| c != value) {
            return Err(format!("{at}: {value} is not {}", schema["const"]));
        }
        if schema["format"] == "date-time" && value.as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_err()) {
            return Err(format!("{at}: {value} is not a date-time"));
        }
        if let Value::Object(fields) = value {
            for required in schema["required"].as_array().into_iter().flatten() {
                if !fields.contains_key(required.as_str().unwrap()) {
                    return Err(format!("{at}: {required} is missing"));
                }
            }
            for (name, v) in fields {
                let field = format!("{at}.{name}");
                match (schema["properties"].get(name), schema.get("additionalProperties")) {
                    (Some(s), _) => conforms(doc, s, v, &field)?,
                    (None, Some(Value::Bool(false))) | (None, None) if schema.get("properties").is_some() => {
                        return Err(format!("{field} is not in the schema"))
                    }
                    (None, Some(s)) if s.is_object() => conforms(doc, s, v, &field)?,
                    _ => {}
                }
            }
        }
        if let Value::Array(items) = value {
            for (i, v) in items.iter().enumerate() {
                conforms(doc, &schema["items"], v, &format!("{at}[{i}]"))?;
            }
        }
        Ok(())
    }

    /// One event of every type the feed carries, as `feed::render` writes it.
    fn one_event_of_each_type() -> Vec<crate::domain::event::Event> {
        use crate::domain::alerts::Band;
        use crate::domain::catalog::Catalog;
        use crate::domain::channel::{Channel, Inbound, InboundLine, InboundStatus};
        use crate::domain::event::{Cause, Event};
        use crate::domain::fulfilment::{Allocation, Reservation, ReservationStatus, ShipTo, Shipment, ShipmentSource, ShipmentStatus};
        use crate::domain::stock::{Level, Levels, StockOp};
        use crate::domain::{Id, Timestamp};
        let id = |s: &str| Id::parse(s).unwrap();
        let at = Timestamp(1_796_000_000_000);
        let lines = vec![Allocation { sku: id("S1"), location: id("tsukuba"), quantity: 2 }];
        let catalog = Catalog {
            name: "シャツ".into(),
            color: Some("navy".into()),
            price: Some(3990),
            tags: Box::new(["cotton".into()]),
            attributes: vec![("material".into(), "cotton".into())],
            ..Catalog::default()
        };
        let reservation = Reservation {
            id: id("R1"),
            channel: id("ec"),
            status: ReservationStatus::Active,
            ttl_seconds: 600,
            requested: Vec::new(),
            lines: lines.clone(),
            created_at: at,
            expires_at: at.plus_seconds(600),
            ended_at: None,
            shipment_id: None,
        };
        let ship_to =
            ShipTo { name: "山田".into(), postal_code: "1".into(), prefecture: "東京都".into(), address: "1".into(), phone: None };
        let shipment = Shipment {
            id: id("SH1"),
            order_ref: Some("EC-1".into()),
            channel: None,
            source: ShipmentSource::Reservation(id("R1")),
            lines,
            ship_to,
            status: ShipmentStatus::Accepted,
            history: Vec::new(),
            tracking_number: None,
            carrier: None,
            created_at: at,
            updated_at: at,
        };
        let channel = Channel { id: id("ec"), name: "EC".into(), locations: None, buffer: 1, created_at: at, updated_at: at };
        let inbound = Inbound {
            id: id("IN1"),
            location: id("tsukuba"),
            expected_at: Some(at),
            status: InboundStatus::Expected,
            lines: vec![InboundLine { sku: id("S1"), expected: 5, received: 0 }],
            created_at: at,
            updated_at: at,
        };
        let levels =
            Levels(Box::new([(id("tsukuba"), Level { on_hand: 10, reserved: 2, safety_stock: 1, incoming: 0, ..Level::default() })]));
        vec![
            Event::BrandCreated { name: "ブランド".into() },
            Event::SkuUpserted { sku: id("S1"), catalog, version: 1 },
            Event::SkuDeleted { sku: id("S1") },
            Event::StockChanged {
                sku: id("S1"),
                version: 2,
                levels: levels.clone(),
                channels: vec![(id("ec"), 7)],
                cause: Cause::Change { op: StockOp::Adjust { delta: -1 }, reason: Some("sold".into()) },
            },
            Event::StockChanged { sku: id("S1"), version: 3, levels, channels: Vec::new(), cause: Cause::Reserved { id: id("R1") } },
            Event::ReservationCreated { reservation: Box::new(reservation) },
            Event::ReservationReleased { id: id("R1") },
            Event::ReservationExpired { id: id("R1") },
            Event::ShipmentCreated { shipment: Box::new(shipment) },
            Event::ShipmentStatusChanged {
                id: id("SH1"),
                status: ShipmentStatus::Shipped,
                tracking_number: Some("1".into()),
                carrier: None,
            },
            Event::ChannelUpserted { channel: Box::new(channel) },
            Event::ChannelSynced { channel: id("ec"), skus: vec![(id("S1"), 7)], after: None },
            Event::InboundCreated { inbound: Box::new(inbound) },
            Event::InboundReceived { id: id("IN1"), lines: vec![(id("S1"), 5)] },
            Event::InboundClosed { id: id("IN1") },
            Event::TransferCreated {
                transfer: Box::new(crate::domain::transfer::Transfer {
                    id: id("T1"),
                    origin: id("tsukuba"),
                    destination: id("shibuya"),
                    status: crate::domain::transfer::TransferStatus::Draft,
                    lines: vec![crate::domain::transfer::TransferLine { sku: id("S1"), quantity: 3, received: 0, written_off: 0 }],
                    created_at: at,
                    updated_at: at,
                }),
            },
            Event::TransferShipped { id: id("T1") },
            Event::TransferReceived { id: id("T1"), lines: vec![(id("S1"), 2)] },
            Event::TransferClosed { id: id("T1"), written_off: vec![(id("S1"), 1)] },
            Event::TransferCancelled { id: id("T2") },
            Event::ReturnCreated {
                ret: Box::new(crate::domain::returns::Return {
                    id: id("RT1"),
                    shipment_id: id("SH1"),
                    reason: "size".into(),
                    status: crate::domain::returns::ReturnStatus::Requested,
                    lines: vec![crate::domain::returns::ReturnLine { sku: id("S1"), quantity: 2, restocked: 0, unsellable: 0, missing: 0 }],
                    created_at: at,
                    updated_at: at,
                }),
            },
            Event::ReturnInTransit { id: id("RT1") },
            Event::ReturnReceived {
                id: id("RT1"),
                lines: vec![
                    crate::domain::returns::ReceiptLine {
                        sku: id("S1"),
                        quantity: 1,
                        disposition: crate::domain::returns::Disposition::Restock,
                        location: Some(id("tsukuba")),
                    },
                    crate::domain::returns::ReceiptLine {
                        sku: id("S1"),
                        quantity: 1,
                        disposition: crate::domain::returns::Disposition::Missing,
                        location: None,
                    },
                ],
            },
            Event::ReturnClosed { id: id("RT1") },
            Event::ReturnCancelled { id: id("RT2") },
            Event::StockAlert { sku: id("S1"), channel: id("ec"), band: Band::Low, available: 2, threshold: 5 },
            Event::StockAlert { sku: id("S1"), channel: id("ec"), band: Band::Out, available: 0, threshold: 5 },
            Event::StockAlert { sku: id("S1"), channel: id("ec"), band: Band::Ok, available: 9, threshold: 5 },
        ]
    }

    /// The feed's events as the document describes them (`FeedEvent`, a union on
    /// `type`, with each type's `data`) are what `feed::render` writes, for every type.
    #[test]
    fn every_event_type_renders_as_documented() {
        use crate::feed::render::{event_json, render, FEED_TYPES};
        let doc = document();
        let mut seen = std::collections::BTreeSet::new();
        for event in one_event_of_each_type() {
            let r = render(&event).expect("a feed event");
            let json = event_json("evt_9_0", 9, r.kind, "2026-11-28T09:00:00.000Z", &r.data);
            let value: Value = serde_json::from_str(&json).unwrap();
            conforms(&doc, &serde_json::json!({"$ref": "#/components/schemas/FeedEvent"}), &value, r.kind).unwrap();
            seen.insert(r.kind);
        }
        assert_eq!(seen.len(), FEED_TYPES.len(), "one event of each type: {seen:?}");
        // And a field the document does not have is caught.
        let mut extra: Value =
            serde_json::from_str(&event_json("evt_9_0", 9, "sku.deleted", "2026-11-28T09:00:00.000Z", r#"{"sku":"S1","x":1}"#)).unwrap();
        assert!(conforms(&doc, &serde_json::json!({"$ref": "#/components/schemas/FeedEvent"}), &extra, "extra").is_err());
        extra["data"] = serde_json::json!({"sku": "S1"});
        assert!(conforms(&doc, &serde_json::json!({"$ref": "#/components/schemas/FeedEvent"}), &extra, "ok").is_ok());
    }

    /// A page of a SKU's history as `feed::history` writes it — a first change (delta
    /// against nothing), a change of an import, one whose previous change is gone (null
    /// delta) — is what the document describes (`HistoryPage`).
    #[test]
    fn a_sku_history_page_renders_as_documented() {
        use crate::domain::event::{Cause, Event};
        use crate::domain::stock::{Level, Levels, StockOp};
        use crate::domain::{BrandId, Id, Timestamp};
        use crate::feed::history::{read, Order};
        use crate::feed::store::{open_reader, Batch, NewEvent, Retention, Store};
        use crate::journal::history::History;
        let id = |s: &str| Id::parse(s).unwrap();
        let changed = |lsn: u64, version: u64, cause: Cause| {
            let levels =
                Levels(Box::new([(id("tsukuba"), Level { on_hand: version as i64, reserved: 1, incoming: 2, ..Level::default() })]));
            let ev = Event::StockChanged { sku: id("S1"), version, levels, channels: vec![(id("ec"), 1)], cause };
            NewEvent::of(&BrandId::parse("b1").unwrap(), lsn, 0, Timestamp(1_796_000_000_000), &ev).unwrap()
        };
        let mut imported = changed(2, 2, Cause::Change { op: StockOp::Set { on_hand: 2 }, reason: Some("棚卸".into()) });
        imported.import = Some(id("imp_1"));
        let events = vec![changed(1, 1, Cause::Reserved { id: id("R1") }), imported, changed(3, 5, Cause::Shipped { id: id("SH1") })];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.sqlite");
        let keep = Retention { max_age_ms: i64::MAX / 2, max_events_per_brand: u64::MAX / 2 };
        let first = History { id: crate::journal::history::HistoryId(1), ..History::initial(crate::journal::history::Cause::New) };
        Store::open(&path, keep, &first, &[]).unwrap().commit(&Batch { events, last_lsn: 3, ..Batch::default() }).unwrap();
        let got = read(&mut open_reader(&path).unwrap(), "b1", &id("S1"), None, Order::OldestFirst, 10).unwrap().unwrap();
        let page: Value = serde_json::from_str(&format!(r#"{{"sku":"S1","changes":[{}],"next":"3"}}"#, got.changes.join(","))).unwrap();
        assert_eq!(page["changes"].as_array().unwrap().len(), 3);
        assert!(page["changes"][2]["delta"].is_null() && page["changes"][1]["cause"]["import"] == "imp_1", "{page}");
        let doc = document();
        conforms(&doc, &serde_json::json!({"$ref": "#/components/schemas/HistoryPage"}), &page, "history").unwrap();
        let mut extra = page.clone();
        extra["changes"][0]["cause"]["x"] = Value::from(1);
        assert!(conforms(&doc, &serde_json::json!({"$ref": "#/components/schemas/HistoryPage"}), &extra, "extra").is_err());
        let params = &doc["paths"]["/v1/brands/{brand}/skus/{sku}/history"]["get"]["parameters"];
        let limit = params.as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["schema"]["maximum"], crate::feed::history::LIMIT_MAX as u64);
    }

    /// Every write answered from the journal documents `X-Zaiko-Lsn` on its 2xx.
    #[test]
    fn durable_answers_document_their_lsn() {
        let doc = document();
        let mut checked = 0;
        for (method, path, op) in operations(&doc) {
            if method == "get" || NO_LSN.contains(&path.as_str()) {
                continue;
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('2') {
                    assert!(response["headers"]["X-Zaiko-Lsn"].is_object(), "{method} {path} {status}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 20, "{checked}");
    }
}
