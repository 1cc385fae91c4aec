//! SKU catalog routes.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::actors::shard::BrandCmd;
use crate::domain::catalog::{Catalog, SkuInput};
use crate::http::extract::{brand_id, id, idem_key, idempotency_key, Access, Caller, JsonBody};
use crate::http::problem::Problem;
use crate::http::{ask_brand, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/brands/{brand}/skus/{sku}", web::put().to(put_sku))
        .route("/v1/brands/{brand}/skus/{sku}", web::get().to(get_sku))
        .route("/v1/brands/{brand}/skus/{sku}", web::delete().to(delete_sku));
}

#[utoipa::path(put, path = "/v1/brands/{brand}/skus/{sku}", operation_id = "put_sku", tag = "catalog", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("sku" = crate::domain::Id, Path, description = "The SKU id.")), request_body = SkuInput, responses(
    (status = 200, description = "Updated.", body = crate::domain::view::SkuView),
    (status = 201, description = "Created.", body = crate::domain::view::SkuView),
))]
async fn put_sku(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: JsonBody<SkuInput>,
) -> Result<HttpResponse, Problem> {
    let brand = brand_id(&path.0)?;
    caller.require_brand(&brand, Access::Write)?;
    let sku = id("sku", &path.1)?;
    let catalog = Catalog::new(body.value).map_err(Problem::invalid_fields)?;
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    ask_brand(&state, brand, BrandCmd::PutSku { sku, catalog }, idem).await
}

#[utoipa::path(get, path = "/v1/brands/{brand}/skus/{sku}", operation_id = "get_sku", tag = "catalog", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("sku" = crate::domain::Id, Path, description = "The SKU id.")), responses((status = 200, description = "The SKU with its stock.", body = crate::domain::view::SkuView)))]
async fn get_sku(state: web::Data<AppState>, caller: Caller, path: web::Path<(String, String)>) -> Result<HttpResponse, Problem> {
    let brand = brand_id(&path.0)?;
    caller.require_brand(&brand, Access::Read)?;
    let sku = id("sku", &path.1)?;
    ask_brand(&state, brand, BrandCmd::GetSku { sku }, None).await
}

#[utoipa::path(delete, path = "/v1/brands/{brand}/skus/{sku}", operation_id = "delete_sku", tag = "catalog", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("sku" = crate::domain::Id, Path, description = "The SKU id.")), responses(
    (status = 204, description = "Deleted."),
    (status = 409, description = "`invalid_transition`: stock is still on hand or reserved.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn delete_sku(state: web::Data<AppState>, caller: Caller, path: web::Path<(String, String)>) -> Result<HttpResponse, Problem> {
    let brand = brand_id(&path.0)?;
    caller.require_brand(&brand, Access::Write)?;
    let sku = id("sku", &path.1)?;
    ask_brand(&state, brand, BrandCmd::DeleteSku { sku }, None).await
}
