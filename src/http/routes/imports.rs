//! Import jobs: the streamed upload (`POST .../imports?kind=`) and the job's status.
//!
//! The body is never held in memory: each chunk goes to the upload writer on the
//! blocking pool (`imports::upload`). The job is answered `202` once the file is
//! fsynced and the job's `ImportQueued` record is durable.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::actors::shard::BrandCmd;
use crate::cluster::imports::{FetchError, STORED_UPLOAD_HEADER};
use crate::cluster::node::Route;
use crate::domain::import::{ImportCmd, ImportFormat, ImportKind, ImportSpec, ImportStatus};
use crate::domain::{BrandId, ErrorCode, Id};
use crate::http::cluster::FORWARDED_BY;
use crate::http::extract::{brand_id, id, idem_key, idempotency_key, query, Access, Caller};
use crate::http::problem::Problem;
use crate::http::{ask_brand, ask_brand_reply, reply_response, AppState};
use crate::imports::upload::{self, Msg, UploadError};
use crate::imports::{file_name, UPLOAD_BYTES_MAX};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/brands/{brand}/imports", web::post().to(create))
        .route("/v1/brands/{brand}/imports/{id}", web::get().to(get))
        .route("/v1/brands/{brand}/imports/{id}/cancel", web::post().to(cancel));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateQuery {
    kind: Option<String>,
}

fn kind_of(q: &CreateQuery) -> Result<ImportKind, Problem> {
    match q.kind.as_deref() {
        Some("catalog") => Ok(ImportKind::Catalog),
        Some("stock") => Ok(ImportKind::Stock),
        Some("shipment_status") => Ok(ImportKind::ShipmentStatus),
        Some("transfers") => Ok(ImportKind::Transfers),
        Some("returns") => Ok(ImportKind::Returns),
        _ => Err(Problem::invalid("query.kind", "required: catalog, stock, shipment_status, transfers or returns")),
    }
}

fn format_of(req: &HttpRequest) -> Result<ImportFormat, Problem> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "text/csv" => Ok(ImportFormat::Csv),
        "application/x-ndjson" | "application/jsonl" => Ok(ImportFormat::Ndjson),
        _ => Err(Problem::invalid("header.content-type", "must be text/csv or application/x-ndjson")),
    }
}

fn too_large() -> Problem {
    Problem::new(ErrorCode::PayloadTooLarge, format!("an import file may be at most {UPLOAD_BYTES_MAX} bytes; split it"))
}

/// While the journal cannot prepare its next segment for lack of disk space, uploads
/// are refused (and one streaming stops): space coming back goes to the journal first.
fn disk_full_problem() -> Problem {
    Problem::overloaded("the disk is full: the journal has no room for its next segment; retry once space is freed")
}

fn new_job_id() -> Id {
    use rand::RngCore;
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    Id::parse(&format!("imp_{}", hex::encode(b))).expect("hex is a valid id")
}

/// Streams the body to the upload writer; returns what reached the disk.
async fn stream_to_disk(
    mut payload: web::Payload,
    target: upload::Target,
    disk_full: impl Fn() -> bool,
) -> Result<upload::Written, Problem> {
    let (tx, writer) = upload::spawn_writer(target);
    let mut read_error = None;
    let mut no_space = false;
    while let Some(chunk) = payload.next().await {
        if disk_full() {
            no_space = true;
            break;
        }
        match chunk {
            // A send fails only when the writer stopped (too large, disk error).
            Ok(bytes) => {
                if tx.send(Msg::Data(bytes)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                read_error = Some(e.to_string());
                break;
            }
        }
    }
    if read_error.is_none() && !no_space {
        let _ = tx.send(Msg::End).await;
    }
    drop(tx);
    let written = writer.await.map_err(|_| Problem::overloaded("the upload writer stopped; retry"))?;
    if no_space {
        return Err(disk_full_problem());
    }
    written.map_err(|e| upload_problem(e, read_error))
}

fn upload_problem(e: UploadError, read_error: Option<String>) -> Problem {
    match e {
        UploadError::TooLarge(_) => too_large(),
        UploadError::Unusable(why) => Problem::new(ErrorCode::Unprocessable, why),
        UploadError::Aborted => Problem::invalid("body", format!("the body could not be read: {}", read_error.unwrap_or_default())),
        UploadError::Io(e) => {
            tracing::error!(error = %e, "writing an import upload failed");
            Problem::overloaded("the upload could not be stored; retry later")
        }
    }
}

/// What an upload is, before its job is queued.
struct Upload {
    brand: BrandId,
    id: Id,
    kind: ImportKind,
    format: ImportFormat,
    key: Option<String>,
}

impl Upload {
    fn file(&self) -> String {
        file_name(&self.id, self.format)
    }
}

async fn remove_local(path: std::path::PathBuf) {
    let _ = web::block(move || std::fs::remove_file(path)).await;
}

/// Records the job of an upload that is on this node's disk. A refusal, or an
/// idempotent replay naming an earlier job, removes this copy (and in cluster mode the
/// stored upload, which no job claims). In cluster mode the runner is told at once.
async fn queue(req: &HttpRequest, state: &AppState, up: Upload, written: upload::Written) -> Result<HttpResponse, Problem> {
    let svc = state.services()?;
    let spec = ImportSpec {
        id: up.id.clone(),
        kind: up.kind,
        format: up.format,
        file: up.file(),
        bytes: written.bytes,
        sha256: written.sha256,
        created_at: svc.clock.now(),
    };
    // Same key and same file (kind, format, bytes) is the same job.
    let fingerprint = format!("{}\n{:?}\n{}", up.kind.as_str(), up.format, hex::encode(written.sha256));
    let idem = idem_key(req, up.key.clone(), fingerprint.as_bytes());
    let answer = ask_brand_reply(state, up.brand.clone(), BrandCmd::Import(ImportCmd::Queue(Box::new(spec))), idem).await;
    let ours = matches!(&answer, Ok((_, reply)) if serde_json::from_slice::<serde_json::Value>(&reply.body).is_ok_and(|v| v["id"] == up.id.as_str()));
    // A job of this id exists (a stored upload named twice): its file stays.
    let taken = matches!(&answer, Err(p) if p.code == ErrorCode::AlreadyExists);
    if !ours && !taken {
        // Refused, or an idempotent replay naming the first job: this copy is not needed.
        remove_local(written.path.clone()).await;
        if let Some(c) = &svc.cluster_integrations {
            c.uploads.delete(&up.brand, &up.file()).await;
        }
    } else if svc.cluster.is_some() {
        svc.imports()?.queue(up.brand.clone(), up.id.clone());
    }
    let (_, reply) = answer?;
    Ok(reply_response(reply))
}

/// Cluster mode, on the node that received the upload: stores it in the object store,
/// then queues the job here (this node owns the brand's partition) or through the
/// owner, which fetches the stored file (the body is never forwarded: forwarding holds
/// a body in memory).
async fn queue_in_cluster(req: &HttpRequest, state: &AppState, up: Upload, written: upload::Written) -> Result<HttpResponse, Problem> {
    let svc = state.services()?;
    let (Some(node), Some(c)) = (&svc.cluster, &svc.cluster_integrations) else {
        return queue(req, state, up, written).await;
    };
    if let Err(e) = c.uploads.put(&up.brand, &up.file(), &written.path).await {
        tracing::warn!(brand = %up.brand, job = %up.id, error = %e, "cannot store an import upload in the object store");
        remove_local(written.path.clone()).await;
        return Err(Problem::overloaded("the upload could not be stored in the cluster; nothing was queued; retry shortly"));
    }
    let partition = node.partition_of(up.brand.as_str());
    match node.route(partition) {
        Route::Local => queue(req, state, up, written).await,
        Route::Forward(owner) => {
            let extra = [(STORED_UPLOAD_HEADER, up.id.to_string())];
            let res = crate::http::cluster::forward(req, web::Bytes::new(), node, &owner, partition, &extra).await;
            // The owner fetched its own copy (or refused the job and deleted the stored one).
            remove_local(written.path.clone()).await;
            Ok(res)
        }
        Route::Unavailable => {
            remove_local(written.path.clone()).await;
            c.uploads.delete(&up.brand, &up.file()).await;
            Err(crate::http::cluster::unavailable(partition))
        }
    }
}

/// Cluster mode, on the owner: the job of an upload another node stored. The file is
/// fetched from the object store through the upload writer (hashed and checked again).
async fn queue_stored(req: &HttpRequest, state: &AppState, mut up: Upload, stored: &str) -> Result<HttpResponse, Problem> {
    let svc = state.services()?;
    let bad = || Problem::invalid(format!("header.{STORED_UPLOAD_HEADER}"), "names no upload stored in this cluster");
    let Some(c) = &svc.cluster_integrations else { return Err(bad()) };
    up.id = Id::parse(stored).ok().filter(|id| id.as_str().starts_with("imp_")).ok_or_else(bad)?;
    if c.imports.cfg.dir.join(up.file()).exists() {
        return Err(Problem::new(ErrorCode::AlreadyExists, format!("import {} is already queued", up.id)));
    }
    let target =
        upload::Target { dir: c.imports.cfg.dir.clone(), file: up.file(), format: up.format, kind: up.kind, bytes_max: UPLOAD_BYTES_MAX };
    let written = match c.uploads.fetch(&up.brand, target).await {
        Ok(w) => w,
        Err(FetchError::Missing) => return Err(bad()),
        Err(FetchError::Write(e)) => return Err(upload_problem(e, None)),
        Err(FetchError::Store(e)) => {
            tracing::warn!(brand = %up.brand, job = %up.id, error = %e, "cannot fetch a stored import upload");
            return Err(Problem::overloaded("the stored upload could not be read from the cluster; retry shortly"));
        }
    };
    queue(req, state, up, written).await
}

#[utoipa::path(post, path = "/v1/brands/{brand}/imports", operation_id = "create_import", tag = "imports", params(
    ("brand" = crate::domain::BrandId, Path, description = "The brand id."),
    ("kind" = ImportKind, Query, description = "What the rows are."),
), request_body(description = "The file, streamed to disk: CSV (`text/csv`, a header row naming the columns) or NDJSON \
    (`application/x-ndjson`, one object per line), at most 512 MiB.", content(
    (Vec<u8> = "text/csv"),
    (Vec<u8> = "application/x-ndjson"),
)), responses(
    (status = 202, description = "The upload is durable and the job queued.", body = crate::domain::import::ImportView),
    (status = 422, description = "`unprocessable`: the header names no known column, or the file is not the format given.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let brand = brand_id(&path)?;
    caller.require_brand(&brand, Access::Write)?;
    let kind = kind_of(&query(&req)?)?;
    let format = format_of(&req)?;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > UPLOAD_BYTES_MAX) {
        return Err(too_large());
    }
    let key = idempotency_key(&req)?;
    let svc = state.services()?;
    let imports = svc.imports()?;
    let up = Upload { brand, id: new_job_id(), kind, format, key };
    let stored = req.headers().get(STORED_UPLOAD_HEADER).filter(|_| req.headers().contains_key(FORWARDED_BY));
    if let Some(stored) = stored {
        let stored = stored.to_str().unwrap_or_default().to_string();
        let _slot = imports.upload_slot().ok_or_else(|| Problem::overloaded("too many uploads are running; retry shortly"))?;
        return queue_stored(&req, &state, up, &stored).await;
    }
    let _in_progress = imports.begin(&up.brand, up.key.as_deref()).ok_or_else(|| {
        Problem::new(ErrorCode::IdempotencyInProgress, "an upload with this Idempotency-Key is still running; wait for its answer")
    })?;
    let _slot = imports.upload_slot().ok_or_else(|| Problem::overloaded("too many uploads are running; retry shortly"))?;
    // The single node's journal says when the disk is full; a cluster node has none (a
    // full disk fails the upload's write instead).
    let disk_full = || svc.local.as_ref().is_some_and(|l| l.journal.disk_full());
    if disk_full() {
        return Err(disk_full_problem());
    }
    let target = upload::Target { dir: imports.cfg.dir.clone(), file: up.file(), format, kind, bytes_max: UPLOAD_BYTES_MAX };
    let written = stream_to_disk(payload, target, disk_full).await?;
    queue_in_cluster(&req, &state, up, written).await
}

#[utoipa::path(get, path = "/v1/brands/{brand}/imports/{id}", operation_id = "get_import", tag = "imports", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The import job id.")), responses((status = 200, description = "The job: status, progress, the first 100 row errors.", body = crate::domain::import::ImportView)))]
async fn get(state: web::Data<AppState>, caller: Caller, path: web::Path<(String, String)>) -> Result<HttpResponse, Problem> {
    let brand = brand_id(&path.0)?;
    caller.require_brand(&brand, Access::Read)?;
    let id = id("id", &path.1)?;
    ask_brand(&state, brand, BrandCmd::Import(ImportCmd::Get { id }), None).await
}

#[utoipa::path(post, path = "/v1/brands/{brand}/imports/{id}/cancel", operation_id = "cancel_import", tag = "imports", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The import job id.")), responses(
    (status = 200, description = "The job, `cancelled`, with the rows applied before it stopped (at a chunk boundary; a queued job applied none). Its upload is removed. Cancelling again answers the same.", body = crate::domain::import::ImportView),
    (status = 409, description = "`invalid_transition`: the job is already done or failed.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn cancel(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let brand = caller.brand(&path.0, Access::Write)?;
    let id = id("id", &path.1)?;
    let idem = idem_key(&req, idempotency_key(&req)?, b"");
    let (_, reply) = ask_brand_reply(&state, brand.clone(), BrandCmd::Import(ImportCmd::Cancel { id: id.clone() }), idem).await?;
    #[derive(Deserialize)]
    struct Job {
        status: ImportStatus,
        format: ImportFormat,
    }
    // The upload is of no more use once the cancel is durable: remove it now rather than
    // when the runner reaches the job (a runner reading it stops at its next chunk).
    if let Ok(Job { status: ImportStatus::Cancelled, format }) = serde_json::from_slice(&reply.body) {
        let svc = state.services()?;
        let file = file_name(&id, format);
        if let Some(c) = &svc.cluster_integrations {
            c.uploads.delete(&brand, &file).await;
        }
        let path = svc.imports()?.cfg.dir.join(file);
        let removed = web::block(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(error = %e, job = %id, "cannot remove a cancelled import's file; it is removed on the next start");
        }
    }
    Ok(reply_response(reply))
}
