//! The change feed: `GET /v1/brands/{brand}/events?after=&limit=&wait=`.
//!
//! Before reading, the handler waits (at most [`CATCH_UP_WAIT`]) until the feed covers
//! the brand's newest record as the brand's shard knows it: a client that wrote and
//! then reads the feed sees its write (read-your-writes), and a page never depends on
//! how far behind the feed thread happens to be.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::actors::shard::BrandCmd;
use crate::domain::ErrorCode;
use crate::feed::{Cursor, FeedError, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, WAIT_SECONDS_MAX};
use crate::http::extract::{brand_id, query, Access, Caller};
use crate::http::problem::Problem;
use crate::http::{ask_brand_reply, AppState};

/// Longest wait for the feed to catch up with the brand's newest record.
pub(super) const CATCH_UP_WAIT: Duration = Duration::from_secs(5);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/brands/{brand}/events", web::get().to(events));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after: Option<String>,
    limit: Option<String>,
    wait: Option<String>,
}

pub(super) fn parse_num(field: &str, v: Option<&str>, range: std::ops::RangeInclusive<u64>) -> Result<Option<u64>, Problem> {
    let Some(v) = v else { return Ok(None) };
    match v.parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(Problem::invalid(field, format!("must be an integer in {}..={}", range.start(), range.end()))),
    }
}

pub(crate) fn feed_problem(e: FeedError) -> Problem {
    match e {
        FeedError::Expired { .. } => Problem::new(ErrorCode::CursorExpired, e.to_string()),
        FeedError::HistoryChanged { ref next, .. } => {
            let next = next.clone();
            Problem::new(ErrorCode::CursorHistoryChanged, e.to_string()).with_next(next)
        }
        FeedError::Ahead { .. } => Problem::invalid("after", e.to_string()),
        FeedError::Behind => Problem::new(ErrorCode::NotReady, e.to_string()),
        FeedError::Busy | FeedError::Stopped => Problem::overloaded(e.to_string()),
        FeedError::BrandBusy => Problem::new(ErrorCode::RateLimited, e.to_string()),
        FeedError::Store(inner) => {
            tracing::error!(error = %inner, "feed store read failed");
            Problem::overloaded("the feed store could not be read; retry shortly")
        }
    }
}

/// Cluster mode: this node answers from its own build of the feed once it has read the
/// brand's partition journal as far as it stood when the request came (whoever wrote
/// it, through whichever node).
pub(super) async fn cluster_catch_up(
    node: &crate::cluster::node::Node,
    feed: &crate::feed::Feed,
    brand: &crate::domain::BrandId,
) -> Result<(), Problem> {
    let partition = node.partition_of(brand.as_str());
    if let crate::cluster::engine::PartitionId::Brand(n) = partition {
        if feed.partition_stopped(n) {
            return Err(Problem::new(
                ErrorCode::NotReady,
                format!("the feed of partition {partition} stopped at a journal entry it cannot apply (see the server log); an operator must look"),
            ));
        }
    }
    let end = node.journal_end(partition).await.map_err(|e| {
        Problem::new(
            ErrorCode::PartitionUnavailable,
            format!("the cluster journal could not be asked where partition {partition} ends ({e}); retry shortly"),
        )
    })?;
    let waited = std::time::Instant::now();
    let covered = feed.wait_covered(end, CATCH_UP_WAIT).await;
    metrics::histogram!("zaiko_feed_catch_up_wait_seconds").record(waited.elapsed().as_secs_f64());
    if !covered {
        return Err(feed_problem(FeedError::Behind));
    }
    if !feed.brand_known(brand).await.map_err(feed_problem)? {
        return Err(Problem::new(ErrorCode::NotFound, format!("brand {brand} does not exist")));
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/brands/{brand}/events", operation_id = "list_events", tag = "feed", params(
    ("brand" = crate::domain::BrandId, Path, description = "The brand id."),
    ("after" = Option<String>, Query, pattern = "^([0-9a-f]{16}\\.)?[0-9]{1,20}$", description = "The `next` of the previous page (`<seq>` or `<history>.<seq>`; 0 or absent: from the oldest kept)."),
    ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1..=1000 events, default 100."),
    ("wait" = Option<u32>, Query, minimum = 0, maximum = 30, description = "Long poll: seconds (0..=30) to wait for an event when there is none."),
), responses(
    (status = 200, description = "Events in commit order.", body = super::schemas::EventPage),
    (status = 410, description = "`cursor_expired`: `after` is older than the retention; start again from 0 and resync. `cursor_history_changed`: `after` is from before a restore or repair of the server; read the stock again, then follow from the problem's `next`.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn events(req: HttpRequest, state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let brand = brand_id(&path)?;
    caller.require_brand(&brand, Access::Read)?;
    let q: EventsQuery = query(&req)?;
    // The cursor is opaque to clients: the seq of the last event they saw, and the
    // journal history it is a position in.
    let cursor = match q.after.as_deref() {
        Some(a) => Some((Cursor::parse(a).ok_or_else(|| Problem::invalid("after", "must be a `next` this server returned"))?, a)),
        None => None,
    };
    let limit = parse_num("limit", q.limit.as_deref(), 1..=PAGE_LIMIT_MAX as u64)?.map_or(PAGE_LIMIT_DEFAULT, |n| n as usize);
    let wait = Duration::from_secs(parse_num("wait", q.wait.as_deref(), 0..=WAIT_SECONDS_MAX)?.unwrap_or(0));
    let svc = state.services()?;
    let feed = svc.feed()?;
    match &svc.cluster {
        None => {
            let (brand_lsn, _) = ask_brand_reply(&state, brand.clone(), BrandCmd::Get, None).await?;
            if !feed.wait_covered(brand_lsn, CATCH_UP_WAIT).await {
                return Err(feed_problem(FeedError::Behind));
            }
        }
        Some(node) => cluster_catch_up(node, feed, &brand).await?,
    }
    let after = match cursor {
        Some((c, given)) => Some(feed.seq_of(&brand, c, given).await.map_err(feed_problem)?),
        None => None,
    };
    let page = feed.page(&brand, after, limit, wait).await.map_err(feed_problem)?;
    let body = format!(r#"{{"events":[{}],"next":"{}"}}"#, page.events.join(","), feed.cursor(page.next));
    Ok(HttpResponse::Ok().content_type("application/json").body(body))
}
