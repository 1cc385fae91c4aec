//! Import jobs as brand state: a job is queued once its upload is on disk, then applied
//! chunk by chunk. Each chunk is one WAL record holding the chunk's catalog, stock or
//! shipment status events *and* the job's progress (`ImportChunkApplied`), so a chunk is applied
//! exactly once: the decision accepts only the job's next chunk number, and a crash
//! either keeps the chunk and its progress or neither. A runner that resumes after a
//! crash re-sends chunks from the recorded offset; a chunk it sends twice is answered
//! with the progress, not applied again. (This is the `import:<job>:<chunk>`
//! idempotency key, checked against durable brand state instead of the 24 h
//! idempotency store, so it needs no stored response per chunk and never expires
//! while the job lives.)

use std::collections::{HashMap, VecDeque};

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::brand::{BrandState, ChangeOutcome, StockChangeCmd, World};
use super::catalog::Catalog;
use super::error::{ErrorCode, FieldError, Rejection};
use super::event::Event;
use super::fulfilment::{Decision, ShipmentStatus, StatusCmd, StatusNow};
use super::returns::{Return, ReturnCmd};
use super::stock::Levels;
use super::transfer::{Transfer, TransferCmd};
use super::{Id, Timestamp};

/// Row errors kept per job (all are counted).
pub const IMPORT_ERRORS_KEPT: usize = 100;
/// Finished jobs kept per brand for `GET .../imports/{id}`; older ones are forgotten.
pub const IMPORTS_FINISHED_KEPT: usize = 100;
/// Jobs queued or running per brand; more are refused with `rate_limited`.
pub const IMPORTS_PENDING_PER_BRAND_MAX: usize = 8;
/// Longest `detail` of a kept row error, and of a failed job's reason, in bytes (longer
/// ones are cut): a chunk's progress with its kept errors must fit in the smallest
/// journal record ([`super::event::RECORD_BYTES_MAX_FLOOR`]) whatever the file holds.
pub const ERROR_DETAIL_BYTES_MAX: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportKind {
    Catalog,
    Stock,
    /// Warehouse status updates of shipments, through the rules of
    /// `POST .../shipments/{id}/status`.
    ShipmentStatus,
    /// Transfers created as drafts, through the rules of `POST .../transfers`: a row per
    /// line, a document's rows together.
    Transfers,
    /// Returns created as requested, through the rules of `POST .../returns`: a row per
    /// line, a document's rows together.
    Returns,
}

impl ImportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Catalog => "catalog",
            ImportKind::Stock => "stock",
            ImportKind::ShipmentStatus => "shipment_status",
            ImportKind::Transfers => "transfers",
            ImportKind::Returns => "returns",
        }
    }

    /// Whether a row is one line of a document of several rows (by `id`).
    pub fn is_document(self) -> bool {
        matches!(self, ImportKind::Transfers | ImportKind::Returns)
    }

    /// What one document of the kind is called in messages.
    pub fn document_name(self) -> &'static str {
        match self {
            ImportKind::Transfers => "transfer",
            ImportKind::Returns => "return",
            _ => "row",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    Csv,
    Ndjson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    Queued,
    Running,
    Done,
    Failed,
    /// Stopped by `POST .../imports/{id}/cancel`, with the rows applied until then.
    Cancelled,
}

/// What the upload recorded: the file is immutable from then on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSpec {
    pub id: Id,
    pub kind: ImportKind,
    pub format: ImportFormat,
    /// File name under `<data-dir>/imports/`.
    pub file: String,
    pub bytes: u64,
    pub sha256: [u8; 32],
    pub created_at: Timestamp,
}

/// A row that could not be applied. `row` is the 1-based line of the file where the
/// row starts (a CSV's header is line 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowError {
    pub row: u64,
    pub code: ErrorCode,
    pub detail: String,
}

/// A row's field problems as its error's `detail`: `field: detail`, joined by `; `.
pub fn problems_detail(problems: &[FieldError]) -> String {
    problems.iter().map(|p| format!("{}: {}", p.field, p.detail)).collect::<Vec<_>>().join("; ")
}

/// The progress one chunk records, in the same WAL record as its rows' events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkProgress {
    pub id: Id,
    pub chunk: u64,
    /// Where the next chunk starts: byte offset in the file and its line number.
    pub next_offset: u64,
    pub next_row: u64,
    pub rows_ok: u64,
    pub rows_failed: u64,
    /// Only as many as still fit in the job's first [`IMPORT_ERRORS_KEPT`].
    pub errors: Vec<RowError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportJob {
    pub spec: ImportSpec,
    pub status: ImportStatus,
    pub rows_total: Option<u64>,
    pub rows_ok: u64,
    pub rows_failed: u64,
    pub errors: Vec<RowError>,
    pub next_chunk: u64,
    pub next_offset: u64,
    pub next_row: u64,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub detail: Option<String>,
}

impl ImportJob {
    pub fn is_finished(&self) -> bool {
        matches!(self.status, ImportStatus::Done | ImportStatus::Failed | ImportStatus::Cancelled)
    }
}

/// A brand's jobs: all unfinished ones and the newest finished ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imports {
    pub jobs: HashMap<Id, ImportJob>,
    /// Finished jobs, oldest first (for forgetting).
    pub finished: VecDeque<Id>,
}

/// The rows of one chunk, parsed and checked field by field by the runner.
#[derive(Debug, Clone)]
pub enum ChunkRows {
    Catalog(Vec<(u64, Id, Catalog)>),
    /// The changes, and the line of each.
    Stock {
        lines: Vec<u64>,
        changes: Vec<StockChangeCmd>,
    },
    /// Status changes of shipments, with the line of each.
    ShipmentStatus(Vec<(u64, StatusCmd)>),
    /// Transfers to create, each with the lines of its rows.
    Transfers(Vec<DocRows<TransferCmd>>),
    /// Returns to create, each with the lines of its rows.
    Returns(Vec<DocRows<ReturnCmd>>),
}

/// The rows of one transfer or return of an import chunk (a chunk never splits one):
/// its id, the line of each row in file order, and the command they make — or why
/// they make none, in which case none of them is applied.
#[derive(Debug, Clone)]
pub struct DocRows<C> {
    pub id: Id,
    pub lines: Vec<u64>,
    pub doc: Result<C, String>,
}

impl<C> DocRows<C> {
    /// A row error for the whole document, at its first line: `why` after the document
    /// and its lines.
    pub fn error(&self, kind: ImportKind, code: ErrorCode, why: &str) -> RowError {
        let first = self.lines.first().copied().unwrap_or(0);
        let last = self.lines.last().copied().unwrap_or(first);
        let at = if first == last { format!("line {first}") } else { format!("lines {first}-{last}") };
        RowError { row: first, code, detail: format!("{} {} ({at}, not applied): {why}", kind.document_name(), self.id) }
    }

    /// A refusal of the document's command, with each `lines[i].…` field named by
    /// the file line of that row.
    fn refused(&self, kind: ImportKind, r: &Rejection) -> RowError {
        if r.errors.is_empty() {
            return self.error(kind, r.code, &r.detail);
        }
        let fields: Vec<String> = r
            .errors
            .iter()
            .map(|e| {
                let named = e.field.strip_prefix("lines[").and_then(|rest| {
                    let (i, field) = rest.split_once("].")?;
                    let line = self.lines.get(i.parse::<usize>().ok()?)?;
                    Some(format!("line {line}: {field}"))
                });
                format!("{}: {}", named.unwrap_or_else(|| e.field.clone()), e.detail)
            })
            .collect();
        self.error(kind, r.code, &fields.join("; "))
    }
}

#[derive(Debug, Clone)]
pub struct ChunkCmd {
    pub id: Id,
    pub chunk: u64,
    pub next_offset: u64,
    pub next_row: u64,
    pub rows: ChunkRows,
    /// Rows that failed to parse; counted with the chunk.
    pub pre_errors: Vec<RowError>,
}

#[derive(Debug)]
pub enum ImportCmd {
    Queue(Box<ImportSpec>),
    Get { id: Id },
    Start { id: Id, rows_total: u64 },
    Chunk(Box<ChunkCmd>),
    Finish { id: Id, failed: Option<String> },
    Cancel { id: Id },
}

impl ImportCmd {
    pub fn is_read(&self) -> bool {
        matches!(self, ImportCmd::Get { .. })
    }

    pub fn job_id(&self) -> &Id {
        match self {
            ImportCmd::Queue(s) => &s.id,
            ImportCmd::Get { id } | ImportCmd::Start { id, .. } | ImportCmd::Finish { id, .. } | ImportCmd::Cancel { id } => id,
            ImportCmd::Chunk(c) => &c.id,
        }
    }
}

impl BrandState {
    pub fn import(&self, id: &Id) -> Result<&ImportJob, Rejection> {
        self.imports.jobs.get(id).ok_or_else(|| Rejection::not_found(format!("import {id} does not exist in brand {}", self.id)))
    }

    /// Unfinished jobs, oldest first: what a runner resumes after a restart.
    pub fn pending_imports(&self) -> Vec<&ImportSpec> {
        let mut v: Vec<&ImportSpec> = self.imports.jobs.values().filter(|j| !j.is_finished()).map(|j| &j.spec).collect();
        v.sort_by_key(|s| (s.created_at, s.id.clone()));
        v
    }

    pub fn decide_queue_import(&self, spec: &ImportSpec) -> Result<Event, Rejection> {
        if self.imports.jobs.contains_key(&spec.id) {
            return Err(Rejection::new(ErrorCode::AlreadyExists, format!("import {} already exists", spec.id)));
        }
        let pending = self.imports.jobs.values().filter(|j| !j.is_finished()).count();
        if pending >= IMPORTS_PENDING_PER_BRAND_MAX {
            return Err(Rejection::new(
                ErrorCode::RateLimited,
                format!("brand {} already has {pending} imports queued or running; wait for one to finish", self.id),
            ));
        }
        Ok(Event::ImportQueued { job: Box::new(spec.clone()) })
    }

    pub fn decide_start_import(&self, id: &Id, rows_total: u64) -> Result<Decision, Rejection> {
        match self.import(id)?.status {
            ImportStatus::Queued => Ok(Decision::Apply(vec![Event::ImportStarted { id: id.clone(), rows_total }])),
            _ => Ok(Decision::Unchanged),
        }
    }

    pub fn decide_finish_import(&self, id: &Id, failed: Option<String>) -> Result<Decision, Rejection> {
        if self.import(id)?.is_finished() {
            return Ok(Decision::Unchanged);
        }
        let failed = failed.map(|why| cut_to(why, ERROR_DETAIL_BYTES_MAX));
        Ok(Decision::Apply(vec![Event::ImportFinished { id: id.clone(), failed }]))
    }

    /// Cancelling a queued or running job: no chunk of it is applied after this record
    /// (a chunk is one record too, so the job stops at a chunk boundary). Cancelling a
    /// cancelled job changes nothing; a done or failed one cannot be cancelled.
    pub fn decide_cancel_import(&self, id: &Id) -> Result<Decision, Rejection> {
        match self.import(id)?.status {
            ImportStatus::Cancelled => Ok(Decision::Unchanged),
            s @ (ImportStatus::Done | ImportStatus::Failed) => Err(Rejection::new(
                ErrorCode::InvalidTransition,
                format!("import {id} is {}; only a queued or running job can be cancelled", status_name(s)),
            )),
            ImportStatus::Queued | ImportStatus::Running => Ok(Decision::Apply(vec![Event::ImportCancelled { id: id.clone() }])),
        }
    }

    /// One chunk: its rows' events and its progress, or `Unchanged` for a chunk that
    /// was already applied (a resumed runner sending it again).
    pub fn decide_import_chunk(&self, c: &ChunkCmd, world: &impl World, now: Timestamp) -> Result<Decision, Rejection> {
        let job = self.import(&c.id)?;
        if job.is_finished() || c.chunk < job.next_chunk {
            return Ok(Decision::Unchanged);
        }
        if job.status != ImportStatus::Running || c.chunk > job.next_chunk {
            return Err(Rejection::new(
                ErrorCode::InvalidTransition,
                format!("import {} expects chunk {} while {:?}, got chunk {}", c.id, job.next_chunk, job.status, c.chunk),
            ));
        }
        let one_each = |(events, errors, ok): (Vec<Event>, Vec<RowError>, u64)| {
            let failed = errors.len() as u64;
            (events, errors, ok, failed)
        };
        let (mut events, mut errors, rows_ok, failed) = match &c.rows {
            ChunkRows::Catalog(rows) => one_each(self.decide_catalog_rows(rows)),
            ChunkRows::Stock { lines, changes } => one_each(self.decide_stock_rows(lines, changes, world)),
            ChunkRows::ShipmentStatus(rows) => one_each(self.decide_shipment_rows(rows)),
            ChunkRows::Transfers(docs) => self.decide_transfer_docs(docs, world, now),
            ChunkRows::Returns(docs) => self.decide_return_docs(docs, now),
        };
        let rows_failed = failed + c.pre_errors.len() as u64;
        errors.extend(c.pre_errors.iter().cloned());
        errors.sort_by_key(|e| e.row);
        errors.truncate(IMPORT_ERRORS_KEPT.saturating_sub(job.errors.len()));
        for e in &mut errors {
            e.detail = cut_to(std::mem::take(&mut e.detail), ERROR_DETAIL_BYTES_MAX);
        }
        events.push(Event::ImportChunkApplied {
            progress: Box::new(ChunkProgress {
                id: c.id.clone(),
                chunk: c.chunk,
                next_offset: c.next_offset,
                next_row: c.next_row,
                rows_ok,
                rows_failed,
                errors,
            }),
        });
        Ok(Decision::Apply(events))
    }

    /// Catalog rows in order; a SKU named twice in one chunk gets two versions.
    fn decide_catalog_rows(&self, rows: &[(u64, Id, Catalog)]) -> (Vec<Event>, Vec<RowError>, u64) {
        let mut versions: foldhash::HashMap<&Id, u64> = foldhash::HashMap::default();
        let (mut events, mut errors) = (Vec::with_capacity(rows.len() + 1), Vec::new());
        for (row, sku, catalog) in rows {
            let problems = catalog.validate();
            if !problems.is_empty() {
                errors.push(RowError { row: *row, code: ErrorCode::InvalidRequest, detail: problems_detail(&problems) });
                continue;
            }
            let v = versions.entry(sku).or_insert_with(|| self.skus.get(sku).map_or(0, |s| s.version));
            *v += 1;
            events.push(Event::SkuUpserted { sku: sku.clone(), catalog: catalog.clone(), version: *v });
        }
        let ok = events.len() as u64;
        (events, errors, ok)
    }

    fn decide_stock_rows(&self, lines: &[u64], changes: &[StockChangeCmd], world: &impl World) -> (Vec<Event>, Vec<RowError>, u64) {
        let (mut events, outcomes) = self.decide_stock_changes(changes, world);
        events.reserve(1);
        let mut errors = Vec::new();
        for (row, outcome) in lines.iter().zip(&outcomes) {
            if let ChangeOutcome::Rejected(r) = outcome {
                errors.push(RowError { row: *row, code: r.code, detail: r.detail.clone() });
            }
        }
        let ok = (changes.len() - errors.len()) as u64;
        (events, errors, ok)
    }

    /// Transfers in file order, each through the rules of `POST .../transfers` against
    /// the state and the transfers of the chunk before it; a document counts its rows,
    /// applied or failed together. The same transfer again is applied (unchanged): a
    /// file imported twice creates nothing twice.
    fn decide_transfer_docs(
        &self,
        docs: &[DocRows<TransferCmd>],
        world: &impl World,
        now: Timestamp,
    ) -> (Vec<Event>, Vec<RowError>, u64, u64) {
        let mut created: Vec<Transfer> = Vec::new();
        let (mut errors, mut ok, mut failed) = (Vec::new(), 0u64, 0u64);
        for d in docs {
            let rows = d.lines.len() as u64;
            let decided = match &d.doc {
                Err(why) => Err(d.error(ImportKind::Transfers, ErrorCode::InvalidRequest, why)),
                Ok(cmd) => self.decide_transfer_among(cmd, world, now, &created).map_err(|r| d.refused(ImportKind::Transfers, &r)),
            };
            match decided {
                Ok(decision) => {
                    ok += rows;
                    if let Decision::Apply(evs) = decision {
                        created.extend(evs.into_iter().filter_map(|e| match e {
                            Event::TransferCreated { transfer } => Some(*transfer),
                            _ => None,
                        }));
                    }
                }
                Err(e) => {
                    failed += rows;
                    errors.push(e);
                }
            }
        }
        let events = created.into_iter().map(|t| Event::TransferCreated { transfer: Box::new(t) }).collect();
        (events, errors, ok, failed)
    }

    /// Returns in file order, each through the rules of `POST .../returns` against the
    /// state and the returns of the chunk before it (so two returns of one shipment in
    /// one file never ask for more than it shipped); as transfers otherwise.
    fn decide_return_docs(&self, docs: &[DocRows<ReturnCmd>], now: Timestamp) -> (Vec<Event>, Vec<RowError>, u64, u64) {
        let mut created: Vec<Return> = Vec::new();
        let (mut errors, mut ok, mut failed) = (Vec::new(), 0u64, 0u64);
        for d in docs {
            let rows = d.lines.len() as u64;
            let decided = match &d.doc {
                Err(why) => Err(d.error(ImportKind::Returns, ErrorCode::InvalidRequest, why)),
                Ok(cmd) => self.decide_return_among(cmd, now, &created).map_err(|r| d.refused(ImportKind::Returns, &r)),
            };
            match decided {
                Ok(decision) => {
                    ok += rows;
                    if let Decision::Apply(evs) = decision {
                        created.extend(evs.into_iter().filter_map(|e| match e {
                            Event::ReturnCreated { ret } => Some(*ret),
                            _ => None,
                        }));
                    }
                }
                Err(e) => {
                    failed += rows;
                    errors.push(e);
                }
            }
        }
        let events = created.into_iter().map(|r| Event::ReturnCreated { ret: Box::new(r) }).collect();
        (events, errors, ok, failed)
    }

    /// Shipment status rows in order, each through the rules of `decide_status` against
    /// what the earlier rows of the chunk left: a shipment moved to `picking` by one row
    /// can be `packed` by the next, and two shipments of one SKU take successive stock
    /// versions. Repeating a shipment's status is a no-op that counts as applied.
    fn decide_shipment_rows(&self, rows: &[(u64, StatusCmd)]) -> (Vec<Event>, Vec<RowError>, u64) {
        type Draft = (ShipmentStatus, Option<CompactString>, Option<CompactString>);
        let mut shipments: HashMap<Id, Draft> = HashMap::new();
        let mut stock: HashMap<Id, (Levels, u64)> = HashMap::new();
        let (mut events, mut errors, mut ok) = (Vec::with_capacity(rows.len() + 1), Vec::new(), 0u64);
        for (row, cmd) in rows {
            let decided = self.shipment(&cmd.id).and_then(|s| {
                let now = match shipments.get(&cmd.id) {
                    Some((status, tracking, carrier)) => {
                        StatusNow { status: *status, tracking_number: tracking.as_ref(), carrier: carrier.as_ref() }
                    }
                    None => StatusNow { status: s.status, tracking_number: s.tracking_number.as_ref(), carrier: s.carrier.as_ref() },
                };
                self.status_events(cmd, now, &s.lines, |sku| match stock.get(sku) {
                    Some((levels, version)) => Ok((levels.clone(), *version)),
                    None => self.levels_of(sku),
                })
            });
            match decided {
                Ok(Decision::Unchanged) => ok += 1,
                Ok(Decision::Apply(evs)) => {
                    ok += 1;
                    for e in &evs {
                        match e {
                            Event::ShipmentStatusChanged { id, status, tracking_number, carrier } => {
                                shipments.insert(id.clone(), (*status, tracking_number.clone(), carrier.clone()));
                            }
                            Event::StockChanged { sku, version, levels, .. } => {
                                stock.insert(sku.clone(), (levels.clone(), *version));
                            }
                            _ => {}
                        }
                    }
                    events.extend(evs);
                }
                Err(r) => errors.push(RowError { row: *row, code: r.code, detail: r.detail }),
            }
        }
        (events, errors, ok)
    }

    /// Checks the events of a bulk write (an import chunk, a batch of stock changes)
    /// against the state as `apply` will, without applying them: each SKU's stock
    /// versions follow on and its levels keep the invariant, each shipment's status
    /// moves only as the transition rules allow, and an import's progress is for the
    /// job's next chunk. What the shard's preview checks for other commands, at a
    /// fraction of its cost (a preview copies every touched SKU, catalog included).
    pub fn check_bulk_events(&self, events: &[Event]) -> Result<(), String> {
        let mut versions: foldhash::HashMap<&Id, u64> = foldhash::HashMap::default();
        let mut statuses: foldhash::HashMap<&Id, ShipmentStatus> = foldhash::HashMap::default();
        let mut created: foldhash::HashSet<&Id> = foldhash::HashSet::default();
        for ev in events {
            match ev {
                Event::TransferCreated { transfer } => {
                    if self.transfers.contains_key(&transfer.id) || !created.insert(&transfer.id) {
                        return Err(format!("transfer {} created twice", transfer.id));
                    }
                }
                Event::ReturnCreated { ret } => {
                    if self.returns.contains_key(&ret.id) || !created.insert(&ret.id) {
                        return Err(format!("return {} created twice", ret.id));
                    }
                }
                Event::StockChanged { sku, version, levels, .. } => {
                    let prev = match versions.get(sku) {
                        Some(v) => *v,
                        None => self.skus.get(sku).ok_or_else(|| format!("stock change for unknown sku {sku}"))?.stock_version,
                    };
                    if *version != prev + 1 {
                        return Err(format!("stock of {sku}: version {version} does not follow {prev}"));
                    }
                    levels.check().map_err(|e| format!("stock of {sku}: {e}"))?;
                    versions.insert(sku, *version);
                }
                Event::SkuUpserted { .. } => {}
                Event::ShipmentStatusChanged { id, status, .. } => {
                    let prev = match statuses.get(id) {
                        Some(s) => *s,
                        None => self.shipment(id).map_err(|r| r.detail)?.status,
                    };
                    if !prev.can_move_to(*status) {
                        return Err(format!("shipment {id}: {} cannot become {}", prev.as_str(), status.as_str()));
                    }
                    statuses.insert(id, *status);
                }
                Event::ImportChunkApplied { progress } => {
                    let job = self.import(&progress.id).map_err(|r| r.detail)?;
                    if job.status != ImportStatus::Running || progress.chunk != job.next_chunk {
                        return Err(format!("import {}: chunk {} while at chunk {}", progress.id, progress.chunk, job.next_chunk));
                    }
                }
                other => return Err(format!("{} is not a bulk write's event", other.type_name())),
            }
        }
        Ok(())
    }

    /// Ends a job (done, failed or cancelled) and forgets the oldest finished ones.
    fn end_import(&mut self, id: &Id, status: ImportStatus, detail: Option<String>, at: Timestamp) -> Result<(), String> {
        let j = self.imports.jobs.get_mut(id).ok_or_else(|| format!("unknown import {id}"))?;
        if j.is_finished() {
            return Err(format!("import {id} ended twice"));
        }
        j.status = status;
        j.detail = detail;
        j.finished_at = Some(at);
        self.imports.finished.push_back(id.clone());
        while self.imports.finished.len() > IMPORTS_FINISHED_KEPT {
            let old = self.imports.finished.pop_front().expect("non-empty");
            self.imports.jobs.remove(&old);
        }
        Ok(())
    }

    /// Copies a job into a preview scratch state.
    pub(super) fn copy_import(&mut self, from: &BrandState, id: &Id) {
        if let Some(j) = from.imports.jobs.get(id) {
            self.imports.jobs.entry(id.clone()).or_insert_with(|| j.clone());
        }
    }

    /// Applies an import event (the import arm of `apply`).
    pub(super) fn apply_import_event(&mut self, at: Timestamp, ev: &Event) -> Result<(), String> {
        fn job_mut<'a>(s: &'a mut BrandState, id: &Id) -> Result<&'a mut ImportJob, String> {
            s.imports.jobs.get_mut(id).ok_or_else(|| format!("unknown import {id}"))
        }
        match ev {
            Event::ImportQueued { job } => {
                let j = ImportJob {
                    spec: job.as_ref().clone(),
                    status: ImportStatus::Queued,
                    rows_total: None,
                    rows_ok: 0,
                    rows_failed: 0,
                    errors: Vec::new(),
                    next_chunk: 0,
                    next_offset: 0,
                    next_row: 0,
                    started_at: None,
                    finished_at: None,
                    detail: None,
                };
                if self.imports.jobs.insert(job.id.clone(), j).is_some() {
                    return Err(format!("import {} queued twice", job.id));
                }
            }
            Event::ImportStarted { id, rows_total } => {
                let j = job_mut(self, id)?;
                j.status = ImportStatus::Running;
                j.rows_total = Some(*rows_total);
                j.started_at = Some(at);
            }
            Event::ImportChunkApplied { progress: p } => {
                let j = job_mut(self, &p.id)?;
                if p.chunk != j.next_chunk || j.status != ImportStatus::Running {
                    return Err(format!("import {}: chunk {} applied while {:?} at chunk {}", p.id, p.chunk, j.status, j.next_chunk));
                }
                j.next_chunk += 1;
                j.next_offset = p.next_offset;
                j.next_row = p.next_row;
                j.rows_ok += p.rows_ok;
                j.rows_failed += p.rows_failed;
                j.errors.extend(p.errors.iter().cloned());
            }
            Event::ImportFinished { id, failed } => {
                let status = if failed.is_some() { ImportStatus::Failed } else { ImportStatus::Done };
                self.end_import(id, status, failed.clone(), at)?;
            }
            Event::ImportCancelled { id } => self.end_import(id, ImportStatus::Cancelled, None, at)?,
            other => return Err(format!("{} is not an import event", other.type_name())),
        }
        Ok(())
    }
}

fn status_name(s: ImportStatus) -> &'static str {
    match s {
        ImportStatus::Queued => "queued",
        ImportStatus::Running => "running",
        ImportStatus::Done => "done",
        ImportStatus::Failed => "failed",
        ImportStatus::Cancelled => "cancelled",
    }
}

/// `s` cut to at most `max` bytes (on a character boundary, ending in `…` when cut).
pub fn cut_to(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// How a job is shown (`GET .../imports/{id}` and the 202 of the upload).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportView {
    pub id: Id,
    pub kind: ImportKind,
    pub format: ImportFormat,
    pub status: ImportStatus,
    pub bytes: u64,
    pub rows_total: Option<u64>,
    pub rows_ok: u64,
    pub rows_failed: u64,
    pub errors: Vec<RowError>,
    #[serde(with = "super::time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "super::time::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(with = "super::time::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Where the runner resumes: not part of the contract, useful to operators.
    pub resume: Resume,
}

/// The next chunk of a job and where it starts in the file.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resume {
    pub chunk: u64,
    pub offset: u64,
    pub row: u64,
}

impl From<&ImportJob> for ImportView {
    fn from(j: &ImportJob) -> Self {
        ImportView {
            id: j.spec.id.clone(),
            kind: j.spec.kind,
            format: j.spec.format,
            status: j.status,
            bytes: j.spec.bytes,
            rows_total: j.rows_total,
            rows_ok: j.rows_ok,
            rows_failed: j.rows_failed,
            errors: j.errors.clone(),
            created_at: j.spec.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            detail: j.detail.clone(),
            resume: Resume { chunk: j.next_chunk, offset: j.next_offset, row: j.next_row },
        }
    }
}

#[cfg(test)]
mod tests;
