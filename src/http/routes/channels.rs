//! Channels (where a brand sells) and inbound stock (入荷予定).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::actors::shard::BrandCmd;
use crate::domain::channel::{check_channel_name, ChannelCmd, InboundCmd};
use crate::domain::{Id, Timestamp};
use crate::http::extract::{id, idem_key, idempotency_key, qty_lines, Access, Caller, JsonBody};
use crate::http::problem::Problem;
use crate::http::{ask_brand, ask_brand_action, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/brands/{brand}/channels", web::get().to(list_channels))
        .route("/v1/brands/{brand}/channels/{channel}", web::put().to(put_channel))
        .route("/v1/brands/{brand}/inbounds", web::post().to(create_inbound))
        .route("/v1/brands/{brand}/inbounds/{id}", web::get().to(get_inbound))
        .route("/v1/brands/{brand}/inbounds/{id}/receipts", web::post().to(receive))
        .route("/v1/brands/{brand}/inbounds/{id}/close", web::post().to(close));
}

/// The body of `PUT .../channels/{channel}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChannelInput {
    /// 1..=200 characters, no control characters.
    name: String,
    /// The locations the channel sells from (1..=256); absent or `null`: all.
    locations: Option<Vec<Id>>,
    /// Units per SKU held back from this channel (default 0).
    #[serde(default)]
    buffer: i64,
}

#[utoipa::path(put, path = "/v1/brands/{brand}/channels/{channel}", operation_id = "put_channel", tag = "channels", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("channel" = crate::domain::Id, Path, description = "The channel id.")), request_body = ChannelInput, responses(
    (status = 200, description = "Updated; availability events stream for the SKUs it moved.", body = crate::domain::view::ChannelView),
    (status = 201, description = "Created.", body = crate::domain::view::ChannelView),
))]
async fn put_channel(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: JsonBody<ChannelInput>,
) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path.0, Access::Write)?;
    let channel = id("channel", &path.1)?;
    if let Some(e) = check_channel_name(&body.value.name) {
        return Err(Problem::invalid_fields(vec![e]));
    }
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    let ChannelInput { name, locations, buffer } = body.value;
    ask_brand(&state, brand, BrandCmd::PutChannel(ChannelCmd { id: channel, name, locations, buffer }), idem).await
}

#[utoipa::path(get, path = "/v1/brands/{brand}/channels", operation_id = "list_channels", tag = "channels", params(("brand" = crate::domain::BrandId, Path, description = "The brand id.")), responses((status = 200, description = "The brand's channels.", body = super::schemas::ChannelList)))]
async fn list_channels(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path, Access::Read)?;
    ask_brand(&state, brand, BrandCmd::ListChannels, None).await
}

/// A line of an inbound notice or receipt.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = InboundLineInput)]
#[serde(deny_unknown_fields)]
struct QtyLine {
    sku: Id,
    quantity: i64,
}

/// 1..=100 lines, positive quantities, each SKU once.
fn check_qty_lines(lines: Vec<QtyLine>) -> Result<Vec<(Id, i64)>, Problem> {
    qty_lines(lines.into_iter().map(|l| (l.sku, l.quantity)).collect())
}

/// The body of `POST .../inbounds`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InboundInput {
    /// The client's id: the same id and body again returns the notice.
    id: Id,
    /// The location the stock is coming to.
    location: Id,
    /// When it is expected (RFC 3339).
    #[schema(value_type = Option<crate::domain::Timestamp>)]
    expected_at: Option<String>,
    lines: Vec<QtyLine>,
}

#[utoipa::path(post, path = "/v1/brands/{brand}/inbounds", operation_id = "create_inbound", tag = "inbound", params(("brand" = crate::domain::BrandId, Path, description = "The brand id.")), request_body = InboundInput, responses(
    (status = 201, description = "The inbound notice; `incoming` is raised.", body = crate::domain::view::InboundView),
    (status = 200, description = "The same id and body again.", body = crate::domain::view::InboundView),
    (status = 409, description = "`already_exists`.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn create_inbound(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: JsonBody<InboundInput>,
) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path, Access::Write)?;
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    let input = body.value;
    let expected_at = match &input.expected_at {
        None => None,
        Some(t) => Some(
            Timestamp::parse_rfc3339(t)
                .ok_or_else(|| Problem::invalid("expected_at", "must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"))?,
        ),
    };
    let lines = check_qty_lines(input.lines)?;
    ask_brand(&state, brand, BrandCmd::CreateInbound(InboundCmd { id: input.id, location: input.location, expected_at, lines }), idem).await
}

#[utoipa::path(get, path = "/v1/brands/{brand}/inbounds/{id}", operation_id = "get_inbound", tag = "inbound", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The inbound id.")), responses((status = 200, description = "The inbound notice.", body = crate::domain::view::InboundView)))]
async fn get_inbound(state: web::Data<AppState>, caller: Caller, path: web::Path<(String, String)>) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path.0, Access::Read)?;
    ask_brand(&state, brand, BrandCmd::GetInbound { id: id("id", &path.1)? }, None).await
}

/// The body of `POST .../inbounds/{id}/receipts`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReceiptInput {
    lines: Vec<QtyLine>,
}

/// A receipt moves stock: retrying one without an `Idempotency-Key` receives twice, so
/// the key is recommended (and replayed when given).
#[utoipa::path(post, path = "/v1/brands/{brand}/inbounds/{id}/receipts", operation_id = "receive_inbound", tag = "inbound", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The inbound id.")), request_body = ReceiptInput, responses(
    (status = 200, description = "Received: `incoming` moved to `on_hand` (over-receipt counted).", body = crate::domain::view::InboundView),
    (status = 409, description = "`invalid_transition`: the notice is closed.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn receive(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: JsonBody<ReceiptInput>,
) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path.0, Access::Write)?;
    let inbound = id("id", &path.1)?;
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    let lines = check_qty_lines(body.value.lines)?;
    ask_brand(&state, brand, BrandCmd::Receive { id: inbound, lines }, idem).await
}

#[utoipa::path(post, path = "/v1/brands/{brand}/inbounds/{id}/close", operation_id = "close_inbound", tag = "inbound", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The inbound id.")), responses((status = 200, description = "Closed: what was still expected is dropped from `incoming`.", body = crate::domain::view::InboundView)))]
async fn close(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    ask_brand_action(&req, &state, &caller, &path, |id| BrandCmd::CloseInbound { id }).await
}
