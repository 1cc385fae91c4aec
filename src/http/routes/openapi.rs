//! `GET /openapi.json`: the OpenAPI 3.1 description of the API, generated from the
//! handlers' `#[utoipa::path]` annotations and the `ToSchema` types they name.
//!
//! What every operation shares is added here once, by [`Conventions`], instead of on
//! each handler: the bearer scheme, the `Idempotency-Key` header on writes, and the
//! problem responses that any request of its kind can get (bad input, auth, rate limit,
//! overload). Handlers declare only their own successes and specific conflicts.

use std::sync::LazyLock;

use actix_web::{web, HttpResponse};
use utoipa::openapi::path::{HttpMethod, Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::domain::error::{FieldError, Shortage};
use crate::domain::ErrorCode;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi_json));
}

/// Rendered once: the document is a function of the code.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| document().to_pretty_json().expect("the OpenAPI document serialises"));

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(DOCUMENT.as_str())
}

/// The document, for tests and tools.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "zaiko",
        description = "Inventory and fulfilment sync: stock, reservations, shipments, channels, inbound stock, \
                       the change feed, webhooks, imports and search. Every 2xx answer to a write is durable; \
                       every error is `application/problem+json` with a `code` (see the `Problem` schema).",
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
        super::admin::advance_clock,
        super::admin::create_snapshot,
        super::admin::list_snapshots,
        super::catalog::put_sku,
        super::catalog::get_sku,
        super::catalog::delete_sku,
        super::stock::get_stock,
        super::stock::post_changes,
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
    ),
    components(schemas(Problem)),
    modifiers(&Conventions),
    tags(
        (name = "health", description = "Liveness, readiness, metrics."),
        (name = "admin", description = "Brands, tokens, locations, snapshots (admin token)."),
        (name = "catalog", description = "SKUs of a brand."),
        (name = "stock", description = "Stock levels and changes."),
        (name = "fulfilment", description = "Reservations and shipments."),
        (name = "channels", description = "Sales channels and inbound notices."),
        (name = "integration", description = "Change feed, webhooks, imports."),
        (name = "search", description = "Full-text search of SKUs and shipments."),
    )
)]
struct ApiDoc;

/// An RFC 9457 problem: the body of every non-2xx answer.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: the server renders problems in `http::problem`
pub(super) struct Problem {
    /// `/problems/<code>`.
    #[schema(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    /// What went wrong and what to do next.
    detail: String,
    code: ErrorCode,
    /// With `invalid_request`: each offending field (`changes[3].delta`, `query.limit`, ...).
    errors: Option<Vec<FieldError>>,
    /// With `insufficient_stock`: what could not be covered.
    shortages: Option<Vec<Shortage>>,
    /// With a 503 from `/readyz`: each background worker and its state.
    workers: Option<std::collections::BTreeMap<String, crate::health::WorkerState>>,
    /// With `cursor_history_changed`: the cursor to follow the feed from once the
    /// stock has been read again.
    next: Option<String>,
}

// Answers the handlers assemble themselves (lists, small acknowledgements): their
// shapes, for the document only.

/// `GET /v1/brands`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct BrandList {
    brands: Vec<crate::domain::view::BrandView>,
}

/// `GET /v1/locations`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct LocationList {
    locations: Vec<crate::domain::view::LocationView>,
}

/// `POST /v1/admin/clock`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ClockNow {
    now: crate::domain::Timestamp,
}

/// `GET /v1/admin/snapshots`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct SnapshotList {
    snapshots: Vec<crate::snapshot::SnapshotInfo>,
}

/// `GET /v1/brands/{brand}/channels`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ChannelList {
    channels: Vec<crate::domain::view::ChannelView>,
}

/// `GET /v1/brands/{brand}/webhooks`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct WebhookList {
    webhooks: Vec<crate::domain::webhook::WebhookView>,
}

/// `GET .../webhooks/{id}/deliveries`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct DeliveryList {
    deliveries: Vec<crate::webhooks::store::DeliveryView>,
    /// Pass as `after` for the next page.
    next: String,
}

/// `POST .../webhooks/{id}/redrive`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct Redriven {
    requeued: u64,
}

/// `POST .../webhooks/{id}/replay`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct Replaying {
    /// `replaying`.
    status: String,
    after_seq: u64,
}

/// One event of the change feed (and the body of a webhook delivery).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct FeedEvent {
    /// Unique and stable: the webhook-id of its deliveries.
    id: String,
    /// Per brand, increasing by one in commit order.
    seq: u64,
    /// `stock.changed`, `sku.upserted`, `reservation.created`, `shipment.status_changed`, ...
    #[schema(rename = "type")]
    kind: String,
    at: crate::domain::Timestamp,
    /// The event's fields (see the contract for each type); never personal data.
    data: serde_json::Value,
}

/// `GET /v1/brands/{brand}/events`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct EventPage {
    events: Vec<FeedEvent>,
    /// Pass as `after` for the next page.
    next: String,
}

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
    "/v1/admin/clock",
    "/v1/admin/snapshots",
    "/v1/brands/{brand}/webhooks/{id}/redrive",
    "/v1/brands/{brand}/webhooks/{id}/replay",
];

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
    let mut problems: Vec<(&str, &str)> = vec![
        ("400", "`invalid_request`: a bad id, query parameter, header or body; `errors` names each field."),
        ("401", "`unauthorized`: no token, or an unknown or revoked one."),
        ("403", "`forbidden`: the token may not do this (another brand's, or a viewer writing)."),
        ("429", "`rate_limited`: the brand's request rate is over its limit; retry after `Retry-After` seconds."),
        ("503", "`overloaded` or `not_ready`: retry after `Retry-After` seconds; nothing was changed."),
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

    /// Every route the server registers is described, with the same method.
    #[test]
    fn every_registered_route_is_in_the_document() {
        let doc = document();
        let src = concat!(
            include_str!("admin.rs"),
            include_str!("catalog.rs"),
            include_str!("channels.rs"),
            include_str!("feed.rs"),
            include_str!("fulfilment.rs"),
            include_str!("health.rs"),
            include_str!("imports.rs"),
            include_str!("metrics.rs"),
            include_str!("search.rs"),
            include_str!("stock.rs"),
            include_str!("webhooks.rs"),
        );
        let mut routes = 0;
        for (i, _) in src.match_indices(".route(\"") {
            let rest = &src[i + 8..];
            let path = &rest[..rest.find('"').unwrap()];
            let method = rest.split("web::").nth(1).unwrap().split("()").next().unwrap();
            let item = doc.paths.paths.get(path).unwrap_or_else(|| panic!("{path} is not in /openapi.json"));
            let op = match method {
                "get" => item.get.as_ref(),
                "post" => item.post.as_ref(),
                "put" => item.put.as_ref(),
                "delete" => item.delete.as_ref(),
                other => panic!("unexpected method {other}"),
            };
            assert!(op.is_some(), "{} {path} is not in /openapi.json", method.to_uppercase());
            routes += 1;
        }
        assert_eq!(routes, 43, "the route count changed: check this test still scans every routes file");
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_reference_resolves() {
        let json = serde_json::to_value(document()).unwrap();
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
}
