//! A SKU's stock history: `GET /v1/brands/{brand}/skus/{sku}/history?after=&limit=&order=`.
//!
//! Read from the change feed's store (`feed::history`), so it follows the feed's rules:
//! its retention, its cursors (the feed seq of a change, with the journal history) and
//! their 410s, and the same read-your-writes wait before reading.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::feed::{cluster_catch_up, feed_problem, parse_num, CATCH_UP_WAIT};
use crate::actors::shard::BrandCmd;
use crate::feed::history::{Order, LIMIT_DEFAULT, LIMIT_MAX};
use crate::feed::{Cursor, FeedError};
use crate::http::extract::{brand_id, id, query, Access, Caller};
use crate::http::problem::Problem;
use crate::http::{ask_brand_reply, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/brands/{brand}/skus/{sku}/history", web::get().to(sku_history));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    after: Option<String>,
    limit: Option<String>,
    order: Option<String>,
}

fn order(v: Option<&str>) -> Result<Order, Problem> {
    match v {
        None | Some("oldest_first") => Ok(Order::OldestFirst),
        Some("newest_first") => Ok(Order::NewestFirst),
        Some(_) => Err(Problem::invalid("order", "must be `oldest_first` or `newest_first`")),
    }
}

#[utoipa::path(get, path = "/v1/brands/{brand}/skus/{sku}/history", operation_id = "get_sku_history", tag = "stock", params(
    ("brand" = crate::domain::BrandId, Path, description = "The brand id."),
    ("sku" = crate::domain::Id, Path, description = "The SKU id."),
    ("after" = Option<String>, Query, pattern = "^([0-9a-f]{16}\\.)?[0-9]{1,20}$", description = "The `next` of the previous page (a position in the brand's change feed: `<seq>` or `<history>.<seq>`). Absent: from the oldest kept change (`oldest_first`) or the newest (`newest_first`)."),
    ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1..=1000 changes, default 100."),
    ("order" = Option<String>, Query, pattern = "^(oldest_first|newest_first)$", description = "`oldest_first` (default): the changes after `after`, in commit order. `newest_first`: the changes before `after`, newest first."),
), responses(
    (status = 200, description = "The SKU's stock changes, each with its time, cause, delta and the levels after it.", body = super::schemas::HistoryPage),
    (status = 404, description = "`not_found`: the brand has no such SKU.", body = super::schemas::Problem, content_type = "application/problem+json"),
    (status = 410, description = "`cursor_expired`: `after` is older than the feed's retention; start again without it. `cursor_history_changed`: `after` is from before a restore or repair of the server; read again from the problem's `next`.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn sku_history(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let brand = brand_id(&path.0)?;
    caller.require_brand(&brand, Access::Read)?;
    let sku = id("sku", &path.1)?;
    let q: HistoryQuery = query(&req)?;
    let cursor = match q.after.as_deref() {
        Some(a) => Some((Cursor::parse(a).ok_or_else(|| Problem::invalid("after", "must be a `next` this server returned"))?, a)),
        None => None,
    };
    let limit = parse_num("limit", q.limit.as_deref(), 1..=LIMIT_MAX as u64)?.map_or(LIMIT_DEFAULT, |n| n as usize);
    let order = order(q.order.as_deref())?;
    // An unknown SKU is 404 (as its stock is); the answer's LSN is what the feed must
    // cover for the history to show every change the caller could have seen.
    let (brand_lsn, _) = ask_brand_reply(&state, brand.clone(), BrandCmd::GetStock { sku: sku.clone() }, None).await?;
    let svc = state.services()?;
    let feed = svc.feed()?;
    match &svc.cluster {
        None => {
            if !feed.wait_covered(brand_lsn, CATCH_UP_WAIT).await {
                return Err(feed_problem(FeedError::Behind));
            }
        }
        // The owner answers (the SKU is read above); its feed is caught up like any node's.
        Some(node) => cluster_catch_up(node, feed, &brand).await?,
    }
    let after = match cursor {
        Some((c, given)) => Some(feed.seq_of(&brand, c, given).await.map_err(feed_problem)?),
        None => None,
    };
    let page = feed.sku_history(&brand, &sku, after, order, limit).await.map_err(feed_problem)?;
    let body = format!(r#"{{"sku":"{sku}","changes":[{}],"next":"{}"}}"#, page.changes.join(","), feed.cursor(page.next));
    Ok(HttpResponse::Ok().content_type("application/json").body(body))
}
