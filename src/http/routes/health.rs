//! Liveness and readiness.
//!
//! `/readyz` is 200 once recovery is done, and stays 200 while a background worker
//! retries after an error (`"status": "degraded"`, the worker's error in `workers`):
//! writes and reads still work, and what the worker derives catches up by itself. It
//! is 503 while recovering or loading demo data, while the journal disk is full, and
//! when a worker has stopped (only a restart brings it back). See `crate::health`.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::domain::ErrorCode;
use crate::health::{self, WorkerState};
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

/// Whether every background worker is `ok`.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    /// Every worker is `ok`.
    Ready,
    /// A worker retries after an error; the node still serves requests.
    Degraded,
}

/// The answer of `/readyz` when ready.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub status: ReadyStatus,
    /// Each background worker (`indexer`, `feed`, `webhooks`, `snapshots`, `imports`)
    /// and its state.
    pub workers: BTreeMap<String, WorkerState>,
}

/// 200 once recovery is done and the journal accepts writes, with the state of every
/// background worker.
#[utoipa::path(get, path = "/readyz", operation_id = "get_readiness", tag = "health", responses(
    (status = 200, description = "Recovery is done and writes are accepted; `degraded` while a background worker retries after an error.", body = Readiness),
    (status = 503, description = "`not_ready` while recovering, loading demo data, or when a background worker has stopped (restart the server; the problem's `workers` says which); `overloaded` while the disk is full.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    let svc = state.services()?;
    if state.loading_demo.load(std::sync::atomic::Ordering::Acquire) {
        return Err(Problem::new(ErrorCode::NotReady, "the demo data is still loading; retry shortly"));
    }
    if svc.cluster.as_ref().is_some_and(|n| !n.registry_ready()) {
        return Err(Problem::new(
            ErrorCode::NotReady,
            "this cluster node is still reading the registry (tokens, locations); retry shortly",
        ));
    }
    let reports = health::global().reports();
    let workers = || serde_json::to_value(health::by_name(&reports)).expect("worker states serialise");
    if svc.local.as_ref().is_some_and(|l| l.journal.disk_full()) {
        return Err(Problem::overloaded("the journal disk is full; writes are refused until space is freed")
            .with_retry_after(5)
            .with_extension("workers", workers()));
    }
    let stopped: Vec<&str> = reports.iter().filter(|r| matches!(r.state, WorkerState::Stopped { .. })).map(|r| r.worker.name()).collect();
    if !stopped.is_empty() {
        return Err(Problem::new(
            ErrorCode::NotReady,
            format!("background worker stopped: {}; restart the server (the log says why it stopped)", stopped.join(", ")),
        )
        .with_extension("workers", workers()));
    }
    let status = if reports.iter().all(|r| r.healthy()) { ReadyStatus::Ready } else { ReadyStatus::Degraded };
    let workers = reports.iter().map(|r| (r.worker.name().to_string(), r.state.clone())).collect();
    Ok(HttpResponse::Ok().json(Readiness { status, workers }))
}
