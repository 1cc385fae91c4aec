//! Low-stock thresholds per channel: what makes `stock.low`, `stock.out` and
//! `stock.back` events.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::actors::shard::BrandCmd;
use crate::domain::alerts::{Thresholds, THRESHOLD_SKUS_MAX};
use crate::domain::stock::QUANTITY_MAX;
use crate::domain::{FieldError, Id};
use crate::http::extract::{id, idem_key, idempotency_key, Access, Caller, JsonBody};
use crate::http::problem::Problem;
use crate::http::{ask_brand, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/brands/{brand}/low-stock/{channel}", web::put().to(put_thresholds))
        .route("/v1/brands/{brand}/low-stock/{channel}", web::get().to(get_thresholds));
}

/// One SKU's own threshold.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = SkuThresholdInput)]
#[serde(deny_unknown_fields)]
struct SkuThreshold {
    sku: Id,
    threshold: i64,
}

/// The body of `PUT .../low-stock/{channel}`: replaces the channel's thresholds.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ThresholdsInput {
    /// For every SKU without its own (1..=10^12); absent or `null`: only the listed
    /// SKUs alert.
    default: Option<i64>,
    /// At most 1000, each SKU once.
    #[serde(default)]
    skus: Vec<SkuThreshold>,
}

fn check(input: ThresholdsInput) -> Result<Thresholds, Problem> {
    let mut errors = Vec::new();
    let range = |t: i64| (1..=QUANTITY_MAX).contains(&t);
    if input.default.is_some_and(|t| !range(t)) {
        errors.push(FieldError::new("default", format!("must be 1..={QUANTITY_MAX}")));
    }
    if input.skus.len() > THRESHOLD_SKUS_MAX {
        errors.push(FieldError::new("skus", format!("must hold at most {THRESHOLD_SKUS_MAX} SKUs, got {}", input.skus.len())));
    }
    let mut skus = BTreeMap::new();
    for (i, s) in input.skus.into_iter().enumerate() {
        if !range(s.threshold) {
            errors.push(FieldError::new(format!("skus[{i}].threshold"), format!("must be 1..={QUANTITY_MAX}")));
        }
        if skus.insert(s.sku, s.threshold).is_some() {
            errors.push(FieldError::new(format!("skus[{i}].sku"), "the same sku may not appear twice"));
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid_fields(errors));
    }
    Ok(Thresholds { default: input.default, skus })
}

#[utoipa::path(put, path = "/v1/brands/{brand}/low-stock/{channel}", operation_id = "put_low_stock", tag = "low-stock", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("channel" = crate::domain::Id, Path, description = "A configured channel.")), request_body = ThresholdsInput, responses(
    (status = 200, description = "The channel's thresholds, replaced. An SKU's availability to the channel crossing below its threshold makes `stock.low`, reaching zero `stock.out`, and coming back to the threshold `stock.back` — once per crossing, from the next change of the SKU on.", body = crate::domain::view::ThresholdsView),
    (status = 422, description = "`unknown_channel`: the channel is not configured.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn put_thresholds(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: JsonBody<ThresholdsInput>,
) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path.0, Access::Write)?;
    let channel = id("channel", &path.1)?;
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    let thresholds = check(body.value)?;
    ask_brand(&state, brand, BrandCmd::PutThresholds { channel, thresholds }, idem).await
}

#[utoipa::path(get, path = "/v1/brands/{brand}/low-stock/{channel}", operation_id = "get_low_stock", tag = "low-stock", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("channel" = crate::domain::Id, Path, description = "A configured channel.")), responses(
    (status = 200, description = "The channel's thresholds.", body = crate::domain::view::ThresholdsView),
    (status = 422, description = "`unknown_channel`: the channel is not configured.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn get_thresholds(state: web::Data<AppState>, caller: Caller, path: web::Path<(String, String)>) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path.0, Access::Read)?;
    let channel = id("channel", &path.1)?;
    ask_brand(&state, brand, BrandCmd::GetThresholds { channel }, None).await
}
