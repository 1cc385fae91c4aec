//! The REST API (actix-web): routing, auth, request parsing, problem responses.
//!
//! Architecture invariant: only this module knows about HTTP — status codes, headers,
//! routes. Handlers parse and check the request, send one message to an actor, and
//! wait for the durability of what the actor answered before answering.

mod canonical;
pub mod cluster;
pub mod extract;
mod guard;
pub mod problem;
pub mod routes;
pub mod server;

use std::sync::{Arc, OnceLock};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use crate::actors::registry::{AuthTable, RegistryCmd, RegistryMsg};
use crate::actors::shard::{BrandCmd, BrandMsg};
use crate::actors::{Gated, IdemKey, Reply, Router, Unsettled};
use crate::clock::SharedClock;
use crate::config::Limits;
use crate::domain::idempotency::Status;
use crate::domain::BrandId;
use crate::journal::{Journal, Lsn};
use problem::Problem;

/// Longest a request waits for its change to become durable before it answers 503.
/// Far above any healthy fsync; it bounds what a stalled disk can hold open.
pub const DURABLE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The per-brand rate limiter: a token bucket per brand id (GCRA, `governor`).
pub type BrandLimiter = governor::DefaultKeyedRateLimiter<BrandId>;

pub fn brand_limiter(limits: &Limits) -> BrandLimiter {
    let rps = std::num::NonZeroU32::new(limits.brand_rps.max(1)).expect("non-zero");
    let burst = std::num::NonZeroU32::new(limits.brand_burst.max(limits.brand_rps).max(1)).expect("non-zero");
    governor::RateLimiter::keyed(governor::Quota::per_second(rps).allow_burst(burst))
}

/// Authenticates the request once (the `Caller` extractor reuses the result) and
/// refuses it with 429 and `Retry-After` when a brand's tokens exceed the brand's
/// request rate: one brand's sale cannot starve the others. Admin and viewer traffic is
/// not counted against any brand.
fn authenticate_and_limit(req: &actix_web::dev::ServiceRequest) -> Result<(), Problem> {
    use actix_web::HttpMessage;
    let principal = extract::authenticate(req.request());
    let limited_brand = match &principal {
        Ok(crate::actors::registry::Principal::Brand(b)) => Some(b.clone()),
        _ => None,
    };
    req.extensions_mut().insert(extract::Authenticated(principal));
    if let (Some(brand), Some(state)) = (limited_brand, req.app_data::<web::Data<AppState>>()) {
        if let Err(not_until) = state.limiter.check_key(&brand) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            return Err(Problem::new(
                crate::domain::ErrorCode::RateLimited,
                format!("brand {brand} is over its request rate; retry after the Retry-After delay"),
            )
            .with_retry_after(wait.as_secs().max(1)));
        }
    }
    Ok(())
}

/// A token this node does not know is refused (401) only once the node knows every
/// token there is: not while it is still starting (503 `not_ready`), and in cluster
/// mode only after catching up with the registry's journal — a token created through
/// another node a moment ago may not have reached this node yet (503 if it cannot
/// catch up in time).
async fn confirm_unknown_token(req: &actix_web::dev::ServiceRequest) -> Result<(), Problem> {
    let Some(svc) = req.app_data::<web::Data<AppState>>().and_then(|s| s.services.get()) else {
        return Err(Problem::new(crate::domain::ErrorCode::NotReady, "the server is starting; retry shortly").with_retry_after(1));
    };
    let Some(node) = &svc.cluster else { return Ok(()) };
    if !node.catch_up_registry(REGISTRY_CATCH_UP_MAX).await {
        return Err(Problem::new(
            crate::domain::ErrorCode::PartitionUnavailable,
            "this node could not read the registry's newest tokens in time; retry after the Retry-After delay",
        ));
    }
    // The follower hands what it applied to the registry actor, which publishes the
    // tokens: wait until it has handled all of it, then look again.
    let _ = svc.router.registry.send(crate::actors::registry::Settle).await;
    authenticate_and_limit(req)
}

/// Whether the request carries a token this node does not know (after
/// [`authenticate_and_limit`] recorded who the caller is).
fn token_unknown(req: &actix_web::dev::ServiceRequest) -> bool {
    use actix_web::HttpMessage;
    req.headers().contains_key(header::AUTHORIZATION)
        && req
            .extensions()
            .get::<extract::Authenticated>()
            .is_some_and(|a| a.0.as_ref().is_err_and(|p| p.code == crate::domain::ErrorCode::Unauthorized))
}

/// What handlers need once recovery is done.
pub struct Services {
    pub router: Router,
    pub clock: SharedClock,
    /// What only the single node has (every route serves cluster mode from
    /// `cluster`, `cluster_integrations` and `cluster_search` instead).
    pub local: Option<Local>,
    /// Cluster mode: this node's view of partitions and owners.
    pub cluster: Option<crate::cluster::node::Node>,
    /// Cluster mode: the change feed of every partition built on this node, and the
    /// delivery of the webhooks of the partitions it owns.
    pub cluster_integrations: Option<crate::integration::ClusterIntegrations>,
    /// Cluster mode: the search index of the partitions this node owns.
    pub cluster_search: Option<ClusterSearch>,
}

/// Cluster mode: this node's search indexes, which hold the partitions it owns
/// (`routes::search` forwards a brand's search to its owner and gathers the others).
#[derive(Clone)]
pub struct ClusterSearch {
    pub skus: Arc<crate::index::SkuIndex>,
    pub shipments: Arc<crate::index::ShipmentIndex>,
    /// Per partition, the LSN the index covers (published after each complete cycle).
    pub covered: tokio::sync::watch::Receiver<Arc<crate::index::indexer::PartitionMarks>>,
    /// The partitions installed here now.
    pub installed: crate::actors::host::Installed,
    pub wake: Arc<crate::index::indexer::Wake>,
}

impl ClusterSearch {
    /// The partitions this node's index answers for now: installed here and indexed
    /// whole since they arrived.
    pub fn answering(&self) -> Vec<u32> {
        let covered = self.covered.borrow().clone();
        let installed = self.installed.lock();
        covered.keys().copied().filter(|p| installed.contains_key(p)).collect()
    }

    /// Waits until the index covers `lsn` of `partition` (any LSN: indexed whole since
    /// it arrived), nudging the indexer; the covered LSN, or `None` on timeout.
    pub async fn wait_covered(&self, partition: u32, lsn: Lsn, timeout: std::time::Duration) -> Option<Lsn> {
        let reached = |c: &crate::index::indexer::PartitionMarks| c.get(&partition).copied().filter(|l| *l >= lsn);
        if let Some(l) = reached(&self.covered.borrow()) {
            return Some(l);
        }
        self.wake.nudge();
        let mut rx = self.covered.clone();
        let found = tokio::time::timeout(timeout, rx.wait_for(|c| reached(c).is_some())).await;
        match found {
            Ok(Ok(c)) => reached(&c),
            _ => None,
        }
    }
}

/// The single node's journal and what follows it.
pub struct Local {
    pub journal: Journal,
    pub snapshots: Arc<crate::snapshot::SnapshotService>,
    /// The search indexes.
    pub skus: Arc<crate::index::SkuIndex>,
    pub shipments: Arc<crate::index::ShipmentIndex>,
    /// The change feed, webhooks and imports.
    pub integrations: crate::integration::Integrations,
}

impl Services {
    /// The change feed: the single node's, or in cluster mode this node's build of
    /// every partition's.
    pub fn feed(&self) -> Result<&crate::feed::Feed, Problem> {
        match &self.cluster_integrations {
            Some(c) => Ok(&c.feed),
            None => Ok(&self.local()?.integrations.feed),
        }
    }

    /// Webhook delivery: the single node's, or in cluster mode this node's (the routes
    /// of a brand's webhooks run on the owner of its partition).
    pub fn webhooks(&self) -> Result<&crate::webhooks::Webhooks, Problem> {
        match &self.cluster_integrations {
            Some(c) => Ok(&c.webhooks),
            None => Ok(&self.local()?.integrations.webhooks),
        }
    }

    /// Import jobs: the single node's, or in cluster mode this node's (the runner of the
    /// jobs of the partitions it owns, and the uploads it receives).
    pub fn imports(&self) -> Result<&crate::imports::Imports, Problem> {
        match &self.cluster_integrations {
            Some(c) => Ok(&c.imports),
            None => Ok(&self.local()?.integrations.imports),
        }
    }

    /// The single node's services, or 501 in cluster mode.
    pub fn local(&self) -> Result<&Local, Problem> {
        self.local.as_ref().ok_or_else(|| {
            Problem::new(
                crate::domain::ErrorCode::NotInClusterMode,
                "this route is not available in cluster mode yet (search comes with cluster mode's second \
                 part); use a single-node server for it",
            )
        })
    }
}

/// Shared by all handlers. `services` is set once recovery has finished; until then
/// everything but the health checks answers `not_ready`.
pub struct AppState {
    pub services: OnceLock<Services>,
    pub auth: Arc<ArcSwap<AuthTable>>,
    pub limits: Limits,
    /// Set while `--demo` data is still loading: `/readyz` says 503 until it is in.
    pub loading_demo: std::sync::atomic::AtomicBool,
    pub limiter: BrandLimiter,
}

impl AppState {
    pub fn services(&self) -> Result<&Services, Problem> {
        self.services.get().ok_or_else(Problem::not_ready)
    }
}

fn mailbox_full() -> Problem {
    Problem::overloaded("the server is at capacity; nothing was changed; retry after the Retry-After delay")
}

/// A bodiless action on one of a brand's objects (`POST .../{id}/close` and the like):
/// the caller must be allowed to write the brand; an `Idempotency-Key` is honoured.
pub async fn ask_brand_action(
    req: &actix_web::HttpRequest,
    state: &AppState,
    caller: &extract::Caller,
    path: &(String, String),
    cmd: impl FnOnce(crate::domain::Id) -> BrandCmd,
) -> Result<HttpResponse, Problem> {
    let (brand, id) = extract::brand_and_id(caller, path, extract::Access::Write)?;
    let idem = extract::idem_key(req, extract::idempotency_key(req)?, b"");
    ask_brand(state, brand, cmd(id), idem).await
}

/// Sends a command to the brand's shard and answers with what it decided, once durable.
pub async fn ask_brand(state: &AppState, brand: BrandId, cmd: BrandCmd, idem: Option<IdemKey>) -> Result<HttpResponse, Problem> {
    let svc = state.services()?;
    let (reply, rx) = oneshot::channel();
    svc.router.try_send_brand(BrandMsg { brand, cmd, idem, reply }).map_err(|_| mailbox_full())?;
    finish(rx).await
}

/// Sends a command to the registry and answers with what it decided, once durable.
pub async fn ask_registry(state: &AppState, cmd: RegistryCmd, idem: Option<IdemKey>) -> Result<HttpResponse, Problem> {
    let svc = state.services()?;
    let (reply, rx) = oneshot::channel();
    svc.router.registry.try_send(RegistryMsg { cmd, idem, reply }).map_err(|_| mailbox_full())?;
    finish(rx).await
}

/// The output gate: waits until the answer's LSN is durable, then renders it.
async fn finish(rx: oneshot::Receiver<Gated>) -> Result<HttpResponse, Problem> {
    let gated = rx.await.map_err(|_| Problem::overloaded("the actor for this request stopped; retry shortly"))?;
    gated_response(gated).await
}

pub async fn gated_response(gated: Gated) -> Result<HttpResponse, Problem> {
    let (seen, reply) = durable(gated).await?;
    let mut res = reply_response(reply);
    res.extensions_mut().insert(SeenLsn(seen));
    Ok(res)
}

/// The LSN an answer reflects (the newest record it could have seen). An answer to a
/// write that changed nothing (a repeated status, a second release) has no record of
/// its own; [`request_context`] puts this one in its `X-Zaiko-Lsn`, so that every
/// durable answer to a write carries the header and a client can always pass it on
/// as `min_lsn`.
#[derive(Debug, Clone, Copy)]
struct SeenLsn(Lsn);

/// Waits until the answer's LSN is durable (bounded by [`DURABLE_WAIT_MAX`]); then the
/// answer (or its rejection) stands.
async fn durable(gated: Gated) -> Result<(Lsn, Reply), Problem> {
    let (lsn, result) = gated.settle(DURABLE_WAIT_MAX).await.map_err(unsettled)?;
    Ok((lsn, result?))
}

/// The answer to a change whose durability could not be waited for.
pub fn unsettled(u: Unsettled) -> Problem {
    match u {
        Unsettled::Stopped => Problem::overloaded(
            "the journal stopped before this change was durable; it may or may not take effect; retry with the same Idempotency-Key",
        ),
        Unsettled::TimedOut => Problem::overloaded(
            "the disk is slow: this change is not yet durable and may or may not take effect; retry with the same Idempotency-Key",
        ),
    }
}

/// Like [`ask_brand`], but hands back the actor's answer (once durable) and the LSN
/// it waited for, for handlers that do more than render it.
pub async fn ask_brand_reply(state: &AppState, brand: BrandId, cmd: BrandCmd, idem: Option<IdemKey>) -> Result<(Lsn, Reply), Problem> {
    let svc = state.services()?;
    let (reply, rx) = oneshot::channel();
    svc.router.try_send_brand(BrandMsg { brand, cmd, idem, reply }).map_err(|_| mailbox_full())?;
    let gated = rx.await.map_err(|_| Problem::overloaded("the actor for this request stopped; retry shortly"))?;
    durable(gated).await
}

/// Where a durable answer is in the journal.
const LSN_HEADER: header::HeaderName = header::HeaderName::from_static("x-zaiko-lsn");

/// The HTTP status of what a command did: the one place it is chosen.
fn status_code(s: Status) -> StatusCode {
    match s {
        Status::Done => StatusCode::OK,
        Status::Created => StatusCode::CREATED,
        Status::Accepted => StatusCode::ACCEPTED,
        Status::Removed => StatusCode::NO_CONTENT,
    }
}

/// The HTTP response of a successful answer.
pub fn reply_response(reply: Reply) -> HttpResponse {
    let status = status_code(reply.status);
    let mut res = HttpResponse::build(status);
    if let Some(lsn) = reply.lsn {
        res.insert_header((LSN_HEADER, header::HeaderValue::from(lsn)));
    }
    if status == StatusCode::NO_CONTENT {
        return res.finish();
    }
    res.insert_header((header::CONTENT_TYPE, "application/json")).body(reply.body)
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg, true);
}

/// Registers every route but `/metrics` (served on `--metrics-listen`).
pub fn configure_without_metrics(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg, false);
}

/// Registers `/metrics` alone, for the `--metrics-listen` server.
pub fn configure_metrics(cfg: &mut web::ServiceConfig) {
    routes::metrics::configure(cfg);
}

/// How long a node in cluster mode waits for the registry to catch up before it refuses
/// a token it does not know.
const REGISTRY_CATCH_UP_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// The name of the `X-Request-Id` header (a lookup by `&str` would copy the name into a
/// new `HeaderName` on every request).
const REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// Longest `X-Request-Id` taken from a client; longer or odd ones are replaced.
const REQUEST_ID_CHARS_MAX: usize = 128;

/// The per-request metrics, through handles kept per worker thread: building the
/// labels and finding the series in the recorder for every request cost more than the
/// recording itself.
mod http_metrics {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::time::Duration;

    use actix_web::http::Method;

    type Series = (metrics::Counter, metrics::Histogram);

    thread_local! {
        static SERIES: RefCell<HashMap<(String, &'static str, u16), Series>> = RefCell::new(HashMap::new());
    }

    /// The method as a label: a method outside the standard ones is `other`, so a
    /// client cannot add series by inventing methods.
    fn method_label(m: &Method) -> &'static str {
        const KNOWN: [(Method, &str); 9] = [
            (Method::GET, "GET"),
            (Method::POST, "POST"),
            (Method::PUT, "PUT"),
            (Method::DELETE, "DELETE"),
            (Method::PATCH, "PATCH"),
            (Method::HEAD, "HEAD"),
            (Method::OPTIONS, "OPTIONS"),
            (Method::TRACE, "TRACE"),
            (Method::CONNECT, "CONNECT"),
        ];
        KNOWN.iter().find(|(k, _)| k == m).map_or("other", |(_, l)| l)
    }

    pub fn record(route: String, method: &Method, status: u16, elapsed: Duration) {
        let method = method_label(method);
        SERIES.with_borrow_mut(|series| {
            let (count, took) = series.entry((route, method, status)).or_insert_with_key(|(route, method, status)| {
                let labels = [("route", route.clone()), ("method", method.to_string()), ("status", status.to_string())];
                (
                    metrics::counter!("zaiko_http_requests_total", &labels),
                    metrics::histogram!("zaiko_http_request_duration_seconds", &labels),
                )
            });
            count.increment(1);
            took.record(elapsed.as_secs_f64());
        });
        if status == 429 || status == 503 {
            metrics::counter!("zaiko_http_rejected_total", "status" => status.to_string()).increment(1);
        }
    }
}

fn new_request_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The one middleware (one layer, one boxed future per request). Every request gets a
/// request id — the client's `X-Request-Id` if it sent a sane one, else a new one —
/// returned in `X-Request-Id`, and runs in a `tracing` span that carries it; it is
/// authenticated and counted against its brand's rate ([`authenticate_and_limit`]).
/// The span is at DEBUG (as tower-http's is): at the default INFO level it is disabled
/// and costs nothing, where creating it formatted its fields for every request (~5 % of
/// the write path's CPU). A failed request (5xx) is logged at WARN with
/// the id, method and path itself. Only the method, the path and the outcome are
/// logged: never bodies, so never personal data such as `ship_to`.
pub async fn request_context(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::ResponseError;
    use tracing::Instrument;
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= REQUEST_ID_CHARS_MAX && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(new_request_id, str::to_string);
    let span = tracing::debug_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    let started = std::time::Instant::now();
    let mut authenticated = authenticate_and_limit(&req);
    if authenticated.is_ok() && token_unknown(&req) {
        // Boxed: a rare path, kept out of the size of every request's future.
        authenticated = Box::pin(confirm_unknown_token(&req)).await;
    }
    let mut res = match authenticated {
        Ok(()) => next.call(req).instrument(span.clone()).await?.map_into_left_body(),
        Err(p) => {
            let res = p.error_response();
            req.into_response(res).map_into_right_body()
        }
    };
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    // Labelled by route pattern (never the raw path: ids would explode the series).
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_string());
    http_metrics::record(route, res.request().method(), status, elapsed);
    let elapsed_us = elapsed.as_micros() as u64;
    // A 503 from `/readyz` is the probe's answer (recovering, loading the demo, disk
    // full), not a failed request: a load balancer polling it during start must not
    // fill the log with warnings.
    if status >= 500 && res.request().path() != "/readyz" {
        let (method, path) = (res.request().method(), res.request().path());
        tracing::warn!(request_id = %id, %method, path, status, elapsed_us, "request failed");
    } else {
        span.in_scope(|| tracing::debug!(status, elapsed_us, "request done"));
    }
    if let Ok(v) = header::HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    let write = !matches!(*res.request().method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD);
    if write && res.status().is_success() && !res.headers().contains_key(LSN_HEADER) {
        let seen = res.response().extensions().get::<SeenLsn>().copied();
        if let Some(SeenLsn(lsn)) = seen {
            res.headers_mut().insert(LSN_HEADER, header::HeaderValue::from(lsn));
        }
    }
    Ok(res)
}
