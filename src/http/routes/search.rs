//! `GET /v1/search/skus` and `GET /v1/search/shipments`: check and bound the query
//! string, scope it to the caller, wait for `min_lsn`, and run the search on the
//! blocking pool.
//!
//! Contract choices: an empty parameter (`brand=`) is the same as an absent one; an
//! unknown or repeated parameter is 400 (except `status`, see below); a brand token
//! that asks for another brand gets 403, as everywhere else in the API;
//! `price_min`/`price_max` are accepted as extra filters. The answer carries
//! `X-Zaiko-Index-Lsn`, the LSN the index covered.
//!
//! SKUs: `channel=<id>` makes `in_stock=true` mean "available to that channel > 0"
//! and adds `channel_available` to the hits (a channel the SKU's brand never
//! configured sells what is available anywhere, as the contract says). A search of
//! one brand by a channel it has not configured, while it has others, is 422
//! `unknown_channel`.
//!
//! Shipments: `status` takes one or several statuses, comma-separated or repeated
//! (any of them matches); `created_from` (inclusive) and `created_to` (exclusive) are
//! RFC 3339 instants; `sort` is `relevance` (the default when `q` has words),
//! `created_desc` (the default otherwise, and what `relevance` without words means)
//! or `updated_desc`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use tokio::sync::Semaphore;

use crate::actors::registry::Principal;
use crate::actors::shard::BrandCmd;
use crate::cluster::engine::PartitionId;
use crate::cluster::node::{Node, Owner, Route};
use crate::domain::catalog::PRICE_MAX;
use crate::domain::channel::unknown_channel;
use crate::domain::{BrandId, ErrorCode, Id, Timestamp};
use crate::http::extract::Caller;
use crate::http::problem::Problem;
use crate::http::{ask_brand_reply, AppState};
use crate::http::{cluster, ClusterSearch};
use crate::index::query::{terms, QUERY_CHARS_MAX, QUERY_TERMS_MAX, TERM_CHARS_MAX};
use crate::index::search::Part;
use crate::index::search::{decode_cursor, Coverage, LIMIT_MAX};
use crate::index::shipments::query::{parse_status, ShipmentRequest, ShipmentSort, STATUSES};
use crate::index::{IndexError, SearchRequest, Sort};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/search/skus", web::get().to(search_skus));
    cfg.route("/v1/search/shipments", web::get().to(search_shipments));
    cfg.route("/v1/search/labels", web::get().to(search_labels));
}

/// How long a search waits for the index to cover `min_lsn` before `not_ready`.
pub const MIN_LSN_WAIT: Duration = Duration::from_secs(2);
/// Searches running at once; past it, 503 `overloaded`.
pub const SEARCHES_IN_FLIGHT_MAX: usize = 32;
/// Longest `category`, `color` or `size` value, in characters.
pub const FILTER_CHARS_MAX: usize = 200;
/// Page size when `limit` is absent.
pub const LIMIT_DEFAULT: usize = 20;

const SKU_PARAMS: &[&str] = &[
    "q",
    "brand",
    "category",
    "color",
    "size",
    "location",
    "channel",
    "in_stock",
    "sort",
    "limit",
    "cursor",
    "min_lsn",
    "price_min",
    "price_max",
    "group",
];
const SHIPMENT_PARAMS: &[&str] = &["q", "brand", "status", "created_from", "created_to", "sort", "limit", "cursor", "min_lsn"];
/// Parameters that may be repeated; their values are joined with commas.
const REPEATABLE: &[&str] = &["status"];
/// Longest `status` value (all of them, comma-separated), in bytes.
const STATUS_BYTES_MAX: usize = 200;
/// Most statuses one search names (repeats included): 20 of the longest name (9
/// bytes) and their commas stay under [`STATUS_BYTES_MAX`], so a list of known
/// statuses is refused for its length only past this count, which the document states.
pub const STATUSES_GIVEN_MAX: usize = 20;

static SEARCH_SLOTS: Semaphore = Semaphore::const_new(SEARCHES_IN_FLIGHT_MAX);

fn bad(param: &str, detail: impl Into<String>) -> Problem {
    Problem::invalid(format!("query.{param}"), detail)
}

/// The query string as a map; unknown and repeated parameters are refused (but
/// [`REPEATABLE`] ones are joined with commas), empty values dropped.
fn params(query: &str, known: &[&str]) -> Result<BTreeMap<String, String>, Problem> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query).map_err(|e| bad("string", e.to_string()))?.into_inner();
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pairs {
        if !known.contains(&k.as_str()) {
            return Err(bad(&k, format!("unknown parameter; known are {}", known.join(", "))));
        }
        match out.get_mut(&k) {
            Some(joined) if REPEATABLE.contains(&k.as_str()) => {
                joined.push(',');
                joined.push_str(&v);
            }
            Some(_) => return Err(bad(&k, "given more than once")),
            None if !v.is_empty() => {
                out.insert(k, v);
            }
            None => {}
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
        return Err(bad("q", format!("at most {QUERY_TERMS_MAX} words; shorten the text")));
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
    let channel = p.get("channel").map(|c| Id::parse(c).map_err(|e| bad("channel", e.to_string()))).transpose()?;
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
        channel,
        in_stock,
        price_min,
        price_max,
        sort,
        limit: int(p, "limit", 1, LIMIT_MAX)?.unwrap_or(LIMIT_DEFAULT),
        after: None,
        group_by_product: match p.get("group").map(String::as_str) {
            None => false,
            Some("product") => true,
            Some(_) => return Err(bad("group", "must be product (or left out for one hit per sku)")),
        },
    };
    if let Some(c) = p.get("cursor") {
        r.after = Some(decode_cursor(&r, c).map_err(|e| bad("cursor", e.to_string()))?);
    }
    Ok((r, int(p, "min_lsn", 0, u64::MAX)?))
}

/// The query parameters both searches take, for the OpenAPI document only (the
/// handlers read the query string themselves, to name a bad parameter exactly).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct CommonParams {
    /// Words (Japanese substrings of 2+ characters and Latin or digit substrings of 3+
    /// match): at most 512 characters and 64 words of at most 128 characters each. SKU
    /// search: up to 4 words all must match; more (a pasted title), at least a quarter
    /// of them, ranked by how many match.
    q: Option<String>,
    /// Limit to a brand (a brand token is always limited to its own).
    #[param(value_type = Option<BrandId>)]
    brand: Option<String>,
    /// Page size: 1..=100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page (of the same search).
    cursor: Option<String>,
    /// Wait (up to 2 s) until the index covers this `X-Zaiko-Lsn`; else 503 `not_ready`.
    min_lsn: Option<u64>,
}

#[utoipa::path(get, path = "/v1/search/skus", operation_id = "search_skus", tag = "search", params(
    CommonParams,
    ("sort" = Option<String>, Query, description = "The order of the hits (default `relevance`)."),
    ("category" = Option<String>, Query, description = "This category or any under it."),
    ("color" = Option<String>, Query, description = "This colour."),
    ("size" = Option<String>, Query, description = "This size."),
    ("location" = Option<Id>, Query, description = "Availability at this location."),
    ("channel" = Option<Id>, Query, description = "Availability to this channel."),
    ("in_stock" = Option<bool>, Query, description = "`true`: available > 0 (at `location`, or to `channel`)."),
    ("price_min" = Option<i64>, Query, description = "Lowest price, yen (at most `price_max`)."),
    ("price_max" = Option<i64>, Query, description = "Highest price, yen."),
    ("group" = Option<String>, Query, description = "`product`: one hit per product (a SKU without a product is its own), its best variant with `variants`; `total` and cursors count products."),
), responses(
    (status = 200, description = "Hits, total, facets, next cursor; `X-Zaiko-Index-Lsn` says what the index covers.", body = crate::index::SearchResult),
    (status = 422, description = "`unknown_channel`: a search of one brand by a channel it has not configured, while it has others.", body = super::schemas::Problem, content_type = "application/problem+json"),
))]
async fn search_skus(req: HttpRequest, state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, Problem> {
    let svc = state.services()?;
    let (request, min_lsn) = to_request(&params(req.query_string(), SKU_PARAMS)?, &caller)?;
    if let Some(node) = &svc.cluster {
        return in_cluster(&req, &state, node, svc.cluster_search.as_ref().ok_or_else(Problem::not_ready)?, request, min_lsn).await;
    }
    let local = svc.local()?;
    check_channel(&state, &request).await?;
    let skus = local.skus.clone();
    respond(local.skus.coverage(), min_lsn, move || skus.search(&request)).await
}

/// The display names of colour and category values (`crate::index::labels`): what
/// the UI shows for a stored value, and what `q` also matches.
#[utoipa::path(get, path = "/v1/search/labels", operation_id = "search_labels", tag = "search", responses(
    (status = 200, description = "Colour and category values with their Japanese and English names.", body = crate::index::labels::Labels),
))]
async fn search_labels(_caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(crate::index::labels::all())
}

/// A search of one brand by a channel the brand has not configured, while it has
/// others, is `unknown_channel`, as a reservation for it would be. A search across
/// brands does not check: each brand's SKUs show that channel as the brand would
/// sell to it.
async fn check_channel(state: &AppState, r: &SearchRequest) -> Result<(), Problem> {
    #[derive(serde::Deserialize)]
    struct Listed {
        channels: Vec<Named>,
    }
    #[derive(serde::Deserialize)]
    struct Named {
        id: Id,
    }
    let (Some(brand), Some(channel)) = (&r.brand, &r.channel) else { return Ok(()) };
    match ask_brand_reply(state, brand.clone(), BrandCmd::ListChannels, None).await {
        Ok((_, reply)) => {
            // The shard renders this body itself; were it ever unreadable, no channel
            // would be refused (today's behaviour), not the search.
            let configured = serde_json::from_slice::<Listed>(&reply.body).map(|l| l.channels).unwrap_or_default();
            unknown_channel(channel, configured.iter().map(|c| &c.id)).map_or(Ok(()), |r| Err(r.into()))
        }
        // No such brand: the search finds nothing, as without a channel.
        Err(p) if p.code == ErrorCode::NotFound => Ok(()),
        Err(p) => Err(p),
    }
}

/// `status`: one or several statuses, comma-separated, each once.
fn statuses(p: &BTreeMap<String, String>) -> Result<Vec<crate::domain::fulfilment::ShipmentStatus>, Problem> {
    let Some(raw) = p.get("status") else { return Ok(Vec::new()) };
    let names = || STATUSES.map(|s| s.as_str()).join(", ");
    if raw.len() > STATUS_BYTES_MAX {
        return Err(bad("status", format!("too long; give some of {}", names())));
    }
    if raw.split(',').filter(|n| !n.is_empty()).count() > STATUSES_GIVEN_MAX {
        return Err(bad("status", format!("at most {STATUSES_GIVEN_MAX} statuses; give some of {}", names())));
    }
    let mut out = Vec::new();
    for name in raw.split(',').filter(|n| !n.is_empty()) {
        let s = parse_status(name).ok_or_else(|| bad("status", format!("unknown status {name:?}; use one or more of {}", names())))?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

fn time(p: &BTreeMap<String, String>, name: &str) -> Result<Option<Timestamp>, Problem> {
    let Some(raw) = p.get(name) else { return Ok(None) };
    Timestamp::parse_rfc3339(raw).map(Some).ok_or_else(|| bad(name, "must be an RFC 3339 time such as 2026-11-28T00:00:00Z"))
}

/// The checked shipment request and its `min_lsn`.
fn to_shipment_request(p: &BTreeMap<String, String>, caller: &Caller) -> Result<(ShipmentRequest, Option<u64>), Problem> {
    let q = p.get("q").cloned().unwrap_or_default();
    check_q(&q)?;
    let sort = p
        .get("sort")
        .map(|s| {
            ShipmentSort::parse(s)
                .ok_or_else(|| bad("sort", format!("must be one of {}", ShipmentSort::ALL.map(ShipmentSort::name).join(", "))))
        })
        .transpose()?;
    let (created_from, created_to) = (time(p, "created_from")?, time(p, "created_to")?);
    if let (Some(from), Some(to)) = (created_from, created_to) {
        if from > to {
            return Err(bad("created_from", "must not be after created_to"));
        }
    }
    let mut r = ShipmentRequest {
        q,
        brand: scope(caller, p.get("brand"))?,
        statuses: statuses(p)?,
        created_from,
        created_to,
        sort,
        limit: int(p, "limit", 1, LIMIT_MAX)?.unwrap_or(LIMIT_DEFAULT),
        after: None,
    };
    if let Some(c) = p.get("cursor") {
        r.after = Some(crate::index::shipments::decode_cursor(&r, c).map_err(|e| bad("cursor", e.to_string()))?);
    }
    Ok((r, int(p, "min_lsn", 0, u64::MAX)?))
}

#[utoipa::path(get, path = "/v1/search/shipments", operation_id = "search_shipments", tag = "search", params(
    CommonParams,
    ("sort" = Option<String>, Query, description = "The order of the hits (default `relevance` with words in `q`, else `created_desc`)."),
    ("status" = Option<Vec<crate::domain::fulfilment::ShipmentStatus>>, Query, style = Form, explode, description = "Any of these statuses (repeat the parameter; comma-separated works too)."),
    ("created_from" = Option<Timestamp>, Query, description = "Created at or after (RFC 3339)."),
    ("created_to" = Option<Timestamp>, Query, description = "Created before (RFC 3339, at or after `created_from`)."),
), responses((status = 200, description = "Hits (never `ship_to`), total, facets, next cursor.", body = crate::index::shipments::ShipmentSearchResult)))]
async fn search_shipments(req: HttpRequest, state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, Problem> {
    let svc = state.services()?;
    let (request, min_lsn) = to_shipment_request(&params(req.query_string(), SHIPMENT_PARAMS)?, &caller)?;
    if let Some(node) = &svc.cluster {
        return in_cluster(&req, &state, node, svc.cluster_search.as_ref().ok_or_else(Problem::not_ready)?, request, min_lsn).await;
    }
    let index = &svc.local()?.shipments;
    let shipments = index.clone();
    respond(index.coverage(), min_lsn, move || shipments.search(&request)).await
}

/// Waits for `min_lsn`, then runs `search` on the blocking pool within the bound of
/// searches in flight, and answers with its result and the covered LSN.
async fn respond<T: serde::Serialize + Send + 'static>(
    coverage: &Coverage,
    min_lsn: Option<u64>,
    search: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<HttpResponse, Problem> {
    if let Some(lsn) = min_lsn {
        if !coverage.wait_covered(lsn, MIN_LSN_WAIT).await {
            let detail = format!(
                "the search index did not reach lsn {lsn} within {} s (it covers {}); retry after the Retry-After delay",
                MIN_LSN_WAIT.as_secs(),
                coverage.covered_lsn()
            );
            return Err(Problem::new(ErrorCode::NotReady, detail));
        }
    }
    let covered = coverage.covered_lsn();
    let result = run(search).await?;
    Ok(HttpResponse::Ok().insert_header(("X-Zaiko-Index-Lsn", covered.to_string())).json(result))
}

/// A kind of search as cluster mode serves it.
trait Kind: Send + Sync + 'static {
    type Hit: Serialize + DeserializeOwned + Send + 'static;
    type Page: Serialize + Send + 'static;
    /// The brand the search is scoped to.
    fn brand(&self) -> Option<&BrandId>;
    /// Checks that need the brand's state (on its owner).
    async fn check(&self, state: &AppState) -> Result<(), Problem>;
    /// The search of one brand, on its owner.
    fn whole(&self, s: &ClusterSearch) -> Result<Self::Page, IndexError>;
    /// This node's share of a search across brands.
    fn part(&self, s: &ClusterSearch, partitions: &[u32]) -> Result<Part<Self::Hit>, IndexError>;
    /// The page made of every node's share.
    fn merged(&self, parts: Vec<Part<Self::Hit>>) -> Self::Page;
}

impl Kind for SearchRequest {
    type Hit = crate::index::search::Hit;
    type Page = crate::index::SearchResult;
    fn brand(&self) -> Option<&BrandId> {
        self.brand.as_ref()
    }
    async fn check(&self, state: &AppState) -> Result<(), Problem> {
        check_channel(state, self).await
    }
    fn whole(&self, s: &ClusterSearch) -> Result<Self::Page, IndexError> {
        s.skus.search(self)
    }
    fn part(&self, s: &ClusterSearch, partitions: &[u32]) -> Result<Part<Self::Hit>, IndexError> {
        s.skus.search_part(self, partitions)
    }
    fn merged(&self, parts: Vec<Part<Self::Hit>>) -> Self::Page {
        crate::index::search::merged(self, parts)
    }
}

impl Kind for ShipmentRequest {
    type Hit = crate::index::shipments::ShipmentHit;
    type Page = crate::index::shipments::ShipmentSearchResult;
    fn brand(&self) -> Option<&BrandId> {
        self.brand.as_ref()
    }
    async fn check(&self, _state: &AppState) -> Result<(), Problem> {
        Ok(())
    }
    fn whole(&self, s: &ClusterSearch) -> Result<Self::Page, IndexError> {
        s.shipments.search(self)
    }
    fn part(&self, s: &ClusterSearch, partitions: &[u32]) -> Result<Part<Self::Hit>, IndexError> {
        s.shipments.search_part(self, partitions)
    }
    fn merged(&self, parts: Vec<Part<Self::Hit>>) -> Self::Page {
        crate::index::shipments::merged(self, parts)
    }
}

/// A node's share of a gathered search: the partitions it answered for, and what it
/// found in them.
#[derive(Serialize, Deserialize)]
struct Share<H> {
    partitions: Vec<u32>,
    part: Part<H>,
}

/// Cluster mode. Each node indexes the partitions it owns. A search of one brand runs
/// on the owner of the brand's partition (forwarded there, as a brand command is) and
/// waits there for `min_lsn`; a search across brands asks every owner for its share
/// of the partitions it answers for and merges them into one page. Whichever node is
/// asked, the answer is the same, and a cursor from one node continues on any other.
async fn in_cluster<K: Kind>(
    req: &HttpRequest,
    state: &AppState,
    node: &Node,
    search: &ClusterSearch,
    r: K,
    min_lsn: Option<u64>,
) -> Result<HttpResponse, Problem> {
    let forwarded = req.headers().contains_key(cluster::FORWARDED_BY);
    if let Some(brand) = r.brand() {
        let partition = node.partition_of(brand.as_str());
        let PartitionId::Brand(p) = partition else { return Err(cluster::unavailable(partition)) };
        return match node.route(partition) {
            Route::Local => {
                let Some(covered) = search.wait_covered(p, min_lsn.unwrap_or(0), MIN_LSN_WAIT).await else {
                    let detail = match min_lsn {
                        Some(lsn) => format!(
                            "the search index of partition {p} did not reach lsn {lsn} within {} s; retry after the Retry-After delay",
                            MIN_LSN_WAIT.as_secs()
                        ),
                        None => {
                            format!("partition {p} is being indexed on this node (it has just arrived); retry after the Retry-After delay")
                        }
                    };
                    return Err(Problem::new(ErrorCode::NotReady, detail));
                };
                r.check(state).await?;
                let s = search.clone();
                let page = run(move || r.whole(&s)).await?;
                Ok(HttpResponse::Ok()
                    .insert_header(("X-Zaiko-Index-Lsn", covered.to_string()))
                    .insert_header(("X-Zaiko-Partition", p.to_string()))
                    .json(page))
            }
            Route::Forward(owner) if !forwarded => Ok(cluster::forward(req, web::Bytes::new(), node, &owner, partition, &[]).await),
            Route::Forward(_) | Route::Unavailable => Err(cluster::unavailable(partition)),
        };
    }
    let r = Arc::new(r);
    if req.headers().contains_key(cluster::LOCAL_ONLY) {
        return Ok(HttpResponse::Ok().json(local_share(node, search, r).await?));
    }
    if min_lsn.is_some() {
        return Err(bad(
            "min_lsn",
            "in cluster mode an LSN belongs to one brand's partition: give brand too (a brand token's searches are scoped to its brand)",
        ));
    }
    let parts = gather(req, node, search, &r).await?;
    Ok(HttpResponse::Ok().json(r.merged(parts)))
}

/// This node's share of a search across brands: the partitions it owns and has
/// indexed, and what it found in them.
async fn local_share<K: Kind>(node: &Node, search: &ClusterSearch, r: Arc<K>) -> Result<Share<K::Hit>, Problem> {
    let partitions: Vec<u32> = search.answering().into_iter().filter(|p| node.route(PartitionId::Brand(*p)) == Route::Local).collect();
    let s = search.clone();
    run(move || Ok(Share { part: r.part(&s, &partitions)?, partitions })).await
}

/// Runs a search on the blocking pool within the bound of searches in flight.
async fn run<T: Send + 'static>(search: impl FnOnce() -> Result<T, IndexError> + Send + 'static) -> Result<T, Problem> {
    let _slot =
        SEARCH_SLOTS.try_acquire().map_err(|_| Problem::overloaded("too many searches are running; retry after the Retry-After delay"))?;
    web::block(search).await.map_err(|_| Problem::overloaded("the search was cancelled; retry"))?.map_err(|e| {
        tracing::error!(error = %e, "search failed");
        Problem::overloaded("the search index could not be read; retry shortly")
    })
}

/// Every owner's share of a search across brands: each brand partition must be
/// answered for by exactly one node, else 503 (a page that silently missed a
/// partition would look complete).
async fn gather<K: Kind>(req: &HttpRequest, node: &Node, search: &ClusterSearch, r: &Arc<K>) -> Result<Vec<Part<K::Hit>>, Problem> {
    let view = node.view();
    let mut owners: Vec<Owner> = Vec::new();
    for p in view.partitions.iter().filter(|p| p.id != "registry") {
        match &p.owner {
            Some(o) if !owners.iter().any(|x| x.node == o.node) => owners.push(o.clone()),
            Some(_) => {}
            None => {
                return Err(Problem::new(
                    ErrorCode::PartitionUnavailable,
                    format!("partition {} has no owner right now (a takeover is under way); retry after the Retry-After delay", p.id),
                ))
            }
        }
    }
    let asked = owners.iter().map(|owner| {
        let r = r.clone();
        async move {
            // This node's own share is searched here, not asked of itself over HTTP.
            if owner.node == node.cfg.node_id {
                return local_share(node, search, r).await;
            }
            let answer = cluster::ask_local_share(req, node, owner).await?;
            serde_json::from_slice::<Share<K::Hit>>(&answer).map_err(|e| {
                Problem::new(
                    ErrorCode::PartitionUnavailable,
                    format!("node {} answered its share unreadably ({e}); retry shortly", owner.node),
                )
            })
        }
    });
    let shares = futures_util::future::join_all(asked).await.into_iter().collect::<Result<Vec<_>, _>>()?;
    let expected = node.cfg.partitions;
    let mut claimed = vec![0u32; expected as usize];
    for p in shares.iter().flat_map(|s| &s.partitions) {
        if let Some(c) = claimed.get_mut(*p as usize) {
            *c += 1;
        }
    }
    let missing: Vec<String> = claimed.iter().enumerate().filter(|(_, c)| **c != 1).map(|(p, _)| p.to_string()).collect();
    if !missing.is_empty() {
        return Err(Problem::new(
            ErrorCode::NotReady,
            format!(
                "the search index of partition(s) {} is being built on a new owner; retry after the Retry-After delay",
                missing.join(", ")
            ),
        ));
    }
    Ok(shares.into_iter().map(|s| s.part).collect())
}
