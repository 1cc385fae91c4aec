//! One file per route group.

mod admin;
mod alerts;
mod catalog;
mod channels;
mod event_types;
mod feed;
mod fulfilment;
mod health;
mod history;
mod imports;
pub mod metrics;
mod openapi;
mod openapi_refine;
mod returns;
mod schemas;
mod search;
mod stock;
mod transfers;
mod ui;
mod webhooks;

use std::sync::LazyLock;

use actix_web::dev::ResourceDef;
use actix_web::http::header;
use actix_web::web;

use super::problem::Problem;
use crate::domain::ErrorCode;

/// Registers every route. actix tries them in this order, and each route with a
/// `{param}` costs a regex match (and an allocation) to pass, so the hot write paths
/// (stock changes, reservations) come first after the cheap static probes.
/// `/metrics` is among them unless it is served on an address of its own
/// (`--metrics-listen`); then it is 404 here.
pub fn configure(cfg: &mut web::ServiceConfig, with_metrics: bool) {
    health::configure(cfg);
    stock::configure(cfg);
    fulfilment::configure(cfg);
    if with_metrics {
        metrics::configure(cfg);
    }
    openapi::configure(cfg);
    admin::configure(cfg);
    catalog::configure(cfg);
    channels::configure(cfg);
    transfers::configure(cfg);
    returns::configure(cfg);
    alerts::configure(cfg);
    ui::configure(cfg);
    search::configure(cfg);
    feed::configure(cfg);
    history::configure(cfg);
    webhooks::configure(cfg);
    imports::configure(cfg);
    cfg.default_service(web::to(not_found));
}

/// No route took the request: 405 with `Allow` when the path exists with other methods
/// (actix tries each route's method guard and falls through to here), else 404 — also
/// for a route this listener does not serve (`/metrics` with `--metrics-listen`).
async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, Problem> {
    use actix_web::ResponseError;
    let allowed = allowed_methods(req.path());
    if allowed.is_empty() || allowed.contains(&req.method().as_str()) {
        return Err(Problem::new(ErrorCode::NotFound, format!("no route for {} {}; see /openapi.json", req.method(), req.path())));
    }
    let allow = allowed.join(", ");
    let detail = format!("{} does not take {}; it takes {allow} (see /openapi.json)", req.path(), req.method());
    let mut res = Problem::new(ErrorCode::MethodNotAllowed, detail).error_response();
    res.headers_mut().insert(header::ALLOW, header::HeaderValue::from_str(&allow).expect("method names are header-safe"));
    Ok(res)
}

/// Each route pattern with the methods it takes: the OpenAPI document's operations,
/// and the routes outside it (the document itself, the UI's pages).
static ROUTE_METHODS: LazyLock<Vec<(ResourceDef, Vec<&'static str>)>> = LazyLock::new(|| {
    let doc = openapi::document();
    let mut table: Vec<(ResourceDef, Vec<&'static str>)> = doc["paths"]
        .as_object()
        .expect("the document has paths")
        .iter()
        .map(|(path, item)| {
            const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
            let methods = METHODS.into_iter().filter(|m| item.get(m.to_ascii_lowercase()).is_some()).collect();
            (ResourceDef::new(path.as_str()), methods)
        })
        .collect();
    table.push((ResourceDef::new("/openapi.json"), vec!["GET"]));
    table.extend(ui::routes().map(|(path, methods)| (ResourceDef::new(path), methods.to_vec())));
    table
});

/// The methods some route takes at `path`, in a fixed order; empty: no such path.
fn allowed_methods(path: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for (_, methods) in ROUTE_METHODS.iter().filter(|(def, _)| def.is_match(path)) {
        for m in methods {
            if !out.contains(m) {
                out.push(m);
            }
        }
    }
    const ORDER: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    out.sort_by_key(|m| ORDER.iter().position(|o| o == m));
    out
}
