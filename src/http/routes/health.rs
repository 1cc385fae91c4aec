//! Liveness and readiness.

use actix_web::{web, HttpResponse};

use crate::http::problem::Problem;
use crate::http::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz)).route("/readyz", web::get().to(readyz));
}

/// 200 while the process lives.
#[utoipa::path(get, path = "/healthz", operation_id = "get_liveness", tag = "health", responses((status = 200, description = "The process is alive.", body = String, content_type = "text/plain")))]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// 200 once recovery is done and the journal accepts writes.
#[utoipa::path(get, path = "/readyz", operation_id = "get_readiness", tag = "health", responses(
    (status = 200, description = "Recovery is done and writes are accepted.", body = String, content_type = "text/plain"),
    (status = 503, description = "`not_ready` while recovering or loading demo data; `overloaded` while the disk is full.", body = super::openapi::Problem, content_type = "application/problem+json"),
))]
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    let svc = state.services()?;
    if state.loading_demo.load(std::sync::atomic::Ordering::Acquire) {
        return Err(Problem::new(crate::domain::ErrorCode::NotReady, "the demo data is still loading; retry shortly"));
    }
    if svc.journal.disk_full() {
        return Err(Problem::overloaded("the journal disk is full; writes are refused until space is freed").with_retry_after(5));
    }
    Ok(HttpResponse::Ok().content_type("text/plain").body("ready"))
}
