//! One file per route group.

mod admin;
mod catalog;
mod channels;
mod event_types;
mod feed;
mod fulfilment;
mod health;
mod imports;
pub mod metrics;
mod openapi;
mod openapi_refine;
mod search;
mod stock;
mod ui;
mod webhooks;

use actix_web::web;

use super::problem::Problem;

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
    ui::configure(cfg);
    search::configure(cfg);
    feed::configure(cfg);
    webhooks::configure(cfg);
    imports::configure(cfg);
    cfg.default_service(web::to(not_found));
}

async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, Problem> {
    Err(Problem::new(crate::domain::ErrorCode::NotFound, format!("no route for {} {}; see /openapi.json", req.method(), req.path())))
}
