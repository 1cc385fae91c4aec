//! Cluster mode at the HTTP edge: every request is answered by the node that owns its
//! brand's partition. A node that does not own it forwards the request there (same
//! method, path, body, `Idempotency-Key`, request id and token), bounded in time and in
//! flight; a partition without an owner (a takeover under way) is 503 with
//! `Retry-After`. Answers carry `X-Zaiko-Node` and `X-Zaiko-Partition`.
//!
//! The change feed is answered by whichever node is asked (every node builds every
//! partition's feed); a SKU's history (read from that feed, after the SKU is read) and
//! a brand's webhooks, their deliveries included, by the owner of its partition (which
//! delivers them). An import upload is stored by the node that receives it and queued
//! through the owner (`cluster::imports`); snapshots are taken and listed by the node
//! asked (`cluster::snapshots`). A search routes itself (`routes::search`): one brand's
//! to the owner of its partition, one across brands gathered from every owner.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::Either;
use futures_util::{Future, StreamExt, TryFutureExt};

use super::problem::Problem;
use super::{AppState, DURABLE_WAIT_MAX};
use crate::cluster::engine::PartitionId;
use crate::cluster::node::{Node, Owner, Route};
use crate::domain::{BrandId, ErrorCode};

/// Set on a forwarded request: the node that forwarded it. A node never forwards a
/// request that carries it again (ownership moved meanwhile: 503, the client retries).
pub const FORWARDED_BY: &str = "x-zaiko-forwarded-by";
/// Asks a node for its own share of a gathered answer (`GET /v1/brands`).
pub const LOCAL_ONLY: &str = "x-zaiko-local-only";
const NODE_HEADER: &str = "x-zaiko-node";
const PARTITION_HEADER: &str = "x-zaiko-partition";
/// Requests this node forwards at once, at most; past it, 503.
pub const FORWARDS_IN_FLIGHT_MAX: usize = 1024;
/// How long a forwarded request may take: the owner's own bound on a durable wait,
/// plus room for the hop.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(DURABLE_WAIT_MAX.as_secs() + 5);

static FORWARDS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Where a request belongs in cluster mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Served by whichever node gets it (health, metrics, documents, the registry as
    /// followed, gathered or body-routed answers).
    Any,
    /// Served by the owner of a partition.
    Partition(PartitionId, Option<BrandId>),
}

/// Classifies a request by method and path.
pub fn classify(node: &Node, method: &Method, path: &str) -> Target {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let write = !matches!(*method, Method::GET | Method::HEAD);
    match segments.as_slice() {
        ["v1", "locations", _] | ["v1", "tokens", ..] if write => Target::Partition(PartitionId::Registry, None),
        ["v1", "brands", _, "tokens"] if write => Target::Partition(PartitionId::Registry, None),
        // Every node builds every partition's feed (`feed::cluster`).
        ["v1", "brands", _, "events"] => Target::Any,
        // An upload is stored by the node that receives it (`cluster::imports`); the
        // job's other routes are the owner's, like every brand command.
        ["v1", "brands", _, "imports"] if write => Target::Any,
        ["v1", "brands", brand, ..] => match BrandId::parse(brand) {
            Ok(b) => Target::Partition(node.partition_of(b.as_str()), Some(b)),
            // The handler answers 400 for a bad id.
            Err(_) => Target::Any,
        },
        _ => Target::Any,
    }
}

/// The middleware: runs the request here, forwards it to its partition's owner, or
/// refuses it. Outside cluster mode (or before the node is up) it does nothing.
///
/// Not an `async fn`: the future it returns is moved into a box on every request, and
/// an `async fn` holding the cluster path inline made that future so large that the
/// copy took a twelfth of an HTTP worker's CPU on a single node under a flood of writes
/// (`docs/bench-log.md`). Here it is the inner service's boxed future or, in cluster
/// mode, a box of its own.
pub fn route<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: actix_web::middleware::Next<B>,
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>> {
    let node = req.app_data::<web::Data<AppState>>().and_then(|s| s.services.get()).and_then(|s| s.cluster.clone());
    match node {
        None => Either::Left(next.call(req).map_ok(ServiceResponse::map_into_boxed_body)),
        Some(node) => Either::Right(Box::pin(route_in_cluster(node, req, next))),
    }
}

async fn route_in_cluster(
    node: Node,
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let partition = match classify(&node, req.method(), req.path()) {
        Target::Any => return Ok(next.call(req).await?.map_into_boxed_body()),
        Target::Partition(p, _) => p,
    };
    match node.route(partition) {
        Route::Local => {
            let mut res = next.call(req).await?.map_into_boxed_body();
            tag(res.headers_mut(), &node, partition);
            Ok(res)
        }
        Route::Forward(_) if req.headers().contains_key(FORWARDED_BY) => Ok(refuse(req, unavailable(partition))),
        Route::Forward(owner) => {
            let (http_req, payload) = req.into_parts();
            let res = match read_body(&http_req, payload).await {
                Ok(body) => forward(&http_req, body, &node, &owner, partition, &[]).await,
                Err(p) => p.error_response(),
            };
            Ok(ServiceResponse::new(http_req, res))
        }
        Route::Unavailable => Ok(refuse(req, unavailable(partition))),
    }
}

fn refuse(req: ServiceRequest, p: Problem) -> ServiceResponse<BoxBody> {
    req.into_response(p.error_response())
}

fn tag(headers: &mut header::HeaderMap, node: &Node, partition: PartitionId) {
    if let Ok(v) = header::HeaderValue::from_str(&node.cfg.node_id) {
        headers.insert(header::HeaderName::from_static(NODE_HEADER), v);
    }
    if let Ok(v) = header::HeaderValue::from_str(&partition.to_string()) {
        headers.insert(header::HeaderName::from_static(PARTITION_HEADER), v);
    }
}

pub fn unavailable(partition: PartitionId) -> Problem {
    Problem::new(
        ErrorCode::PartitionUnavailable,
        format!(
            "partition {partition} has no owner this node can reach right now (a takeover is under way); retry after the Retry-After delay"
        ),
    )
}

/// Reads the request body, bounded like every body.
async fn read_body(req: &HttpRequest, mut payload: actix_web::dev::Payload) -> Result<web::Bytes, Problem> {
    let limit = req.app_data::<web::Data<AppState>>().map_or(1 << 20, |s| s.limits.body_bytes_max);
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Problem::invalid("body", format!("the body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(Problem::new(ErrorCode::PayloadTooLarge, format!("the body is over {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

thread_local! {
    /// One client per HTTP worker thread (awc clients are not `Send`).
    static CLIENT: awc::Client = awc::Client::builder().timeout(FORWARD_TIMEOUT).disable_redirects().finish();
}

/// Headers a forwarded request carries over.
const FORWARDED_REQUEST_HEADERS: [header::HeaderName; 5] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::HeaderName::from_static("idempotency-key"),
    header::HeaderName::from_static("x-request-id"),
];

/// Sends the request to the partition's owner and hands its answer back. A failure to
/// reach the owner is 503 (the change may or may not have been made there: the
/// client retries with the same `Idempotency-Key`).
/// `extra` headers are added to those carried over.
pub async fn forward(
    req: &HttpRequest,
    body: web::Bytes,
    node: &Node,
    owner: &Owner,
    partition: PartitionId,
    extra: &[(&'static str, String)],
) -> HttpResponse {
    if FORWARDS_IN_FLIGHT.fetch_add(1, Ordering::AcqRel) >= FORWARDS_IN_FLIGHT_MAX {
        FORWARDS_IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        metrics::counter!("zaiko_cluster_forwards_total", "partition" => partition.to_string(), "outcome" => "refused").increment(1);
        return Problem::overloaded("this node forwards too many requests at once; retry shortly").error_response();
    }
    let res = send(req, body, node, owner, extra).await;
    FORWARDS_IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    match res {
        Ok(res) => {
            metrics::counter!("zaiko_cluster_forwards_total", "partition" => partition.to_string(), "outcome" => "answered").increment(1);
            res
        }
        Err(e) => {
            metrics::counter!("zaiko_cluster_forwards_total", "partition" => partition.to_string(), "outcome" => "failed").increment(1);
            tracing::info!(owner = %owner.node, partition = %partition, error = %e, "forwarding failed");
            Problem::new(
                ErrorCode::PartitionUnavailable,
                format!(
                    "partition {partition}'s owner ({}) could not be reached; the change may or may not have been made: \
                     retry with the same Idempotency-Key after the Retry-After delay",
                    owner.node
                ),
            )
            .error_response()
        }
    }
}

async fn send(
    req: &HttpRequest,
    body: web::Bytes,
    node: &Node,
    owner: &Owner,
    extra: &[(&'static str, String)],
) -> Result<HttpResponse, String> {
    let path = req.uri().path_and_query().map_or(req.path(), |p| p.as_str());
    let url = format!("{}{path}", owner.advertise);
    let mut out = CLIENT.with(|c| c.request(req.method().clone(), &url));
    for name in &FORWARDED_REQUEST_HEADERS {
        if let Some(v) = req.headers().get(name) {
            out = out.insert_header((name.clone(), v.clone()));
        }
    }
    for (name, value) in extra {
        out = out.insert_header((*name, value.as_str()));
    }
    out = out.insert_header((FORWARDED_BY, node.cfg.node_id.as_str())).insert_header((header::ACCEPT_ENCODING, "identity"));
    let mut res = out.send_body(body).await.map_err(|e| e.to_string())?;
    let bytes = res.body().limit(64 << 20).await.map_err(|e| e.to_string())?;
    let mut answer = HttpResponse::build(res.status());
    for (name, value) in res.headers() {
        if !is_hop_by_hop(name) {
            answer.append_header((name.clone(), value.clone()));
        }
    }
    Ok(answer.body(bytes))
}

fn is_hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "content-length"
            | "date"
            | "server"
            | "content-encoding"
            | "te"
            | "trailer"
            | "upgrade"
    )
}

/// `GET /v1/brands` in cluster mode: this node's brands and those of every other node
/// that owns partitions, each asked for its own share. Every partition must have an
/// owner (else 503): a listing that silently missed a partition would look complete.
pub async fn gather_brands(req: &HttpRequest, node: &Node) -> Result<Vec<serde_json::Value>, Problem> {
    let view = node.view();
    let mut owners: Vec<&Owner> = Vec::new();
    for p in view.partitions.iter().filter(|p| p.id != "registry") {
        match &p.owner {
            Some(o) => {
                if !owners.iter().any(|x| x.node == o.node) {
                    owners.push(o);
                }
            }
            None => {
                return Err(Problem::new(
                    ErrorCode::PartitionUnavailable,
                    format!("partition {} has no owner right now; retry shortly", p.id),
                ))
            }
        }
    }
    let mut brands: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
    for owner in owners {
        let url = format!("{}/v1/brands", owner.advertise);
        let mut out =
            CLIENT.with(|c| c.get(&url)).insert_header((LOCAL_ONLY, "1")).insert_header((FORWARDED_BY, node.cfg.node_id.as_str()));
        if let Some(v) = req.headers().get(header::AUTHORIZATION) {
            out = out.insert_header((header::AUTHORIZATION, v.clone()));
        }
        let unreachable = |e: String| {
            Problem::new(
                ErrorCode::PartitionUnavailable,
                format!("node {} could not be asked for its brands ({e}); retry shortly", owner.node),
            )
        };
        let mut res = out.send().await.map_err(|e| unreachable(e.to_string()))?;
        if !res.status().is_success() {
            return Err(unreachable(format!("it answered {}", res.status())));
        }
        let page: serde_json::Value = res.json().limit(64 << 20).await.map_err(|e| unreachable(e.to_string()))?;
        for b in page["brands"].as_array().into_iter().flatten() {
            if let Some(id) = b["id"].as_str() {
                brands.insert(id.to_string(), b.clone());
            }
        }
    }
    Ok(brands.into_values().collect())
}

/// Asks `owner` (this node too) for its own share of the request's gathered answer
/// (`LOCAL_ONLY`), with the caller's token; the body of a 200, else the problem to
/// answer with (see [`share_refused`]).
pub async fn ask_local_share(req: &HttpRequest, node: &Node, owner: &Owner) -> Result<web::Bytes, Problem> {
    let path = req.uri().path_and_query().map_or(req.path(), |p| p.as_str());
    let url = format!("{}{path}", owner.advertise);
    let mut out = CLIENT.with(|c| c.get(&url)).insert_header((LOCAL_ONLY, "1")).insert_header((FORWARDED_BY, node.cfg.node_id.as_str()));
    for name in [header::AUTHORIZATION, header::HeaderName::from_static("x-request-id")] {
        if let Some(v) = req.headers().get(&name) {
            out = out.insert_header((name, v.clone()));
        }
    }
    let unreachable = |e: String| share_refused(&owner.node, None, &e);
    let mut res = out.insert_header((header::ACCEPT_ENCODING, "identity")).send().await.map_err(|e| unreachable(e.to_string()))?;
    if !res.status().is_success() {
        let body = res.body().limit(SHARE_REFUSAL_BYTES_MAX).await.unwrap_or_default();
        return Err(share_refused(&owner.node, Some(res.status().as_u16()), &String::from_utf8_lossy(&body)));
    }
    res.body().limit(64 << 20).await.map_err(|e| unreachable(e.to_string()))
}

/// Most of a refusal's body read to tell why an owner gave no share.
const SHARE_REFUSAL_BYTES_MAX: usize = 64 << 10;

/// The problem a gathered answer gets when `owner` gave no share: an owner at its bound
/// of searches in flight (503 `overloaded`) makes the whole answer `overloaded`, so
/// the client backs off as from any busy server; anything else (no answer, another
/// status) is `partition_unavailable`. Both carry `Retry-After`.
pub fn share_refused(owner: &str, status: Option<u16>, body: &str) -> Problem {
    let code = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v["code"].as_str().map(str::to_string));
    match (status, code.as_deref()) {
        (Some(503), Some("overloaded")) => Problem::overloaded(format!(
            "node {owner} is running as many searches as it may at once and could not answer for its partitions; retry after the Retry-After delay"
        )),
        (Some(status), _) => Problem::new(
            ErrorCode::PartitionUnavailable,
            format!("node {owner} could not be asked for its share of the answer (it answered {status}); retry after the Retry-After delay"),
        ),
        (None, _) => Problem::new(
            ErrorCode::PartitionUnavailable,
            format!("node {owner} could not be asked for its share of the answer ({body}); retry after the Retry-After delay"),
        ),
    }
}

/// Whether `brand` exists, asked of its partition's owner (this node or another), with
/// the caller's token: 404 `not_found` if not, 503 if its owner cannot be asked.
pub async fn check_brand_exists(req: &HttpRequest, node: &Node, brand: &BrandId) -> Result<(), Problem> {
    let partition = node.partition_of(brand.as_str());
    let owner = match node.route(partition) {
        Route::Local => Owner { node: node.cfg.node_id.clone(), advertise: node.cfg.advertise.clone(), epoch: 0 },
        Route::Forward(owner) => owner,
        Route::Unavailable => return Err(unavailable(partition)),
    };
    let url = format!("{}/v1/brands/{brand}", owner.advertise);
    let mut out = CLIENT.with(|c| c.get(&url)).insert_header((FORWARDED_BY, node.cfg.node_id.as_str()));
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        out = out.insert_header((header::AUTHORIZATION, v.clone()));
    }
    let res = out.send().await.map_err(|_| unavailable(partition))?;
    match res.status().as_u16() {
        200 => Ok(()),
        404 => Err(Problem::new(ErrorCode::NotFound, format!("brand {brand} does not exist"))),
        _ => Err(unavailable(partition)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_at_its_search_bound_makes_the_gathered_answer_overloaded() {
        let busy = r#"{"type":"x","title":"t","status":503,"detail":"too many searches are running","code":"overloaded"}"#;
        let p = share_refused("n2", Some(503), busy);
        assert_eq!(p.code, ErrorCode::Overloaded, "{}", p.detail);
        assert!(p.detail.contains("n2") && p.retry_after_s.is_some(), "{p:?}");
        // A partition being handed over, another status, or no answer at all: the
        // partitions of that node are unavailable for now.
        let moving = r#"{"code":"partition_unavailable","status":503}"#;
        for (status, body) in [(Some(503), moving), (Some(500), busy), (Some(503), "not json"), (None, "connection refused")] {
            let p = share_refused("n3", status, body);
            assert_eq!(p.code, ErrorCode::PartitionUnavailable, "{status:?} {body}");
            assert!(p.detail.contains("n3") && p.retry_after_s.is_some(), "{p:?}");
        }
    }
}
