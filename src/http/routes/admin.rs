//! Brands, locations and tokens.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::actors::registry::{RegistryCmd, TOKEN_PREFIX};
use crate::actors::shard::{BrandCmd, ListBrands};
use crate::cluster::engine::PartitionId;
use crate::cluster::node::Route;
use crate::domain::registry::{LocationKind, Role};
use crate::domain::text::check_text;
use crate::domain::BrandId;
use crate::http::extract::{brand_id, id, idem_key, idempotency_key, Access, Caller, JsonBody};
use crate::http::problem::Problem;
use crate::http::{ask_brand, ask_registry, cluster, unsettled, AppState, DURABLE_WAIT_MAX};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/brands", web::post().to(create_brand))
        .route("/v1/brands", web::get().to(list_brands))
        .route("/v1/brands/{brand}", web::get().to(get_brand))
        .route("/v1/brands/{brand}/tokens", web::post().to(create_brand_token))
        .route("/v1/tokens", web::post().to(create_token))
        .route("/v1/tokens/{id}", web::delete().to(revoke_token))
        .route("/v1/locations", web::get().to(list_locations))
        .route("/v1/locations/{location}", web::put().to(put_location))
        .route("/v1/admin/clock", web::post().to(advance_clock))
        .route("/v1/admin/cluster", web::get().to(cluster_status))
        .route("/v1/admin/cluster/nodes/{node}/drain", web::put().to(drain_node))
        .route("/v1/admin/cluster/nodes/{node}/drain", web::delete().to(undrain_node))
        .route("/v1/admin/snapshots", web::post().to(create_snapshot))
        .route("/v1/admin/snapshots", web::get().to(list_snapshots));
}

/// A brand's or location's display name is a short text ([`check_text`]).
fn check_name(name: &str) -> Result<(), Problem> {
    check_text("name", name).map_or(Ok(()), |e| Err(Problem::invalid(e.field, e.detail)))
}

/// The body of `POST /v1/brands`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBrand {
    /// The new brand's id.
    id: BrandId,
    /// Its display name: 1..=200 characters, no control characters.
    name: String,
}

#[utoipa::path(post, path = "/v1/brands", operation_id = "create_brand", tag = "admin", request_body = CreateBrand, responses(
    (status = 201, description = "The brand.", body = crate::domain::view::BrandView),
    (status = 409, description = "`already_exists`.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn create_brand(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonBody<CreateBrand>,
) -> Result<HttpResponse, Problem> {
    caller.require_admin()?;
    check_name(&body.value.name)?;
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    // Cluster mode: the brand's id is in the body, so it is routed here, not by path.
    if let Some(node) = &state.services()?.cluster {
        let p = node.partition_of(body.value.id.as_str());
        match node.route(p) {
            Route::Local => {}
            Route::Forward(owner) if !req.headers().contains_key(cluster::FORWARDED_BY) => {
                return Ok(cluster::forward(&req, body.bytes.clone(), node, &owner, p, &[]).await);
            }
            _ => return Err(cluster::unavailable(p)),
        }
    }
    let CreateBrand { id, name } = body.value;
    ask_brand(&state, id, BrandCmd::Create { name }, idem).await
}

#[utoipa::path(get, path = "/v1/brands", operation_id = "list_brands", tag = "admin", responses((status = 200, description = "Every brand (admin, viewer).", body = super::schemas::BrandList)))]
async fn list_brands(req: HttpRequest, state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, Problem> {
    caller.require_global_read()?;
    let svc = state.services()?;
    if let Some(node) = &svc.cluster {
        if !req.headers().contains_key(cluster::LOCAL_ONLY) {
            let brands = cluster::gather_brands(&req, node).await?;
            return Ok(HttpResponse::Ok().json(serde_json::json!({ "brands": brands })));
        }
    }
    let mut brands = Vec::new();
    for shard in &svc.router.shards {
        let (reply, rx) = oneshot::channel();
        shard.try_send(ListBrands { reply }).map_err(|_| Problem::overloaded("the server is at capacity; retry shortly"))?;
        let (seen, views) = rx.await.map_err(|_| Problem::overloaded("a shard stopped; retry shortly"))?;
        for pending in seen {
            pending.settle(DURABLE_WAIT_MAX).await.map_err(unsettled)?;
        }
        brands.extend(views);
    }
    brands.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(HttpResponse::Ok().json(serde_json::json!({ "brands": brands })))
}

#[utoipa::path(get, path = "/v1/brands/{brand}", operation_id = "get_brand", tag = "admin", params(("brand" = crate::domain::BrandId, Path, description = "The brand id.")), responses((status = 200, description = "The brand.", body = crate::domain::view::BrandView)))]
async fn get_brand(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let brand = brand_id(&path)?;
    caller.require_brand(&brand, Access::Read)?;
    ask_brand(&state, brand, BrandCmd::Get, None).await
}

/// `POST /v1/brands/{brand}/tokens` takes no fields; `{}` or an empty body.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[schema(as = EmptyBody)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[utoipa::path(post, path = "/v1/brands/{brand}/tokens", operation_id = "create_brand_token", tag = "admin", params(("brand" = crate::domain::BrandId, Path, description = "The brand id.")), request_body(content = Empty, description = "Optional: no body, or `{}`."), responses((status = 201, description = "The token, shown only now.", body = crate::actors::registry::TokenCreated)))]
async fn create_brand_token(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    caller.require_admin()?;
    // Validated like everywhere, but not honoured here (see the notes in docs/api-v1.md).
    idempotency_key(&req)?;
    let brand = brand_id(&path)?;
    let bytes = crate::http::extract::read_body(&req, payload, 4096).await?;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        crate::http::extract::parse_json::<Empty>(&bytes)?;
    }
    // The brand must exist; a read through its shard (in cluster mode, its partition's
    // owner, which may be another node than the registry's) says so.
    match &state.services()?.cluster {
        Some(node) => cluster::check_brand_exists(&req, node, &brand).await?,
        None => {
            let exists = ask_brand(&state, brand.clone(), BrandCmd::Get, None).await?;
            debug_assert!(exists.status().is_success());
        }
    }
    ask_registry(&state, RegistryCmd::CreateToken { role: Role::Brand(brand) }, None).await
}

/// The body of `POST /v1/tokens`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = ViewerTokenInput)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    /// `viewer`: brand tokens are made with `POST /v1/brands/{brand}/tokens`.
    role: String,
}

#[utoipa::path(post, path = "/v1/tokens", operation_id = "create_viewer_token", tag = "admin", request_body = CreateToken, responses((status = 201, description = "The viewer token, shown only now.", body = crate::actors::registry::TokenCreated)))]
async fn create_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonBody<CreateToken>,
) -> Result<HttpResponse, Problem> {
    caller.require_admin()?;
    // Validated like everywhere, but not honoured here (see the notes in docs/api-v1.md).
    idempotency_key(&req)?;
    let role = match body.value.role.as_str() {
        "viewer" => Role::Viewer,
        "brand" => return Err(Problem::invalid("role", "brand tokens are created with POST /v1/brands/{brand}/tokens")),
        _ => return Err(Problem::invalid("role", "must be \"viewer\"")),
    };
    ask_registry(&state, RegistryCmd::CreateToken { role }, None).await
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", operation_id = "revoke_token", tag = "admin", params(("id" = crate::domain::Id, Path, description = "The token id (or the whole token).")), responses((status = 204, description = "Revoked.")))]
async fn revoke_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    caller.require_admin()?;
    // Accept the bare id or, forgivingly, a whole token (only its id part is used).
    let raw = path.strip_prefix(TOKEN_PREFIX).and_then(|r| r.split_once('_')).map_or(path.as_str(), |(id, _)| id);
    let token = id("id", raw)?;
    let idem = idem_key(&req, idempotency_key(&req)?, b"");
    ask_registry(&state, RegistryCmd::RevokeToken { id: token }, idem).await
}

#[utoipa::path(get, path = "/v1/locations", operation_id = "list_locations", tag = "admin", responses((status = 200, description = "Every location (admin, viewer).", body = super::schemas::LocationList)))]
async fn list_locations(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, Problem> {
    caller.require_global_read()?;
    ask_registry(&state, RegistryCmd::ListLocations, None).await
}

/// The body of `PUT /v1/locations/{location}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = LocationInput)]
#[serde(deny_unknown_fields)]
struct PutLocation {
    /// 1..=200 characters, no control characters.
    name: String,
    kind: LocationKind,
}

#[utoipa::path(put, path = "/v1/locations/{location}", operation_id = "put_location", tag = "admin", params(("location" = crate::domain::Id, Path, description = "The location id.")), request_body = PutLocation, responses(
    (status = 200, description = "Updated.", body = crate::domain::view::LocationView),
    (status = 201, description = "Created.", body = crate::domain::view::LocationView),
))]
async fn put_location(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: JsonBody<PutLocation>,
) -> Result<HttpResponse, Problem> {
    caller.require_admin()?;
    let location = id("location", &path)?;
    check_name(&body.value.name)?;
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    let PutLocation { name, kind } = body.value;
    ask_registry(&state, RegistryCmd::PutLocation { id: location, name, kind }, idem).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceClock {
    advance_seconds: i64,
}

/// Longest single move of the manual clock: ten years.
const CLOCK_ADVANCE_SECONDS_MAX: i64 = 10 * 365 * 86_400;

/// Test hook: moves a manual clock (`serve --manual-clock`) forward, then expires what
/// became due and answers `{"now"}` once that is durable. On the system clock: 422.
/// Not in `/openapi.json`: it is no part of the contract.
async fn advance_clock(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonBody<AdvanceClock>,
) -> Result<HttpResponse, Problem> {
    caller.require_admin()?;
    // Validated like everywhere, but not honoured here (see the notes in docs/api-v1.md).
    idempotency_key(&req)?;
    let secs = body.value.advance_seconds;
    if !(0..=CLOCK_ADVANCE_SECONDS_MAX).contains(&secs) {
        return Err(Problem::invalid("advance_seconds", format!("must be 0..={CLOCK_ADVANCE_SECONDS_MAX}")));
    }
    let svc = state.services()?;
    let now = svc.clock.advance(secs * 1000).map_err(|e| Problem::new(crate::domain::ErrorCode::Unprocessable, e))?;
    let written = svc.router.sweep_all().await.map_err(|_| Problem::overloaded("a shard stopped; retry shortly"))?;
    for pending in written {
        pending.settle(DURABLE_WAIT_MAX).await.map_err(unsettled)?;
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "now": now.to_rfc3339() })))
}

#[utoipa::path(post, path = "/v1/admin/snapshots", operation_id = "create_snapshot", tag = "admin", responses((status = 201, description = "The snapshot, durable on disk. In cluster mode: `{\"snapshots\": [PartitionSnapshot]}`, one per partition and the registry, each stored in the cluster's object store.", body = crate::snapshot::SnapshotInfo)))]
async fn create_snapshot(req: HttpRequest, state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, Problem> {
    caller.require_admin()?;
    // Validated like everywhere, but not honoured here (see the notes in docs/api-v1.md).
    idempotency_key(&req)?;
    let svc = state.services()?;
    if let Some(node) = &svc.cluster {
        let partitions = (0..node.cfg.partitions).map(PartitionId::Brand).chain([PartitionId::Registry]);
        let taken = node.snapshots.take_all(partitions, svc.clock.now()).await.map_err(|e| {
            tracing::error!(error = %e, "cluster snapshot failed");
            Problem::overloaded(format!("the snapshot could not be stored ({e}); partitions before it are stored; retry"))
        })?;
        node.purger.spawn_pass((0..node.cfg.partitions).collect(), svc.clock.now());
        return Ok(HttpResponse::Created().json(serde_json::json!({ "snapshots": taken })));
    }
    let info = svc.local()?.snapshots.create(svc.clock.now()).await.map_err(|e| {
        tracing::error!(error = %e, "snapshot failed");
        Problem::new(crate::domain::ErrorCode::Unprocessable, format!("the snapshot could not be built: {e}"))
    })?;
    Ok(HttpResponse::Created().json(info))
}

#[utoipa::path(get, path = "/v1/admin/snapshots", operation_id = "list_snapshots", tag = "admin", responses((status = 200, description = "The kept snapshots, oldest first. In cluster mode: the stored partition snapshots (`PartitionSnapshot`), by partition then sequence.", body = super::schemas::SnapshotList)))]
async fn list_snapshots(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, Problem> {
    caller.require_admin()?;
    let svc = state.services()?;
    if let Some(node) = &svc.cluster {
        let list = node.snapshots.list().await.map_err(|e| Problem::overloaded(format!("the object store did not answer ({e}); retry")))?;
        return Ok(HttpResponse::Ok().json(serde_json::json!({ "snapshots": list })));
    }
    let snapshots = svc.local()?.snapshots.list().map_err(|e| Problem::new(crate::domain::ErrorCode::Unprocessable, e.to_string()))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "snapshots": snapshots })))
}

#[utoipa::path(get, path = "/v1/admin/cluster", operation_id = "get_cluster", tag = "admin", responses(
    (status = 200, description = "Cluster mode: every partition with its owner, epoch, standbys and this node's LSN of it, and every node with its address, partitions owned and liveness, as this node sees them.", body = super::schemas::ClusterStatus),
    (status = 404, description = "`not_found`: the server is not in cluster mode.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn cluster_status(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, Problem> {
    caller.require_admin()?;
    Ok(HttpResponse::Ok().json(&*cluster_node(&state)?.view()))
}

/// What a drain or undrain did.
#[derive(Serialize, utoipa::ToSchema)]
struct DrainState {
    /// The node.
    node: String,
    /// Whether it is draining now.
    draining: bool,
}

fn cluster_node(state: &AppState) -> Result<&crate::cluster::node::Node, Problem> {
    state
        .services()?
        .cluster
        .as_ref()
        .ok_or_else(|| Problem::new(crate::domain::ErrorCode::NotFound, "this server is not in cluster mode (start it with --cluster)"))
}

/// Sets a node's drain mark after checking it is a node the cluster knows.
async fn set_drain(state: &AppState, caller: &Caller, id: &str, draining: bool) -> Result<HttpResponse, Problem> {
    caller.require_admin()?;
    let node = cluster_node(state)?;
    if !node.view().nodes.iter().any(|n| n.id == id) {
        return Err(Problem::new(
            crate::domain::ErrorCode::NotFound,
            format!("node {id} is not known to this cluster (see GET /v1/admin/cluster for its nodes)"),
        ));
    }
    node.set_draining(id, draining).await.map_err(|e| Problem::new(crate::domain::ErrorCode::PartitionUnavailable, e))?;
    Ok(HttpResponse::Ok().json(DrainState { node: id.to_string(), draining }))
}

#[utoipa::path(put, path = "/v1/admin/cluster/nodes/{node}/drain", operation_id = "drain_node", tag = "admin", params(
    ("node" = String, Path, description = "The node id (`--node-id`)."),
), responses(
    (status = 200, description = "Cluster mode: the node is draining. Every partition it owns is handed over, one after the other, to the node it belongs on among the others once that node follows it closely; the node takes nothing over and follows nothing but the registry. Each partition answers 503 with Retry-After for the moment it moves. Watch `partitions_owned` in GET /v1/admin/cluster reach 0.", body = DrainState),
    (status = 404, description = "`not_found`: the server is not in cluster mode, or the cluster does not know the node.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn drain_node(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    set_drain(&state, &caller, &path, true).await
}

#[utoipa::path(delete, path = "/v1/admin/cluster/nodes/{node}/drain", operation_id = "undrain_node", tag = "admin", params(
    ("node" = String, Path, description = "The node id (`--node-id`)."),
), responses(
    (status = 200, description = "Cluster mode: the node is no longer draining; it is handed its share of partitions again, one after the other, as it catches up with them.", body = DrainState),
    (status = 404, description = "`not_found`: the server is not in cluster mode, or the cluster does not know the node.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn undrain_node(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    set_drain(&state, &caller, &path, false).await
}
