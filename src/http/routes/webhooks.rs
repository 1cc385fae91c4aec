//! Webhook subscriptions and their deliveries.

use std::collections::HashSet;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::actors::shard::BrandCmd;
use crate::domain::webhook::{Webhook, WebhookCmd};
use crate::domain::{BrandId, FieldError, Id};
use crate::feed::render::FEED_TYPES;
use crate::http::extract::{brand_id, id, idem_key, idempotency_key, query, Access, Caller, JsonBody};
use crate::http::problem::Problem;
use crate::http::{ask_brand, ask_brand_reply, AppState};
use crate::webhooks::store::Status;
use crate::webhooks::{sign, target};

/// Most deliveries in one page of `GET .../deliveries`.
const DELIVERIES_LIMIT_MAX: u64 = 1000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/brands/{brand}/webhooks", web::post().to(create))
        .route("/v1/brands/{brand}/webhooks", web::get().to(list))
        .route("/v1/brands/{brand}/webhooks/{id}", web::delete().to(delete))
        .route("/v1/brands/{brand}/webhooks/{id}/deliveries", web::get().to(deliveries))
        .route("/v1/brands/{brand}/webhooks/{id}/redrive", web::post().to(redrive))
        .route("/v1/brands/{brand}/webhooks/{id}/replay", web::post().to(replay));
}

/// The body of `POST .../webhooks`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = WebhookInput)]
#[serde(deny_unknown_fields)]
struct CreateInput {
    /// Where to deliver: `http://` or `https://`, no `user:pass@`, at most 2048 characters.
    url: String,
    /// The event types to deliver, each once.
    #[schema(value_type = Vec<super::schemas::FeedEventType>)]
    events: Vec<String>,
}

fn check_events(events: &[String]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if events.is_empty() {
        errors.push(FieldError::new("events", format!("name at least one of {}", FEED_TYPES.join(", "))));
    }
    let mut seen = HashSet::new();
    for (i, e) in events.iter().enumerate() {
        if !FEED_TYPES.contains(&e.as_str()) {
            errors.push(FieldError::new(format!("events[{i}]"), format!("unknown event type; one of {}", FEED_TYPES.join(", "))));
        } else if !seen.insert(e) {
            errors.push(FieldError::new(format!("events[{i}]"), "named twice"));
        }
    }
    errors
}

fn new_webhook_id() -> Id {
    use rand::RngCore;
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    Id::parse(&format!("wh_{}", hex::encode(b))).expect("hex is a valid id")
}

#[utoipa::path(post, path = "/v1/brands/{brand}/webhooks", operation_id = "create_webhook", tag = "webhooks", params(("brand" = crate::domain::BrandId, Path, description = "The brand id.")), request_body = CreateInput, responses(
    (status = 201, description = "The subscription with its `whsec_` secret, shown only now.", body = crate::domain::webhook::WebhookView),
    (status = 422, description = "`unprocessable`: too many subscriptions (and `idempotency_key_reused`).", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: JsonBody<CreateInput>,
) -> Result<HttpResponse, Problem> {
    let brand = brand_id(&path)?;
    caller.require_brand(&brand, Access::Write)?;
    let svc = state.services()?;
    let mut errors = check_events(&body.value.events);
    if let Err(e) = target::check_registration(&body.value.url, svc.webhooks()?.allow_private()) {
        errors.insert(0, FieldError::new("url", e));
    }
    if !errors.is_empty() {
        return Err(Problem::invalid_fields(errors));
    }
    let idem = idem_key(&req, idempotency_key(&req)?, &body.bytes);
    let CreateInput { url, events } = body.value;
    let w = Webhook { id: new_webhook_id(), url, events, secret: sign::new_secret(), created_at: svc.clock.now() };
    ask_brand(&state, brand, BrandCmd::Webhook(WebhookCmd::Create(Box::new(w))), idem).await
}

#[utoipa::path(get, path = "/v1/brands/{brand}/webhooks", operation_id = "list_webhooks", tag = "webhooks", params(("brand" = crate::domain::BrandId, Path, description = "The brand id.")), responses((status = 200, description = "The subscriptions (without secrets).", body = super::schemas::WebhookList)))]
async fn list(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let brand = brand_id(&path)?;
    caller.require_brand(&brand, Access::Read)?;
    ask_brand(&state, brand, BrandCmd::Webhook(WebhookCmd::List), None).await
}

#[utoipa::path(delete, path = "/v1/brands/{brand}/webhooks/{id}", operation_id = "delete_webhook", tag = "webhooks", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The webhook id.")), responses((status = 204, description = "Deleted; its queued deliveries are dropped.")))]
async fn delete(state: web::Data<AppState>, caller: Caller, path: web::Path<(String, String)>) -> Result<HttpResponse, Problem> {
    let brand = brand_id(&path.0)?;
    caller.require_brand(&brand, Access::Write)?;
    let id = id("id", &path.1)?;
    ask_brand(&state, brand, BrandCmd::Webhook(WebhookCmd::Delete { id }), None).await
}

/// The brand and webhook of a path, checked to exist and to belong together.
async fn owned(state: &AppState, caller: &Caller, path: &(String, String), access: Access) -> Result<(BrandId, Id), Problem> {
    let brand = brand_id(&path.0)?;
    caller.require_brand(&brand, access)?;
    let id = id("id", &path.1)?;
    ask_brand_reply(state, brand.clone(), BrandCmd::Webhook(WebhookCmd::Get { id: id.clone() }), None).await?;
    Ok((brand, id))
}

fn store_problem(e: String) -> Problem {
    Problem::overloaded(format!("{e}; retry shortly"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    status: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

#[utoipa::path(get, path = "/v1/brands/{brand}/webhooks/{id}/deliveries", operation_id = "list_deliveries", tag = "webhooks", params(
    ("brand" = crate::domain::BrandId, Path, description = "The brand id."),
    ("id" = crate::domain::Id, Path, description = "The webhook id."),
    ("status" = Option<crate::webhooks::store::Status>, Query, description = "Only deliveries in this state."),
    ("after" = Option<String>, Query, pattern = "^[0-9]{1,20}$", description = "The `next` of the previous page."),
    ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1..=1000, default 100."),
), responses((status = 200, description = "Deliveries in seq order.", body = super::schemas::DeliveryList)))]
async fn deliveries(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (_, id) = owned(&state, &caller, &path, Access::Read).await?;
    let q: DeliveriesQuery = query(&req)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| Problem::invalid("status", "must be pending, failed, dead or delivered"))?),
    };
    let num = |field: &str, v: Option<&str>, max: u64| -> Result<Option<u64>, Problem> {
        v.map(|v| {
            v.parse::<u64>().ok().filter(|n| *n <= max).ok_or_else(|| Problem::invalid(field, format!("must be an integer in 0..={max}")))
        })
        .transpose()
    };
    let after = num("after", q.after.as_deref(), u64::MAX)?.unwrap_or(0);
    let limit = num("limit", q.limit.as_deref(), DELIVERIES_LIMIT_MAX)?.unwrap_or(100) as usize;
    if limit == 0 {
        return Err(Problem::invalid("limit", format!("must be an integer in 1..={DELIVERIES_LIMIT_MAX}")));
    }
    let rows = state.services()?.webhooks()?.deliveries(id.as_str(), status, after, limit).await.map_err(store_problem)?;
    let next = rows.last().map_or(after, |r| r.seq);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deliveries": rows, "next": next.to_string() })))
}

#[utoipa::path(post, path = "/v1/brands/{brand}/webhooks/{id}/redrive", operation_id = "redrive_deliveries", tag = "webhooks", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The webhook id.")), responses((status = 200, description = "Dead deliveries queued again.", body = super::schemas::Redriven)))]
async fn redrive(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    // Validated like everywhere, but not honoured here (see the notes in docs/api-v1.md).
    idempotency_key(&req)?;
    let (_, id) = owned(&state, &caller, &path, Access::Write).await?;
    let n = state.services()?.webhooks()?.redrive(id.as_str()).await.map_err(store_problem)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "requeued": n })))
}

/// The body of `POST .../webhooks/{id}/replay`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplayInput {
    /// Send again the subscribed events after this feed seq.
    after_seq: u64,
}

#[utoipa::path(post, path = "/v1/brands/{brand}/webhooks/{id}/replay", operation_id = "replay_events", tag = "webhooks", params(("brand" = crate::domain::BrandId, Path, description = "The brand id."), ("id" = crate::domain::Id, Path, description = "The webhook id.")), request_body = ReplayInput, responses((status = 202, description = "The events after `after_seq` are being sent again, in order.", body = super::schemas::Replaying)))]
async fn replay(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: JsonBody<ReplayInput>,
) -> Result<HttpResponse, Problem> {
    // Validated like everywhere, but not honoured here (see the notes in docs/api-v1.md).
    idempotency_key(&req)?;
    let (_, id) = owned(&state, &caller, &path, Access::Write).await?;
    let after_seq = body.value.after_seq;
    let known = state.services()?.webhooks()?.replay(id.as_str(), after_seq).await.map_err(store_problem)?;
    if !known {
        return Err(Problem::new(crate::domain::ErrorCode::NotReady, "this webhook's deliveries are still being set up; retry shortly"));
    }
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "status": "replaying", "after_seq": after_seq })))
}
