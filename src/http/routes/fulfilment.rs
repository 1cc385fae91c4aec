//! Reservations and shipments.

use actix_web::{web, HttpRequest, HttpResponse};
use compact_str::CompactString;
use serde::Deserialize;

use crate::actors::shard::BrandCmd;
use crate::domain::fulfilment::{
    LineRequest, ReserveCmd, ShipCmd, ShipTo, ShipmentSource, ShipmentStatus, StatusCmd, LINES_MAX, TTL_SECONDS_DEFAULT, TTL_SECONDS_MAX,
};
use crate::domain::text::check_text;
use crate::domain::{FieldError, Id};
use crate::http::extract::{check_line_set, id, idem_key, idempotency_key, Access, Caller, JsonBody};
use crate::http::problem::Problem;
use crate::http::{ask_brand, ask_brand_action, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/brands/{brand}/reservations", web::post().to(reserve))
        .route("/v1/brands/{brand}/reservations/{id}", web::get().to(get_reservation))
        .route("/v1/brands/{brand}/reservations/{id}/release", web::post().to(release))
        .route("/v1/brands/{brand}/shipments", web::post().to(ship))
        .route("/v1/brands/{brand}/shipments/{id}", web::get().to(get_shipment))
        .route("/v1/brands/{brand}/shipments/{id}/status", web::post().to(set_status));
}

/// A line of a reservation (or of a shipment made from lines).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    sku: Id,
    /// Take it from this location only; without it, from the locations with the most
    /// available first (possibly split).
    location: Option<Id>,
    quantity: i64,
}

/// Checks lines: 1..=100 of them, positive quantities, no SKU twice.
pub fn check_lines(field: &str, lines: Vec<LineInput>, errors: &mut Vec<FieldError>) -> Vec<LineRequest> {
    check_line_set(field, lines.iter().map(|l| (&l.sku, l.quantity)), LINES_MAX, errors);
    lines.into_iter().map(|l| LineRequest { sku: l.sku, location: l.location, quantity: l.quantity }).collect()
}

fn result<T>(value: T, errors: Vec<FieldError>) -> Result<T, Problem> {
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(Problem::invalid_fields(errors))
    }
}

/// The body of `POST .../reservations`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ReservationInput)]
#[serde(deny_unknown_fields)]
struct ReserveInput {
    /// The client's id: the same id and body again returns the reservation.
    id: Id,
    /// The sales channel that takes the stock (its locations and buffer apply).
    channel: Id,
    /// 1..=86400, default 900.
    ttl_seconds: Option<i64>,
    lines: Vec<LineInput>,
}

#[utoipa::path(post, path = "/v1/brands/{brand}/reservations", operation_id = "create_reservation", tag = "reservations", params(("brand" = crate::domain::BrandId, Path, description = "The brand id.")), request_body = ReserveInput, responses(
    (status = 201, description = "Reserved, all lines.", body = crate::domain::view::ReservationView),
    (status = 200, description = "The same id and body again: the existing reservation.", body = crate::domain::view::ReservationView),
    (status = 409, description = "`insufficient_stock` (with `shortages`; nothing held), `already_exists` (same id, other body).", body = super::schemas::Problem, content_type = "application/problem+json"),
    (status = 422, description = "`unknown_channel`: the brand has channels and `channel` is not one of them; `idempotency_key_reused`.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn reserve(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: JsonBody<ReserveInput>,
) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path, Access::Write)?;
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    let input = body.value;
    let mut errors = Vec::new();
    let ttl_seconds = input.ttl_seconds.unwrap_or(TTL_SECONDS_DEFAULT);
    if !(1..=TTL_SECONDS_MAX).contains(&ttl_seconds) {
        errors.push(FieldError::new("ttl_seconds", format!("must be 1..={TTL_SECONDS_MAX}")));
    }
    let lines = check_lines("lines", input.lines, &mut errors);
    let cmd = result(ReserveCmd { id: input.id, channel: input.channel, ttl_seconds, lines }, errors)?;
    ask_brand(&state, brand, BrandCmd::Reserve(cmd), idem).await
}

#[utoipa::path(get, path = "/v1/brands/{brand}/reservations/{id}", operation_id = "get_reservation", tag = "reservations", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The reservation id.")), responses((status = 200, description = "The reservation.", body = crate::domain::view::ReservationView)))]
async fn get_reservation(state: web::Data<AppState>, caller: Caller, path: web::Path<(String, String)>) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path.0, Access::Read)?;
    ask_brand(&state, brand, BrandCmd::GetReservation { id: id("id", &path.1)? }, None).await
}

#[utoipa::path(post, path = "/v1/brands/{brand}/reservations/{id}/release", operation_id = "release_reservation", tag = "reservations", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The reservation id.")), responses(
    (status = 200, description = "Released (or already ended).", body = crate::domain::view::ReservationView),
    (status = 409, description = "`invalid_transition`: the reservation was consumed by a shipment.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn release(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    ask_brand_action(&req, &state, &caller, &path, |id| BrandCmd::Release { id }).await
}

/// Where a shipment goes (personal data: never in the feed, webhooks, logs or search).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ShipTo)]
#[serde(deny_unknown_fields)]
struct ShipToInput {
    name: String,
    postal_code: String,
    prefecture: String,
    address: String,
    phone: Option<String>,
}

/// The body of `POST .../shipments` (in the document: one schema with
/// `reservation_id`, one with `lines`).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ShipmentInput)]
#[serde(deny_unknown_fields)]
struct ShipInput {
    id: Id,
    #[schema(value_type = Option<String>)]
    order_ref: Option<CompactString>,
    channel: Option<Id>,
    reservation_id: Option<Id>,
    lines: Option<Vec<LineInput>>,
    ship_to: ShipToInput,
}

fn ship_command(input: ShipInput) -> Result<ShipCmd, Problem> {
    let mut errors = Vec::new();
    let source = match (input.reservation_id, input.lines) {
        (Some(r), None) => ShipmentSource::Reservation(r),
        (None, Some(lines)) => ShipmentSource::Lines(check_lines("lines", lines, &mut errors)),
        _ => {
            errors.push(FieldError::new("reservation_id", "give exactly one of reservation_id or lines"));
            ShipmentSource::Lines(Vec::new())
        }
    };
    if let Some(o) = &input.order_ref {
        errors.extend(check_text("order_ref", o));
    }
    let t = input.ship_to;
    errors.extend(check_text("ship_to.name", &t.name));
    errors.extend(check_text("ship_to.postal_code", &t.postal_code));
    errors.extend(check_text("ship_to.prefecture", &t.prefecture));
    errors.extend(check_text("ship_to.address", &t.address));
    if let Some(p) = &t.phone {
        errors.extend(check_text("ship_to.phone", p));
    }
    let ship_to = ShipTo { name: t.name, postal_code: t.postal_code, prefecture: t.prefecture, address: t.address, phone: t.phone };
    result(ShipCmd { id: input.id, order_ref: input.order_ref, channel: input.channel, source, ship_to }, errors)
}

#[utoipa::path(post, path = "/v1/brands/{brand}/shipments", operation_id = "create_shipment", tag = "shipments", params(("brand" = crate::domain::BrandId, Path, description = "The brand id.")), request_body = ShipInput, responses(
    (status = 201, description = "The shipment, accepted.", body = crate::domain::view::ShipmentView),
    (status = 200, description = "The same id and body again: the existing shipment.", body = crate::domain::view::ShipmentView),
    (status = 409, description = "`insufficient_stock`, `already_exists`, `invalid_transition` (the reservation is not active).", body = super::schemas::Problem, content_type = "application/problem+json"),
    (status = 422, description = "`unknown_channel`: shipping `lines` for a `channel` the brand has not configured, while it has others; `idempotency_key_reused`.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn ship(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: JsonBody<ShipInput>,
) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path, Access::Write)?;
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    let cmd = ship_command(body.value)?;
    ask_brand(&state, brand, BrandCmd::Ship(cmd), idem).await
}

#[utoipa::path(get, path = "/v1/brands/{brand}/shipments/{id}", operation_id = "get_shipment", tag = "shipments", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The shipment id.")), responses((status = 200, description = "The shipment with its status history.", body = crate::domain::view::ShipmentView)))]
async fn get_shipment(state: web::Data<AppState>, caller: Caller, path: web::Path<(String, String)>) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path.0, Access::Read)?;
    ask_brand(&state, brand, BrandCmd::GetShipment { id: id("id", &path.1)? }, None).await
}

/// The body of `POST .../shipments/{id}/status`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ShipmentStatusInput)]
#[serde(deny_unknown_fields)]
struct StatusInput {
    status: ShipmentStatus,
    #[schema(value_type = Option<String>)]
    tracking_number: Option<CompactString>,
    #[schema(value_type = Option<String>)]
    carrier: Option<CompactString>,
}

#[utoipa::path(post, path = "/v1/brands/{brand}/shipments/{id}/status", operation_id = "set_shipment_status", tag = "shipments", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The shipment id.")), request_body = StatusInput, responses(
    (status = 200, description = "The shipment after the move (unchanged when the status is repeated).", body = crate::domain::view::ShipmentView),
    (status = 409, description = "`invalid_transition`.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn set_status(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: JsonBody<StatusInput>,
) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path.0, Access::Write)?;
    let shipment = id("id", &path.1)?;
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    let input = body.value;
    let cmd = StatusCmd::new(shipment, input.status, input.tracking_number, input.carrier).map_err(Problem::invalid_fields)?;
    ask_brand(&state, brand, BrandCmd::SetStatus(cmd), idem).await
}
