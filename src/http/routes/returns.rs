//! Returns of shipped goods (返品): request, in transit, receipts with dispositions,
//! close, cancel, read.

use actix_web::{web, HttpRequest, HttpResponse};
use compact_str::CompactString;
use serde::Deserialize;

use crate::actors::shard::BrandCmd;
use crate::domain::fulfilment::LINES_MAX;
use crate::domain::returns::{Disposition, ReceiptLine, ReturnCmd};
use crate::domain::stock::QUANTITY_MAX;
use crate::domain::text::check_text;
use crate::domain::{FieldError, Id};
use crate::http::extract::{brand_and_id, check_line_set, idem_key, idempotency_key, Access, Caller, JsonBody};
use crate::http::problem::Problem;
use crate::http::{ask_brand, ask_brand_action, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/brands/{brand}/returns", web::post().to(create))
        .route("/v1/brands/{brand}/returns/{id}", web::get().to(get))
        .route("/v1/brands/{brand}/returns/{id}/in_transit", web::post().to(in_transit))
        .route("/v1/brands/{brand}/returns/{id}/receipts", web::post().to(receive))
        .route("/v1/brands/{brand}/returns/{id}/close", web::post().to(close))
        .route("/v1/brands/{brand}/returns/{id}/cancel", web::post().to(cancel));
}

/// A line of a return: the SKU and how many of it come back.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ReturnLineInput)]
#[serde(deny_unknown_fields)]
struct QtyLine {
    sku: Id,
    quantity: i64,
}

/// The body of `POST .../returns`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReturnInput {
    /// The client's id: the same id and body again returns the return.
    id: Id,
    /// The shipped or delivered shipment the goods come from.
    shipment_id: Id,
    /// Why (1..=200 characters, no control characters).
    #[schema(value_type = String)]
    reason: CompactString,
    lines: Vec<QtyLine>,
}

#[utoipa::path(post, path = "/v1/brands/{brand}/returns", operation_id = "create_return", tag = "returns", params(("brand" = crate::domain::BrandId, Path, description = "The brand id.")), request_body = ReturnInput, responses(
    (status = 201, description = "The return, `requested`.", body = crate::domain::view::ReturnView),
    (status = 200, description = "The same id and body again.", body = crate::domain::view::ReturnView),
    (status = 404, description = "`not_found`: the shipment does not exist.", body = super::schemas::Problem, content_type = "application/problem+json"),
    (status = 409, description = "`already_exists`: the id was used with another body. `invalid_transition`: the shipment has not shipped.", body = super::schemas::Problem, content_type = "application/problem+json"),
    (status = 422, description = "`unprocessable`: the brand has as many open returns as it may (50,000); close or cancel some (and `idempotency_key_reused`).", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: JsonBody<ReturnInput>,
) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path, Access::Write)?;
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    let input = body.value;
    let mut errors: Vec<FieldError> = check_text("reason", &input.reason).into_iter().collect();
    check_line_set("lines", input.lines.iter().map(|l| (&l.sku, l.quantity)), LINES_MAX, &mut errors);
    if !errors.is_empty() {
        return Err(Problem::invalid_fields(errors));
    }
    let lines = input.lines.into_iter().map(|l| (l.sku, l.quantity)).collect();
    let cmd = ReturnCmd { id: input.id, shipment_id: input.shipment_id, reason: input.reason, lines };
    ask_brand(&state, brand, BrandCmd::CreateReturn(cmd), idem).await
}

#[utoipa::path(get, path = "/v1/brands/{brand}/returns/{id}", operation_id = "get_return", tag = "returns", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The return id.")), responses((status = 200, description = "The return, with each line's dispositions and what is still expected.", body = crate::domain::view::ReturnView)))]
async fn get(state: web::Data<AppState>, caller: Caller, path: web::Path<(String, String)>) -> Result<HttpResponse, Problem> {
    let (brand, id) = brand_and_id(&caller, &path, Access::Read)?;
    ask_brand(&state, brand, BrandCmd::GetReturn { id }, None).await
}

#[utoipa::path(post, path = "/v1/brands/{brand}/returns/{id}/in_transit", operation_id = "return_in_transit", tag = "returns", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The return id.")), responses(
    (status = 200, description = "The goods are on their way back (again: the same answer).", body = crate::domain::view::ReturnView),
    (status = 409, description = "`invalid_transition`: the return is past `requested`.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn in_transit(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    ask_brand_action(&req, &state, &caller, &path, |id| BrandCmd::ReturnInTransit { id }).await
}

/// A line of a receipt: `quantity` units of `sku` inspected into `disposition`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ReturnReceiptLineInput)]
#[serde(deny_unknown_fields)]
struct ReceiptLineInput {
    sku: Id,
    quantity: i64,
    disposition: Disposition,
    /// Where the units go: required for `restock` and `unsellable`, absent for `missing`.
    location: Option<Id>,
}

/// The body of `POST .../returns/{id}/receipts`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ReturnReceiptInput)]
#[serde(deny_unknown_fields)]
struct ReceiptInput {
    lines: Vec<ReceiptLineInput>,
}

/// 1..=100 lines (a SKU may appear once per disposition and location), positive
/// quantities, a location exactly where the disposition takes one.
fn check_receipt(lines: Vec<ReceiptLineInput>) -> Result<Vec<ReceiptLine>, Problem> {
    let mut errors = Vec::new();
    if lines.is_empty() || lines.len() > LINES_MAX {
        errors.push(FieldError::new("lines", format!("must hold 1..={LINES_MAX} lines, got {}", lines.len())));
    }
    for (i, l) in lines.iter().enumerate() {
        if !(1..=QUANTITY_MAX).contains(&l.quantity) {
            errors.push(FieldError::new(format!("lines[{i}].quantity"), format!("must be 1..={QUANTITY_MAX}")));
        }
        match (l.disposition, &l.location) {
            (Disposition::Missing, Some(_)) => {
                errors.push(FieldError::new(format!("lines[{i}].location"), "not allowed with missing: nothing arrived"))
            }
            (Disposition::Restock | Disposition::Unsellable, None) => {
                errors.push(FieldError::new(format!("lines[{i}].location"), "required: the location the units go to"))
            }
            _ => {}
        }
        if lines[..i].iter().any(|x| x.sku == l.sku && x.disposition == l.disposition && x.location == l.location) {
            errors.push(FieldError::new(format!("lines[{i}].sku"), "the same sku, disposition and location twice; add the quantities up"));
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid_fields(errors));
    }
    Ok(lines
        .into_iter()
        .map(|l| ReceiptLine { sku: l.sku, quantity: l.quantity, disposition: l.disposition, location: l.location })
        .collect())
}

/// A receipt moves stock: retrying one without an `Idempotency-Key` receives twice (up
/// to what the return still expects), so the key is recommended.
#[utoipa::path(post, path = "/v1/brands/{brand}/returns/{id}/receipts", operation_id = "receive_return", tag = "returns", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The return id.")), request_body = ReceiptInput, responses(
    (status = 200, description = "Received: `restock` raised `on_hand`, `unsellable` the unsellable units at the line's location; `missing` moved nothing.", body = crate::domain::view::ReturnView),
    (status = 409, description = "`invalid_transition`: the return is received, closed or cancelled.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn receive(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: JsonBody<ReceiptInput>,
) -> Result<HttpResponse, Problem> {
    let (brand, id) = brand_and_id(&caller, &path, Access::Write)?;
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    let lines = check_receipt(body.value.lines)?;
    ask_brand(&state, brand, BrandCmd::ReceiveReturn { id, lines }, idem).await
}

#[utoipa::path(post, path = "/v1/brands/{brand}/returns/{id}/close", operation_id = "close_return", tag = "returns", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The return id.")), responses(
    (status = 200, description = "Closed: what was still expected is not coming (no stock moves); again: the same answer.", body = crate::domain::view::ReturnView),
    (status = 409, description = "`invalid_transition`: the return is cancelled.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn close(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    ask_brand_action(&req, &state, &caller, &path, |id| BrandCmd::CloseReturn { id }).await
}

#[utoipa::path(post, path = "/v1/brands/{brand}/returns/{id}/cancel", operation_id = "cancel_return", tag = "returns", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The return id.")), responses(
    (status = 200, description = "Cancelled before anything was received; again: the same answer.", body = crate::domain::view::ReturnView),
    (status = 409, description = "`invalid_transition`: units were already received (close it instead).", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn cancel(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    ask_brand_action(&req, &state, &caller, &path, |id| BrandCmd::CancelReturn { id }).await
}
