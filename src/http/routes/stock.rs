//! Stock routes: read one SKU's stock, and batches of stock changes.

use actix_web::{web, HttpRequest, HttpResponse};
use compact_str::CompactString;
use serde::Deserialize;

use crate::actors::shard::BrandCmd;
use crate::domain::brand::StockChangeCmd;
use crate::domain::stock::{check_reason, StockOp};
use crate::domain::{FieldError, Id};
use crate::http::extract::{brand_id, id, idem_key, idempotency_key, Access, Caller, JsonBody};
use crate::http::problem::Problem;
use crate::http::{ask_brand, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/brands/{brand}/stock/changes", web::post().to(post_changes))
        .route("/v1/brands/{brand}/skus/{sku}/stock", web::get().to(get_stock));
}

#[utoipa::path(get, path = "/v1/brands/{brand}/skus/{sku}/stock", operation_id = "get_stock", tag = "stock", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("sku" = crate::domain::Id, Path, description = "The SKU id.")), responses((status = 200, description = "Levels per location, total, and each channel's availability.", body = crate::domain::view::StockView)))]
async fn get_stock(state: web::Data<AppState>, caller: Caller, path: web::Path<(String, String)>) -> Result<HttpResponse, Problem> {
    let brand = brand_id(&path.0)?;
    caller.require_brand(&brand, Access::Read)?;
    let sku = id("sku", &path.1)?;
    ask_brand(&state, brand, BrandCmd::GetStock { sku }, None).await
}

/// What a stock change does: `adjust` by `delta`, `set` `on_hand`,
/// `set_safety_stock` to `quantity`, or move `quantity` units into `unsellable`
/// (`mark_unsellable`), back out of it (`release_unsellable`) or write them off
/// (`dispose`).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = StockOp)]
#[serde(rename_all = "snake_case")]
enum OpName {
    Adjust,
    Set,
    SetSafetyStock,
    MarkUnsellable,
    ReleaseUnsellable,
    Dispose,
}

/// One change of `POST .../stock/changes` (in the document: one schema per `op`).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = StockChangeInput)]
#[serde(deny_unknown_fields)]
struct ChangeInput {
    sku: Id,
    location: Id,
    op: OpName,
    delta: Option<i64>,
    on_hand: Option<i64>,
    quantity: Option<i64>,
    expected_version: Option<u64>,
    #[schema(value_type = Option<String>)]
    reason: Option<CompactString>,
}

/// The body of `POST .../stock/changes`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = StockChangesInput)]
#[serde(deny_unknown_fields)]
struct ChangesInput {
    changes: Vec<ChangeInput>,
}

/// The change at `changes[i]` as a command, or its problems pushed to `errors`. The
/// API's shape (`op` and the one quantity field it takes) is checked here; the ranges
/// and the reason by [`StockChangeCmd::new`], as for an import row.
fn to_command(i: usize, c: ChangeInput, errors: &mut Vec<FieldError>) -> Option<StockChangeCmd> {
    let at = |e: FieldError| FieldError::new(format!("changes[{i}].{}", e.field), e.detail);
    let (needed, op) = match c.op {
        OpName::Adjust => ("delta", c.delta.map(|delta| StockOp::Adjust { delta })),
        OpName::Set => ("on_hand", c.on_hand.map(|on_hand| StockOp::Set { on_hand })),
        OpName::SetSafetyStock => ("quantity", c.quantity.map(|quantity| StockOp::SetSafetyStock { quantity })),
        OpName::MarkUnsellable => ("quantity", c.quantity.map(|quantity| StockOp::MarkUnsellable { quantity })),
        OpName::ReleaseUnsellable => ("quantity", c.quantity.map(|quantity| StockOp::ReleaseUnsellable { quantity })),
        OpName::Dispose => ("quantity", c.quantity.map(|quantity| StockOp::Dispose { quantity })),
    };
    let mut problems = Vec::new();
    for (name, present) in [("delta", c.delta.is_some()), ("on_hand", c.on_hand.is_some()), ("quantity", c.quantity.is_some())] {
        if name == needed && !present {
            problems.push(FieldError::new(name, "required for this op"));
        } else if name != needed && present {
            problems.push(FieldError::new(name, format!("not allowed with this op (it takes {needed})")));
        }
    }
    let change = match op {
        Some(op) => StockChangeCmd::new(c.sku, c.location, op, c.expected_version, c.reason).map_err(|e| problems.extend(e)).ok(),
        None => {
            problems.extend(check_reason(c.reason.as_deref()));
            None
        }
    };
    if !problems.is_empty() {
        errors.extend(problems.into_iter().map(at));
        return None;
    }
    change
}

#[utoipa::path(post, path = "/v1/brands/{brand}/stock/changes", operation_id = "change_stock", tag = "stock", params(("brand" = crate::domain::BrandId, Path, description = "The brand id.")), request_body = ChangesInput, responses(
    (status = 200, description = "Each change applied or rejected (`version_conflict`, `insufficient_stock`, `not_found`), in order; the applied ones are durable.", body = crate::domain::view::ChangeResultsView),
))]
async fn post_changes(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: JsonBody<ChangesInput>,
) -> Result<HttpResponse, Problem> {
    let brand = brand_id(&path)?;
    caller.require_brand(&brand, Access::Write)?;
    let key = idempotency_key(&req)?.ok_or_else(|| {
        Problem::invalid("header.idempotency-key", "required: send a unique Idempotency-Key so a retry cannot apply the changes twice")
    })?;
    let idem = idem_key(&req, Some(key), &body.bytes);
    let max = state.limits.changes_max;
    let n = body.value.changes.len();
    if n == 0 || n > max {
        return Err(Problem::invalid("changes", format!("must hold 1..={max} changes, got {n}")));
    }
    let mut errors = Vec::new();
    let changes: Vec<_> = body.value.changes.into_iter().enumerate().filter_map(|(i, c)| to_command(i, c, &mut errors)).collect();
    if !errors.is_empty() {
        return Err(Problem::invalid_fields(errors));
    }
    ask_brand(&state, brand, BrandCmd::StockChanges { changes }, idem).await
}
