//! The shard's handling of webhook subscriptions and import jobs: domain decisions
//! (`domain::webhook`, `domain::import`) turned into what the shard writes and
//! answers. Kept out of `shard.rs` so that file only routes to it.

use super::{to_json, Decided, Render};
use crate::domain::brand::{BrandState, World};
use crate::domain::event::Event;
use crate::domain::fulfilment::Decision;
use crate::domain::idempotency::Status;
use crate::domain::import::{ImportCmd, ImportView};
use crate::domain::webhook::{WebhookCmd, WebhookView};
use crate::domain::{Id, Rejection, Timestamp};

fn import_view(id: Id) -> Render {
    Box::new(move |s: &BrandState| s.imports.jobs.get(&id).map(|j| to_json(&ImportView::from(j))).unwrap_or_default())
}

pub fn decide_webhook(brand: &BrandState, cmd: WebhookCmd) -> Result<Decided, Rejection> {
    Ok(match cmd {
        WebhookCmd::List => {
            let views: Vec<WebhookView> = brand.webhooks.values().map(|w| WebhookView::new(w, false)).collect();
            Decided::Read(to_json(&serde_json::json!({ "webhooks": views })))
        }
        WebhookCmd::Get { id } => Decided::Read(to_json(&WebhookView::new(brand.webhook(&id)?, false))),
        WebhookCmd::Create(w) => {
            let event = brand.decide_create_webhook(&w)?;
            // The secret is shown once, in this answer (and its idempotent replays).
            let body = to_json(&WebhookView::new(&w, true));
            Decided::write(vec![event], Status::Created, move |_| body)
        }
        WebhookCmd::Delete { id } => Decided::write(vec![brand.decide_delete_webhook(&id)?], Status::Removed, |_| Vec::new()),
    })
}

pub fn decide_import(brand: &BrandState, cmd: ImportCmd, world: &impl World, now: Timestamp) -> Result<Decided, Rejection> {
    let id = cmd.job_id().clone();
    let current = |b: &BrandState| -> Result<Decided, Rejection> { Ok(Decided::Read(to_json(&ImportView::from(b.import(&id)?)))) };
    let decision = match &cmd {
        ImportCmd::Get { .. } => return current(brand),
        ImportCmd::Queue(spec) => {
            let event = brand.decide_queue_import(spec)?;
            return Ok(Decided::Write { events: vec![event], status: Status::Accepted, render: import_view(id) });
        }
        ImportCmd::Start { id, rows_total } => brand.decide_start_import(id, *rows_total)?,
        ImportCmd::Chunk(c) => match brand.decide_import_chunk(c, world, now)? {
            Decision::Apply(events) => {
                // What a preview would catch before the record is written.
                if let Err(e) = brand.check_bulk_events(&events) {
                    crate::actors::fatal_apply("a check of a decided import chunk", brand.last_lsn, &e);
                }
                // The runner only needs to know the chunk was taken (and its counts, for
                // `/metrics`, from the progress that ends the chunk); it reads the job
                // with `Get`.
                let (rows_ok, rows_failed) = events
                    .iter()
                    .rev()
                    .find_map(|e| match e {
                        Event::ImportChunkApplied { progress } => Some((progress.rows_ok, progress.rows_failed)),
                        _ => None,
                    })
                    .unwrap_or((0, 0));
                let body = to_json(&serde_json::json!({ "id": id, "chunk": c.chunk, "rows_ok": rows_ok, "rows_failed": rows_failed }));
                return Ok(Decided::WriteAnswered { events, status: Status::Done, body });
            }
            Decision::Unchanged => Decision::Unchanged,
        },
        ImportCmd::Finish { id, failed } => brand.decide_finish_import(id, failed.clone())?,
        ImportCmd::Cancel { id } => brand.decide_cancel_import(id)?,
    };
    match decision {
        Decision::Unchanged => current(brand),
        Decision::Apply(events) => Ok(Decided::Write { events, status: Status::Done, render: import_view(id) }),
    }
}
