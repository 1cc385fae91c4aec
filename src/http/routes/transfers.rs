//! Transfers of stock between two locations (移動): create, ship, receive, close,
//! cancel, read.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::actors::shard::BrandCmd;
use crate::domain::transfer::TransferCmd;
use crate::domain::Id;
use crate::http::extract::{brand_and_id, idem_key, idempotency_key, qty_lines, Access, Caller, JsonBody};
use crate::http::problem::Problem;
use crate::http::{ask_brand, ask_brand_action, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/brands/{brand}/transfers", web::post().to(create))
        .route("/v1/brands/{brand}/transfers/{id}", web::get().to(get))
        .route("/v1/brands/{brand}/transfers/{id}/ship", web::post().to(ship))
        .route("/v1/brands/{brand}/transfers/{id}/receipts", web::post().to(receive))
        .route("/v1/brands/{brand}/transfers/{id}/close", web::post().to(close))
        .route("/v1/brands/{brand}/transfers/{id}/cancel", web::post().to(cancel));
}

/// A line of a transfer or of its receipt.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = TransferLineInput)]
#[serde(deny_unknown_fields)]
struct QtyLine {
    sku: Id,
    quantity: i64,
}

/// 1..=100 lines, positive quantities, each SKU once.
fn check_qty_lines(lines: Vec<QtyLine>) -> Result<Vec<(Id, i64)>, Problem> {
    qty_lines(lines.into_iter().map(|l| (l.sku, l.quantity)).collect())
}

/// The body of `POST .../transfers`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TransferInput {
    /// The client's id: the same id and body again returns the transfer.
    id: Id,
    /// The location the units leave.
    origin: Id,
    /// The location they go to (not the origin).
    destination: Id,
    lines: Vec<QtyLine>,
}

#[utoipa::path(post, path = "/v1/brands/{brand}/transfers", operation_id = "create_transfer", tag = "transfers", params(("brand" = crate::domain::BrandId, Path, description = "The brand id.")), request_body = TransferInput, responses(
    (status = 201, description = "The transfer, a `draft`: nothing has moved yet.", body = crate::domain::view::TransferView),
    (status = 200, description = "The same id and body again.", body = crate::domain::view::TransferView),
    (status = 404, description = "`not_found`: a SKU or location does not exist.", body = super::schemas::Problem, content_type = "application/problem+json"),
    (status = 409, description = "`already_exists`: the id was used with another body.", body = super::schemas::Problem, content_type = "application/problem+json"),
    (status = 422, description = "`unprocessable`: the brand has as many open transfers as it may (10,000); close or cancel some (and `idempotency_key_reused`).", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: JsonBody<TransferInput>,
) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path, Access::Write)?;
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    let input = body.value;
    if input.origin == input.destination {
        return Err(Problem::invalid("destination", "must differ from origin"));
    }
    let lines = check_qty_lines(input.lines)?;
    let cmd = TransferCmd { id: input.id, origin: input.origin, destination: input.destination, lines };
    ask_brand(&state, brand, BrandCmd::CreateTransfer(cmd), idem).await
}

#[utoipa::path(get, path = "/v1/brands/{brand}/transfers/{id}", operation_id = "get_transfer", tag = "transfers", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The transfer id.")), responses((status = 200, description = "The transfer, with what each line sent, received, wrote off and still has in transit.", body = crate::domain::view::TransferView)))]
async fn get(state: web::Data<AppState>, caller: Caller, path: web::Path<(String, String)>) -> Result<HttpResponse, Problem> {
    let (brand, id) = brand_and_id(&caller, &path, Access::Read)?;
    ask_brand(&state, brand, BrandCmd::GetTransfer { id }, None).await
}

#[utoipa::path(post, path = "/v1/brands/{brand}/transfers/{id}/ship", operation_id = "ship_transfer", tag = "transfers", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The transfer id.")), responses(
    (status = 200, description = "Shipped: the units left the origin's `on_hand` and are `in_transit` at the destination (shipping again: the same answer).", body = crate::domain::view::TransferView),
    (status = 409, description = "`insufficient_stock` (with `shortages`): the origin's available units, after reservations and safety stock, do not cover a line; nothing moved. `invalid_transition`: the transfer is not a draft.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn ship(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    ask_brand_action(&req, &state, &caller, &path, |id| BrandCmd::ShipTransfer { id }).await
}

/// The body of `POST .../transfers/{id}/receipts`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = TransferReceiptInput)]
#[serde(deny_unknown_fields)]
struct ReceiptInput {
    lines: Vec<QtyLine>,
}

/// A receipt moves stock: retrying one without an `Idempotency-Key` receives twice
/// (up to what is still in transit), so the key is recommended.
#[utoipa::path(post, path = "/v1/brands/{brand}/transfers/{id}/receipts", operation_id = "receive_transfer", tag = "transfers", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The transfer id.")), request_body = ReceiptInput, responses(
    (status = 200, description = "Received: the quantities moved from `in_transit` to `on_hand` at the destination.", body = crate::domain::view::TransferView),
    (status = 409, description = "`invalid_transition`: not shipped yet, or already received, closed or cancelled.", body = super::schemas::Problem, content_type = "application/problem+json"),
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
    let lines = check_qty_lines(body.value.lines)?;
    ask_brand(&state, brand, BrandCmd::ReceiveTransfer { id, lines }, idem).await
}

#[utoipa::path(post, path = "/v1/brands/{brand}/transfers/{id}/close", operation_id = "close_transfer", tag = "transfers", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The transfer id.")), responses(
    (status = 200, description = "Closed: what was still in transit is written off (`transfer.closed` names it); closing again: the same answer.", body = crate::domain::view::TransferView),
    (status = 409, description = "`invalid_transition`: a draft (cancel it) or a cancelled transfer.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn close(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    ask_brand_action(&req, &state, &caller, &path, |id| BrandCmd::CloseTransfer { id }).await
}

#[utoipa::path(post, path = "/v1/brands/{brand}/transfers/{id}/cancel", operation_id = "cancel_transfer", tag = "transfers", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The transfer id.")), responses(
    (status = 200, description = "Cancelled: a draft ends, nothing moved; cancelling again: the same answer.", body = crate::domain::view::TransferView),
    (status = 409, description = "`invalid_transition`: the transfer was shipped (close it instead).", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn cancel(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    ask_brand_action(&req, &state, &caller, &path, |id| BrandCmd::CancelTransfer { id }).await
}
