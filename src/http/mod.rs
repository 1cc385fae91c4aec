//! The REST API (actix-web): routing, auth, request parsing, problem responses.
//!
//! Architecture invariant: only this module knows about HTTP — status codes, headers,
//! routes. Handlers parse and check the request, send one message to an actor, and
//! wait for the durability of what the actor answered before answering.

pub mod extract;
pub mod problem;
pub mod routes;

use std::sync::{Arc, OnceLock};

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use crate::actors::registry::{AuthTable, RegistryCmd, RegistryMsg};
use crate::actors::shard::{BrandCmd, BrandMsg};
use crate::actors::{Gated, IdemKey, Reply, Router};
use crate::clock::SharedClock;
use crate::domain::idempotency::Status;
use crate::domain::BrandId;
use crate::journal::{Journal, Lsn};
use problem::Problem;

/// Request limits. Each is a named bound with a documented default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest JSON body accepted (413 past it).
    pub body_bytes_max: usize,
    /// Most changes in one `stock/changes` request.
    pub changes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { body_bytes_max: 1 << 20, changes_max: 1000 }
    }
}

/// What handlers need once recovery is done.
pub struct Services {
    pub router: Router,
    pub journal: Journal,
    pub clock: SharedClock,
    /// The change feed, webhooks and imports.
    pub integrations: crate::integration::Integrations,
}

/// Shared by all handlers. `services` is set once recovery has finished; until then
/// everything but the health checks answers `not_ready`.
pub struct AppState {
    pub services: OnceLock<Services>,
    pub auth: Arc<ArcSwap<AuthTable>>,
    pub limits: Limits,
    /// Set while `--demo` data is still loading: `/readyz` says 503 until it is in.
    pub loading_demo: std::sync::atomic::AtomicBool,
}

impl AppState {
    pub fn services(&self) -> Result<&Services, Problem> {
        self.services.get().ok_or_else(Problem::not_ready)
    }
}

fn mailbox_full() -> Problem {
    Problem::overloaded("the server is at capacity; nothing was changed; retry after the Retry-After delay")
}

/// Sends a command to the brand's shard and answers with what it decided, once durable.
pub async fn ask_brand(state: &AppState, brand: BrandId, cmd: BrandCmd, idem: Option<IdemKey>) -> Result<HttpResponse, Problem> {
    let svc = state.services()?;
    let (reply, rx) = oneshot::channel();
    svc.router.shard_for(&brand).try_send(BrandMsg { brand, cmd, idem, reply }).map_err(|_| mailbox_full())?;
    finish(svc, rx).await
}

/// Sends a command to the registry and answers with what it decided, once durable.
pub async fn ask_registry(state: &AppState, cmd: RegistryCmd, idem: Option<IdemKey>) -> Result<HttpResponse, Problem> {
    let svc = state.services()?;
    let (reply, rx) = oneshot::channel();
    svc.router.registry.try_send(RegistryMsg { cmd, idem, reply }).map_err(|_| mailbox_full())?;
    finish(svc, rx).await
}

/// The output gate: waits until the answer's LSN is durable, then renders it.
async fn finish(svc: &Services, rx: oneshot::Receiver<Gated>) -> Result<HttpResponse, Problem> {
    let gated = rx.await.map_err(|_| Problem::overloaded("the actor for this request stopped; retry shortly"))?;
    gated_response(svc, gated).await
}

pub async fn gated_response(svc: &Services, gated: Gated) -> Result<HttpResponse, Problem> {
    let (_, reply) = durable(svc, gated).await?;
    Ok(reply_response(reply))
}

/// Waits until the answer's LSN is durable; then the answer (or its rejection) stands.
async fn durable(svc: &Services, gated: Gated) -> Result<(Lsn, Reply), Problem> {
    svc.journal
        .wait_durable(gated.wait_lsn)
        .await
        .map_err(|_| Problem::overloaded("the journal stopped before this change was durable; it was not applied"))?;
    Ok((gated.wait_lsn, gated.result?))
}

/// Like [`ask_brand`], but hands back the actor's answer (once durable) and the LSN
/// it waited for, for handlers that do more than render it.
pub async fn ask_brand_reply(state: &AppState, brand: BrandId, cmd: BrandCmd, idem: Option<IdemKey>) -> Result<(Lsn, Reply), Problem> {
    let svc = state.services()?;
    let (reply, rx) = oneshot::channel();
    svc.router.shard_for(&brand).try_send(BrandMsg { brand, cmd, idem, reply }).map_err(|_| mailbox_full())?;
    let gated = rx.await.map_err(|_| Problem::overloaded("the actor for this request stopped; retry shortly"))?;
    durable(svc, gated).await
}

/// The HTTP response of a successful answer.
pub fn reply_response(reply: Reply) -> HttpResponse {
    let mut res = HttpResponse::build(match reply.status {
        Status::Ok => actix_web::http::StatusCode::OK,
        Status::Created => actix_web::http::StatusCode::CREATED,
        Status::Accepted => actix_web::http::StatusCode::ACCEPTED,
        Status::NoContent => actix_web::http::StatusCode::NO_CONTENT,
    });
    if let Some(lsn) = reply.lsn {
        res.insert_header(("X-Zaiko-Lsn", lsn.to_string()));
    }
    if reply.status == Status::NoContent {
        return res.finish();
    }
    res.insert_header((header::CONTENT_TYPE, "application/json")).body(reply.body)
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
}
