//! `GET /v1/search/skus`: check and bound the query string, scope it to the caller,
//! wait for `min_lsn`, and run the search on the blocking pool.
//!
//! Contract choices: an empty parameter (`brand=`) is the same as an absent one; an
//! unknown or repeated parameter is 400; a brand token that asks for another brand
//! gets 403, as everywhere else in the API; `price_min`/`price_max` are accepted as
//! extra filters. The answer carries `X-Zaiko-Index-Lsn`, the LSN the index covered.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use tokio::sync::Semaphore;

use crate::actors::registry::Principal;
use crate::domain::catalog::PRICE_MAX;
use crate::domain::{BrandId, ErrorCode, Id};
use crate::http::extract::Caller;
use crate::http::problem::Problem;
use crate::http::AppState;
use crate::index::query::{terms, QUERY_CHARS_MAX, QUERY_TERMS_MAX, TERM_CHARS_MAX};
use crate::index::search::{decode_cursor, LIMIT_MAX};
use crate::index::{SearchRequest, Sort};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/search/skus", web::get().to(search_skus));
}

/// How long a search waits for the index to cover `min_lsn` before `not_ready`.
pub const MIN_LSN_WAIT: Duration = Duration::from_secs(2);
/// Searches running at once; past it, 503 `overloaded`.
pub const SEARCHES_IN_FLIGHT_MAX: usize = 32;
/// Longest `category`, `color` or `size` value, in characters.
pub const FILTER_CHARS_MAX: usize = 200;
/// Page size when `limit` is absent.
pub const LIMIT_DEFAULT: usize = 20;

const PARAMS: [&str; 13] =
    ["q", "brand", "category", "color", "size", "location", "in_stock", "sort", "limit", "cursor", "min_lsn", "price_min", "price_max"];

static SEARCH_SLOTS: Semaphore = Semaphore::const_new(SEARCHES_IN_FLIGHT_MAX);

fn bad(param: &str, detail: impl Into<String>) -> Problem {
    Problem::invalid(format!("query.{param}"), detail)
}

/// The query string as a map; unknown and repeated parameters are refused, empty
/// values dropped.
fn params(query: &str) -> Result<BTreeMap<String, String>, Problem> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query).map_err(|e| bad("string", e.to_string()))?.into_inner();
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        if !PARAMS.contains(&k.as_str()) {
            return Err(bad(&k, format!("unknown parameter; known are {}", PARAMS.join(", "))));
        }
        if out.contains_key(&k) {
            return Err(bad(&k, "given more than once"));
        }
        if !v.is_empty() {
            out.insert(k, v);
        }
    }
    Ok(out)
}

fn int<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    p: &BTreeMap<String, String>,
    name: &str,
    min: T,
    max: T,
) -> Result<Option<T>, Problem> {
    let Some(raw) = p.get(name) else { return Ok(None) };
    match raw.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(Some(v)),
        _ => Err(bad(name, format!("must be an integer in {min}..={max}"))),
    }
}

fn text(p: &BTreeMap<String, String>, name: &str) -> Result<Option<String>, Problem> {
    let Some(v) = p.get(name) else { return Ok(None) };
    if v.chars().count() > FILTER_CHARS_MAX || v.chars().any(char::is_control) {
        return Err(bad(name, format!("must be 1..={FILTER_CHARS_MAX} characters without control characters")));
    }
    Ok(Some(v.clone()))
}

fn check_q(q: &str) -> Result<(), Problem> {
    if q.chars().count() > QUERY_CHARS_MAX || q.chars().any(char::is_control) {
        return Err(bad("q", format!("must be at most {QUERY_CHARS_MAX} characters without control characters")));
    }
    let terms = terms(q);
    if terms.len() > QUERY_TERMS_MAX {
        return Err(bad("q", format!("at most {QUERY_TERMS_MAX} words")));
    }
    if terms.iter().any(|t| t.chars().count() > TERM_CHARS_MAX) {
        return Err(bad("q", format!("each word at most {TERM_CHARS_MAX} characters")));
    }
    Ok(())
}

/// The brand the search is limited to: a brand token's own, always.
fn scope(caller: &Caller, asked: Option<&String>) -> Result<Option<BrandId>, Problem> {
    let asked = asked.map(|b| BrandId::parse(b).map_err(|e| bad("brand", e.to_string()))).transpose()?;
    match (&caller.0, asked) {
        (Principal::Brand(own), Some(b)) if *own != b => Err(Problem::forbidden("a brand token searches only its own brand")),
        (Principal::Brand(own), _) => Ok(Some(own.clone())),
        (Principal::Admin | Principal::Viewer, asked) => Ok(asked),
    }
}

/// The checked request and its `min_lsn`.
fn to_request(p: &BTreeMap<String, String>, caller: &Caller) -> Result<(SearchRequest, Option<u64>), Problem> {
    let q = p.get("q").cloned().unwrap_or_default();
    check_q(&q)?;
    let in_stock = match p.get("in_stock").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(bad("in_stock", "must be true or false")),
    };
    let sort = match p.get("sort") {
        None => Sort::Relevance,
        Some(s) => Sort::parse(s).ok_or_else(|| bad("sort", format!("must be one of {}", Sort::ALL.map(Sort::name).join(", "))))?,
    };
    let location = p.get("location").map(|l| Id::parse(l).map_err(|e| bad("location", e.to_string()))).transpose()?;
    let (price_min, price_max) = (int(p, "price_min", 0, PRICE_MAX)?, int(p, "price_max", 0, PRICE_MAX)?);
    if let (Some(lo), Some(hi)) = (price_min, price_max) {
        if lo > hi {
            return Err(bad("price_min", "must not exceed price_max"));
        }
    }
    let mut r = SearchRequest {
        q,
        brand: scope(caller, p.get("brand"))?,
        category: text(p, "category")?,
        color: text(p, "color")?,
        size: text(p, "size")?,
        location,
        in_stock,
        price_min,
        price_max,
        sort,
        limit: int(p, "limit", 1, LIMIT_MAX)?.unwrap_or(LIMIT_DEFAULT),
        after: None,
    };
    if let Some(c) = p.get("cursor") {
        r.after = Some(decode_cursor(&r, c).map_err(|e| bad("cursor", e.to_string()))?);
    }
    Ok((r, int(p, "min_lsn", 0, u64::MAX)?))
}

async fn search_skus(req: HttpRequest, state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, Problem> {
    let svc = state.services()?;
    let (request, min_lsn) = to_request(&params(req.query_string())?, &caller)?;
    if let Some(lsn) = min_lsn {
        if !svc.skus.wait_covered(lsn, MIN_LSN_WAIT).await {
            let detail = format!(
                "the search index did not reach lsn {lsn} within {} s (it covers {}); retry after the Retry-After delay",
                MIN_LSN_WAIT.as_secs(),
                svc.skus.covered_lsn()
            );
            return Err(Problem::new(ErrorCode::NotReady, detail));
        }
    }
    let _slot =
        SEARCH_SLOTS.try_acquire().map_err(|_| Problem::overloaded("too many searches are running; retry after the Retry-After delay"))?;
    let covered = svc.skus.covered_lsn();
    let skus = svc.skus.clone();
    let result = web::block(move || skus.search(&request))
        .await
        .map_err(|_| Problem::overloaded("the search was cancelled; retry"))?
        .map_err(|e| {
            tracing::error!(error = %e, "search failed");
            Problem::overloaded("the search index could not be read; retry shortly")
        })?;
    Ok(HttpResponse::Ok().insert_header(("X-Zaiko-Index-Lsn", covered.to_string())).json(result))
}
