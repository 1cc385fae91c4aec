//! Wiring: recovery, actors, HTTP server, shutdown.
//!
//! [`Application::build`] binds the listener first (so `/healthz` answers and
//! `/readyz` says 503 during recovery), opens the search index, loads the newest valid
//! snapshot and replays the journal after it on a plain thread, then starts the actors
//! and the indexer and marks the server ready. [`Application::run`] serves until
//! SIGTERM/Ctrl-C, lets in-flight requests finish, commits the index and flushes the
//! journal.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use actix::{Actor, Arbiter};
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use crate::actors::registry::{sha256, AuthTable, EnsureAdmin, RegistryActor};
use crate::actors::shard::Shard;
use crate::actors::{shard_index, Context, Logs, Placement, Router};
use crate::clock::{ManualClock, SharedClock, SystemClock};
use crate::config::ServeConfig;
use crate::domain::brand::BrandState;
use crate::domain::BrandId;
use crate::http::{AppState, Services};
use crate::index::indexer::{ShardSource, Target, Wake};
use crate::index::search::Coverage;
use crate::index::{Indexer, IndexerHandle, ShipmentIndex, SkuIndex};
use crate::journal::{self, Journal, JournalConfig, Lsn, OpenOptions, OpenReport};
use crate::state::State;

/// Where things live under the data dir.
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> Self {
        DataDir { root: root.to_path_buf() }
    }
    pub fn wal(&self) -> PathBuf {
        self.root.join("wal")
    }
    pub fn sku_index(&self) -> PathBuf {
        crate::index::skus_dir(&self.root)
    }
    pub fn shipment_index(&self) -> PathBuf {
        crate::index::shipments_dir(&self.root)
    }
}

/// Holds an exclusive lock on the data dir for the life of the process, so two
/// servers can never write the same journal.
pub struct DirLock(#[allow(dead_code)] File);

pub fn lock_data_dir(root: &Path) -> anyhow::Result<DirLock> {
    std::fs::create_dir_all(root).with_context(|| format!("cannot create data dir {}", root.display()))?;
    let path = root.join("LOCK");
    let f =
        File::options().create(true).truncate(false).write(true).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| anyhow::anyhow!("data dir {} is in use by another zaiko process", root.display()))?;
    Ok(DirLock(f))
}

pub use crate::actors::drain::{DirtyKey, DocKind};

/// The whole state rebuilt from the newest valid snapshot and the journal after it.
pub struct Recovered {
    pub state: State,
    pub journal: Journal,
    pub report: OpenReport,
    /// The snapshot recovery started from, if any.
    pub snapshot: Option<crate::snapshot::SnapshotInfo>,
    /// The documents (SKUs, shipments) touched by records replayed after the
    /// `dirty_after` LSN given to [`recover_dir`] (what the search index has not seen).
    pub dirty: HashSet<DirtyKey>,
    /// Where recovery spent its time.
    pub timings: RecoveryTimings,
}

/// Where recovery spent its time, by phase: logged as `recovery phases`, shown in
/// `/metrics` as `zaiko_recovery_phase_seconds`, reported by `zaiko-bench capacity`.
/// The `*_cpu` figures add up the threads that did that part side by side.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RecoveryTimings {
    /// Loading the newest valid snapshot (reading, decoding, checking its digest).
    pub snapshot: crate::snapshot::LoadTimings,
    /// Reading, checking and replaying the journal after the snapshot.
    pub journal: std::time::Duration,
    pub replay: crate::replay::ReplayTimings,
    /// Opening the search indexes and listing what they have not seen.
    pub index_open: std::time::Duration,
}

impl RecoveryTimings {
    /// Each phase in seconds, by the name `/metrics` gives it.
    pub fn phases(&self) -> [(&'static str, f64); 8] {
        let s = |d: std::time::Duration| d.as_secs_f64();
        [
            ("snapshot", s(self.snapshot.wall)),
            ("snapshot_outcomes_cpu", s(self.snapshot.outcomes_cpu)),
            ("snapshot_tables_cpu", s(self.snapshot.tables_cpu)),
            ("snapshot_digest_cpu", s(self.snapshot.digest_cpu)),
            ("journal", s(self.journal)),
            ("journal_decode", s(self.replay.decode)),
            ("journal_apply_cpu", s(self.replay.apply_cpu)),
            ("index_open", s(self.index_open)),
        ]
    }

    /// Logs the phases and sets their gauges.
    fn report(&self) {
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        tracing::info!(
            snapshot_ms = ms(self.snapshot.wall),
            snapshot_outcomes_cpu_ms = ms(self.snapshot.outcomes_cpu),
            snapshot_tables_cpu_ms = ms(self.snapshot.tables_cpu),
            snapshot_digest_cpu_ms = ms(self.snapshot.digest_cpu),
            snapshot_threads = self.snapshot.threads,
            journal_ms = ms(self.journal),
            journal_records = self.replay.records,
            journal_decode_ms = ms(self.replay.decode),
            journal_apply_cpu_ms = ms(self.replay.apply_cpu),
            replay_threads = self.replay.threads,
            index_open_ms = ms(self.index_open),
            "recovery phases"
        );
        for (phase, seconds) in self.phases() {
            metrics::gauge!("zaiko_recovery_phase_seconds", "phase" => phase).set(seconds);
        }
    }
}

/// Loads the newest valid snapshot and replays the journal after it. Blocking; run it
/// off the async executors.
pub fn recover(cfg: &ServeConfig, dirty_after: Option<Lsn>) -> anyhow::Result<Recovered> {
    recover_dir(&cfg.data_dir, cfg.journal.clone(), dirty_after)
}

/// Recovery of `data_dir`: the newest valid snapshot, then the journal after it. With
/// `dirty_after`, collects the documents that replayed records after that LSN touched.
pub fn recover_dir(data_dir: &Path, config: JournalConfig, dirty_after: Option<Lsn>) -> anyhow::Result<Recovered> {
    let dir = DataDir::new(data_dir);
    let mut timings = RecoveryTimings::default();
    let (mut state, snapshot) = match crate::snapshot::load_newest_valid_timed(data_dir)? {
        Some((state, info, t)) => {
            timings.snapshot = t;
            (state, Some(info))
        }
        None => (State::default(), None),
    };
    let opts = OpenOptions { config, replay_after: state.lsn };
    let started = std::time::Instant::now();
    let failed = std::sync::atomic::AtomicBool::new(false);
    let (opened, dirty, replay) = std::thread::scope(|scope| {
        let replay = crate::replay::Replay::start(scope, &mut state, crate::replay::threads(), dirty_after, &failed);
        let cell = std::cell::RefCell::new((&mut state, Some(replay), None));
        let opened = journal::open_with(
            &dir.wal(),
            opts,
            |lsn, payload| {
                let (state, replay, _) = &mut *cell.borrow_mut();
                replay.as_mut().expect("replay runs until finished").record(state, lsn, payload);
                Ok(())
            },
            || {
                let (state, replay, done) = &mut *cell.borrow_mut();
                *done = Some(replay.take().expect("finished once").finish(state)?);
                Ok(())
            },
        );
        let (state, replay, done) = cell.into_inner();
        // Opening failed before the replay finished (a damaged segment): a record that
        // did not apply came before the damage, and is the error a serial replay gives.
        let opened = match (opened, replay) {
            (Err(e), Some(replay)) => match replay.finish(state) {
                Err((lsn, detail)) => Err(journal::JournalError::Replay { lsn, detail }),
                Ok(_) => Err(e),
            },
            (opened, _) => opened,
        };
        let (dirty, timings) = done.unwrap_or_default();
        (opened, dirty, timings)
    });
    let (journal, report) = opened?;
    timings.journal = started.elapsed();
    timings.replay = replay;
    Ok(Recovered { state, journal, report, snapshot, dirty, timings })
}

/// Every document of one kind in the state: what a rebuild of that index must index.
pub fn all_docs(brands: &HashMap<BrandId, BrandState>, kind: DocKind) -> Vec<DirtyKey> {
    let ids = |st: &BrandState| -> Vec<crate::domain::Id> {
        match kind {
            DocKind::Sku => st.skus.keys().cloned().collect(),
            DocKind::Shipment => st.shipments.keys().cloned().collect(),
        }
    };
    brands.iter().flat_map(|(b, st)| ids(st).into_iter().map(move |id| (b.clone(), kind, id))).collect()
}

/// The search indexes as recovery left them.
pub struct OpenedIndexes {
    pub skus: crate::index::Opened,
    pub shipments: crate::index::Opened<crate::index::shipments::schema::ShipmentFields>,
}

/// Opens the search indexes, then recovers marking dirty what they have not seen:
/// the documents touched after the lower of their committed LSNs, or every document
/// of a kind whose index had to be (re)created, claims more than the journal holds,
/// or is older than the snapshot recovery started from (the records between were not
/// replayed, so catch-up cannot know what changed or was deleted there).
fn recover_with_index(cfg: &ServeConfig) -> anyhow::Result<(Recovered, OpenedIndexes)> {
    use crate::index::{open_or_create_kind, recreate_kind, SHIPMENTS, SKUS};
    let dir = DataDir::new(&cfg.data_dir);
    let started = std::time::Instant::now();
    let mut skus = open_or_create_kind(&dir.sku_index(), SKUS)?;
    let mut shipments = open_or_create_kind(&dir.shipment_index(), SHIPMENTS)?;
    let mut index_open = started.elapsed();
    // Re-indexing a document the other index already has is harmless.
    let after = [skus.committed_lsn, shipments.committed_lsn].into_iter().flatten().min();
    let mut recovered = recover(cfg, after)?;
    let started = std::time::Instant::now();
    let (last, from) = (recovered.report.last_lsn, recovered.snapshot.as_ref().map_or(0, |s| s.lsn));
    if index_unusable(SKUS.name, skus.committed_lsn, last, from) {
        skus = recreate_kind(&dir.sku_index(), SKUS)?;
    }
    if index_unusable(SHIPMENTS.name, shipments.committed_lsn, last, from) {
        shipments = recreate_kind(&dir.shipment_index(), SHIPMENTS)?;
    }
    for (kind, name, lsn) in [(DocKind::Sku, SKUS.name, skus.committed_lsn), (DocKind::Shipment, SHIPMENTS.name, shipments.committed_lsn)] {
        match lsn {
            Some(i) => tracing::info!(kind = %name, index_lsn = i, dirty = recovered.dirty.len(), "search index catching up"),
            None => {
                recovered.dirty.retain(|k| k.1 != kind);
                recovered.dirty.extend(all_docs(&recovered.state.brands, kind));
            }
        }
    }
    index_open += started.elapsed();
    recovered.timings.index_open = index_open;
    recovered.timings.report();
    Ok((recovered, OpenedIndexes { skus, shipments }))
}

/// Whether an index's committed LSN rules out a catch-up (logging why).
fn index_unusable(kind: &str, committed: Option<Lsn>, journal_lsn: Lsn, snapshot_lsn: Lsn) -> bool {
    match committed {
        Some(i) if i > journal_lsn => {
            tracing::warn!(kind = %kind, index_lsn = i, journal_lsn, "search index is ahead of the journal; rebuilding it");
            true
        }
        Some(i) if i < snapshot_lsn => {
            tracing::info!(kind = %kind, index_lsn = i, snapshot_lsn, "search index is older than the snapshot recovery started from; rebuilding it");
            true
        }
        _ => false,
    }
}

pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
    /// The `--metrics-listen` server, stopped with the main one.
    metrics: Option<actix_web::dev::ServerHandle>,
    ready: oneshot::Receiver<anyhow::Result<Running>>,
    _lock: DirLock,
}

impl Application {
    /// Binds the listener and starts recovery in the background. Must run inside an
    /// actix `System`.
    pub async fn build(cfg: ServeConfig) -> anyhow::Result<Application> {
        let mut cfg = cfg;
        let cap = connection_cap(&cfg)?;
        let lock = lock_data_dir(&cfg.data_dir)?;
        let demo = if cfg.demo { Some(crate::demo::plan(&cfg.data_dir)?) } else { None };
        let generated_admin = match (&demo, &cfg.admin_token) {
            (Some(_), None) => {
                // A demo needs an admin token to load itself and to show to the user.
                let (_, token, _) = crate::actors::registry::new_token();
                cfg.admin_token = Some(token.clone());
                Some(token)
            }
            _ => None,
        };
        let auth = Arc::new(ArcSwap::from_pointee(AuthTable::default()));
        let loading_demo = std::sync::atomic::AtomicBool::new(matches!(demo, Some(crate::demo::Plan::Load)));
        let limiter = crate::http::brand_limiter(&cfg.limits);
        let state = web::Data::new(AppState {
            services: Default::default(),
            auth: auth.clone(),
            limits: cfg.limits.clone(),
            loading_demo,
            limiter,
        });
        let app_state = state.clone();
        let routes: fn(&mut web::ServiceConfig) =
            if cfg.metrics_listen.is_some() { crate::http::configure_without_metrics } else { crate::http::configure };
        let app = move || {
            // The last `wrap` runs first: ids, auth and limits, then cluster routing.
            App::new()
                .app_data(app_state.clone())
                .wrap(actix_web::middleware::from_fn(crate::http::cluster::route))
                .wrap(actix_web::middleware::from_fn(crate::http::request_context))
                .configure(routes)
        };
        let settings = crate::http::server::Settings {
            workers: cfg.http_workers,
            backlog: 4096,
            max_connections_per_worker: cap.per_worker,
            // A client has this long to send a request head; idle keep-alive connections
            // close after the keep-alive time; on shutdown, in-flight requests get this
            // long to finish.
            client_request_timeout: std::time::Duration::from_secs(10),
            keep_alive: std::time::Duration::from_secs(30),
            shutdown_timeout_s: 30,
        };
        // Signals are handled in `run`: actix-server's own handler stops the whole actix
        // System, shard arbiters included, before the index is committed.
        let (server, addrs) =
            crate::http::server::bind(&cfg.listen, &settings, app).with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let port = addrs.first().map(|a| a.port()).context("no listen address")?;
        let metrics = match &cfg.metrics_listen {
            Some(addr) => Some(metrics_server(addr, state.clone())?),
            None => None,
        };
        let (tx, ready) = oneshot::channel();
        let handle = server.handle();
        let host = match cfg.listen.rsplit_once(':').map(|(h, _)| h) {
            Some("0.0.0.0") | Some("[::]") | None => "127.0.0.1".to_string(),
            Some(h) => h.to_string(),
        };
        let base = format!("http://{host}:{port}");
        actix_rt::spawn(async move {
            let admin = cfg.admin_token.clone();
            let data_dir = cfg.data_dir.clone();
            let mut result = match cfg.cluster.clone() {
                Some(cluster) => start_cluster_services(cfg, cluster, state.clone(), auth).await,
                None => start_services(cfg, state.clone(), auth).await,
            };
            if let (Ok(_), Some(plan), Some(admin)) = (&result, demo, admin) {
                if let Err(e) = start_demo(plan, &data_dir, &base, &admin, generated_admin.is_some()).await {
                    result = Err(e);
                }
                state.loading_demo.store(false, std::sync::atomic::Ordering::Release);
            }
            if let Err(e) = &result {
                tracing::error!(error = %format!("{e:#}"), "start-up failed; stopping");
                handle.stop(false).await;
            }
            let _ = tx.send(result);
        });
        Ok(Application { server, port, metrics, ready, _lock: lock })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until a shutdown signal, then commits the index and flushes the journal.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut server = self.server;
        let handle = server.handle();
        let metrics = self.metrics;
        tokio::select! {
            res = &mut server => res.context("http server failed")?,
            _ = shutdown_signal() => {
                tracing::info!("shutdown signal received; finishing in-flight requests");
                // `stop` sends at once; its completion needs the server polled.
                let stopped = handle.stop(true);
                server.await.context("http server failed")?;
                stopped.await;
            }
        }
        if let Some(m) = metrics {
            m.stop(true).await;
        }
        match self.ready.await {
            Ok(Ok(Running::Single { journal, indexer })) => {
                // The indexer's last cycle needs the shards and the journal, so it goes first.
                tokio::task::spawn_blocking(move || indexer.shutdown()).await.context("indexer shutdown panicked")?;
                journal.shutdown();
                tracing::info!(durable_lsn = journal.durable_lsn(), "journal flushed; bye");
            }
            Ok(Ok(Running::Cluster { node, runtime, indexer })) => {
                runtime.spawn(async move { node.shutdown().await }).await.context("cluster shutdown panicked")?;
                // The index is rebuilt at the next start: its last cycle only ends it.
                tokio::task::spawn_blocking(move || indexer.shutdown()).await.context("indexer shutdown panicked")?;
                drop(runtime);
                tracing::info!("bye");
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => anyhow::bail!("stopped before recovery finished"),
        }
        Ok(())
    }
}

/// What runs once recovery is done, for [`Application::run`] to stop in order.
enum Running {
    Single { journal: Journal, indexer: IndexerHandle },
    Cluster { node: Box<crate::cluster::node::Node>, runtime: ClusterRuntime, indexer: IndexerHandle },
}

/// The cluster runtime, shut down without blocking when dropped (it may be dropped in
/// an async context, where a plain runtime's drop panics).
struct ClusterRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for ClusterRuntime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for ClusterRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Raises the open-file limit to its hard limit and caps connections below it (see
/// `fdlimit`), logging both.
fn connection_cap(cfg: &ServeConfig) -> anyhow::Result<crate::fdlimit::ConnectionCap> {
    use crate::fdlimit::{self, FDS_RESERVED};
    let files = fdlimit::raise_open_files_limit();
    // Outbound webhook attempts and streaming uploads hold a descriptor each on top.
    let reserved = FDS_RESERVED + cfg.integration.webhook_in_flight_max as u64 + crate::imports::UPLOADS_MAX as u64;
    let cap = fdlimit::connection_cap(files.limit, reserved, cfg.max_connections, cfg.http_workers).map_err(anyhow::Error::msg)?;
    if let Some(asked) = cap.lowered_from {
        tracing::warn!(
            max_connections = asked,
            open_files_limit = files.limit,
            reserved,
            lowered_to = cap.total,
            "--max-connections is more than the open-file limit allows; lowered (raise the limit to allow more)"
        );
    }
    tracing::info!(
        open_files_limit = files.limit,
        raised_from = files.raised_from,
        reserved_for_files = reserved,
        max_connections = cap.total,
        per_worker = cap.per_worker,
        "connection limit set; past it new connections wait in the listen backlog"
    );
    metrics::gauge!("zaiko_http_connections_max").set(cap.total as f64);
    Ok(cap)
}

/// Starts the server of `/metrics` alone on `addr` (`--metrics-listen`), so metrics can
/// stay on an internal address while the API listens elsewhere.
fn metrics_server(addr: &str, state: web::Data<AppState>) -> anyhow::Result<actix_web::dev::ServerHandle> {
    let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(crate::http::configure_metrics))
        .workers(1)
        .disable_signals()
        .bind(addr)
        .with_context(|| format!("cannot listen on --metrics-listen {addr}"))?;
    if let Some(bound) = server.addrs().first() {
        tracing::info!(addr = %bound, "serving /metrics");
    }
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}

/// How often the snapshot schedule looks at the journal.
const SNAPSHOT_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Shortest and longest wait before a failed scheduled snapshot is tried again.
const SNAPSHOT_RETRY_MIN: std::time::Duration = SNAPSHOT_CHECK_INTERVAL;
const SNAPSHOT_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(300);

/// Takes a snapshot when `every_records` records or `every` time (with changes) have
/// passed since the last one. A failed one (a full disk) is tried again after a
/// backoff until it succeeds, whatever the schedule, and shows in the health registry.
fn schedule_snapshots(
    snapshots: Arc<crate::snapshot::SnapshotService>,
    journal: Journal,
    clock: SharedClock,
    every_records: u64,
    every: Option<std::time::Duration>,
) {
    if every_records == 0 && every.is_none() {
        return;
    }
    let health = crate::health::global().worker(crate::health::Worker::Snapshots);
    actix_rt::spawn(async move {
        let _stopped = health.until_dropped();
        let mut last_at = std::time::Instant::now();
        let mut backoff = crate::health::Backoff::new(SNAPSHOT_RETRY_MIN, SNAPSHOT_RETRY_MAX);
        let mut retry_at: Option<std::time::Instant> = None;
        let mut ticker = tokio::time::interval(SNAPSHOT_CHECK_INTERVAL);
        loop {
            ticker.tick().await;
            let last_lsn = snapshots.last.lock().expect("last lock").as_ref().map_or(0, |s| s.lsn);
            let new_records = journal.durable_lsn().saturating_sub(last_lsn);
            let by_count = every_records > 0 && new_records >= every_records;
            let by_time = every.is_some_and(|e| last_at.elapsed() >= e) && new_records > 0;
            let due = match retry_at {
                Some(at) => std::time::Instant::now() >= at,
                None => by_count || by_time,
            };
            if !due {
                continue;
            }
            last_at = std::time::Instant::now();
            match snapshots.create(clock.now()).await {
                Ok(_) => {
                    health.ok();
                    backoff.reset();
                    retry_at = None;
                }
                Err(e) => {
                    let attempts = health.failed(&e);
                    let delay = backoff.next_delay();
                    retry_at = Some(std::time::Instant::now() + delay);
                    tracing::error!(error = %e, attempts, retry_s = delay.as_secs(), "scheduled snapshot failed; retrying");
                }
            }
        }
    });
}

/// Writes a line to stdout for the person who started the server; a closed stdout
/// (nobody reading) is not an error.
pub fn announce(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
    let _ = std::io::stdout().flush();
}

/// Makes a token through the API (`POST {url}` as the admin) and returns it.
async fn new_token(client: &awc::Client, url: &str, admin: &str, body: serde_json::Value) -> anyhow::Result<String> {
    let mut resp = client
        .post(url)
        .insert_header(("Authorization", format!("Bearer {admin}")))
        .send_json(&body)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create a token: {e}"))?;
    let body: serde_json::Value = resp.json().await.map_err(|e| anyhow::anyhow!("cannot create a token: {e}"))?;
    Ok(body["token"].as_str().context("no token in the answer")?.to_string())
}

/// Loads the demo (if this data dir does not have it yet), makes a viewer token for
/// the UI and a brand token for the API, and tells the user where to go.
async fn start_demo(plan: crate::demo::Plan, data_dir: &Path, base: &str, admin: &str, admin_generated: bool) -> anyhow::Result<()> {
    if let crate::demo::Plan::Load = plan {
        let started = std::time::Instant::now();
        let n = crate::demo::load(data_dir, base, admin).await?;
        tracing::info!(requests = n, elapsed_ms = started.elapsed().as_millis() as u64, "demo data loaded");
    }
    let client = awc::Client::default();
    let viewer = new_token(&client, &format!("{base}/v1/tokens"), admin, serde_json::json!({"role": "viewer"})).await?;
    let brand = crate::demo::FIRST_BRAND;
    let brand_token = new_token(&client, &format!("{base}/v1/brands/{brand}/tokens"), admin, serde_json::json!({})).await?;
    announce(&format!("zaiko demo ready: open {base}/ui/"));
    announce(&format!("  viewer token (paste it into the UI): {viewer}"));
    announce(&format!("  brand token of {brand} (for the API): {brand_token}"));
    announce(&format!("  try: curl -s -G {base}/v1/search/skus --data-urlencode q=シャツ -H 'Authorization: Bearer {brand_token}'"));
    if admin_generated {
        announce(&format!("  admin token (for the API; shown only now): {admin}"));
    }
    Ok(())
}

async fn start_services(cfg: ServeConfig, app: web::Data<AppState>, auth: Arc<ArcSwap<AuthTable>>) -> anyhow::Result<Running> {
    let started = std::time::Instant::now();
    let recover_cfg = cfg.clone();
    let (recovered, opened) =
        tokio::task::spawn_blocking(move || recover_with_index(&recover_cfg)).await.context("recovery thread panicked")??;
    let Recovered { state, journal, report, snapshot, dirty, .. } = recovered;
    let State { registry, brands, .. } = state;
    tracing::info!(
        history = %journal.history().id,
        snapshot_lsn = snapshot.as_ref().map_or(0, |s| s.lsn),
        records = report.records_replayed,
        last_lsn = report.last_lsn,
        brands = brands.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered state from the journal"
    );
    let clock: SharedClock = match cfg.manual_clock {
        Some(t) => Arc::new(ManualClock::new(t)),
        None => Arc::new(SystemClock),
    };
    // The recovered locations are published before any shard starts: the registry
    // actor republishes them when it starts, but a shard (the start-up sweep, the
    // import runner resuming a job) may decide before that happens.
    let locations = Arc::new(ArcSwap::from_pointee(registry.locations.clone()));
    let ctx = Context { clock: clock.clone(), record_bytes_max: cfg.journal.record_bytes_max, locations };
    let log: crate::journal::LogRef = Arc::new(journal.clone());
    let pending_imports = crate::integration::pending_imports(&brands);
    let subscriptions = crate::integration::subscriptions(&brands);
    let mut parts: Vec<(HashMap<BrandId, BrandState>, HashSet<DirtyKey>)> = (0..cfg.shards).map(|_| Default::default()).collect();
    for (id, b) in brands {
        parts[shard_index(&id, cfg.shards)].0.insert(id, b);
    }
    for key in dirty {
        parts[shard_index(&key.0, cfg.shards)].1.insert(key);
    }
    let queued: Vec<Arc<AtomicI64>> = (0..cfg.shards).map(|_| Arc::default()).collect();
    let shards: Vec<_> = parts
        .into_iter()
        .enumerate()
        .map(|(index, (brands, dirty))| {
            let (ctx, log, queued) = (ctx.clone(), log.clone(), queued[index].clone());
            let capacity = cfg.mailbox_capacity;
            let arbiter = Arbiter::new();
            let dirty = dirty.into_iter().collect();
            let addr = Shard::start_in_arbiter(&arbiter.handle(), move |_| {
                Shard::new(index, brands, dirty, ctx, Logs::One(log), capacity, queued)
            });
            // The arbiter thread lives as long as the System; dropping the handle does not stop it.
            std::mem::forget(arbiter);
            addr
        })
        .collect();
    // Before the admin token line: it keeps the gap between that line and readiness short.
    let followed = crate::index::indexer::Followed::Journal(journal.clone());
    let (skus, shipment_index, indexer) = start_indexer(&cfg, opened, &shards, followed, None)?;
    let registry = RegistryActor {
        state: registry,
        ctx: ctx.clone(),
        log: Some(log.clone()),
        auth,
        configured_admin: cfg.admin_token.as_deref().map(|t| sha256(t.as_bytes())),
        mailbox_capacity: cfg.mailbox_capacity,
    }
    .start();
    let router = Router { shards, registry: registry.clone(), queued, placement: Placement::ByBrand };
    let integrations = crate::integration::start(
        &cfg.data_dir,
        &cfg.integration,
        &journal,
        clock.clone(),
        router.clone(),
        pending_imports,
        subscriptions,
    )?;
    let (tx, rx) = oneshot::channel();
    registry.send(EnsureAdmin { reply: tx }).await.context("registry actor stopped")?;
    if let Some(token) = rx.await.context("registry actor stopped")?.map_err(|r| anyhow::anyhow!("{r}"))? {
        eprintln!("\nzaiko: no admin token was configured, so one was generated. It is shown only now:\n\n    {token}\n\nKeep it safe; set ZAIKO_ADMIN_TOKEN to choose your own.\n");
    }
    // Reservations that expired while the server was down are expired before anyone
    // can see them as active.
    for swept in router.sweep_all().await.context("a shard stopped during the start-up sweep")? {
        swept.log.wait_durable(swept.lsn).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let snapshots = Arc::new(crate::snapshot::SnapshotService::new(&cfg.data_dir, cfg.snapshots_keep, journal.clone()));
    schedule_snapshots(snapshots.clone(), journal.clone(), clock.clone(), cfg.snapshot_every_records, cfg.snapshot_every);
    if app
        .services
        .set(Services {
            router,
            clock,
            local: Some(crate::http::Local { journal: journal.clone(), snapshots, skus, shipments: shipment_index, integrations }),
            cluster: None,
            cluster_integrations: None,
            cluster_search: None,
        })
        .is_err()
    {
        anyhow::bail!("services were set twice");
    }
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "ready");
    Ok(Running::Single { journal, indexer })
}

/// Threads of the cluster runtime: the NATS connection, the node controller, each owned
/// partition's publisher and lease renewal, and the standbys.
const CLUSTER_RUNTIME_THREADS: usize = 2;

/// Cluster mode: no local journal; the node controller takes over, follows and serves
/// partitions as leases and heartbeats say (`docs/cluster.md`). The actors start empty
/// and receive partitions from the controller.
async fn start_cluster_services(
    cfg: ServeConfig,
    cluster: crate::cluster::config::ClusterConfig,
    app: web::Data<AppState>,
    auth: Arc<ArcSwap<AuthTable>>,
) -> anyhow::Result<Running> {
    use crate::cluster::engine::{ClusterShape, Engine};
    use crate::cluster::node::{Node, NodeConfig};
    use crate::cluster::plog::PlogLimits;
    let clock: SharedClock = match cfg.manual_clock {
        Some(t) => Arc::new(ManualClock::new(t)),
        None => Arc::new(SystemClock),
    };
    let locations = Arc::new(ArcSwap::from_pointee(std::collections::BTreeMap::new()));
    let ctx = Context { clock: clock.clone(), record_bytes_max: cfg.journal.record_bytes_max, locations };
    let partitions = cluster.partitions;
    let queued: Vec<Arc<AtomicI64>> = (0..cfg.shards).map(|_| Arc::default()).collect();
    let shards: Vec<_> = (0..cfg.shards)
        .map(|index| {
            let (ctx, queued) = (ctx.clone(), queued[index].clone());
            let capacity = cfg.mailbox_capacity;
            let arbiter = Arbiter::new();
            let logs = Logs::Partitioned { partitions, owned: HashMap::new() };
            let addr = Shard::start_in_arbiter(&arbiter.handle(), move |_| {
                Shard::new(index, HashMap::new(), Default::default(), ctx, logs, capacity, queued)
            });
            std::mem::forget(arbiter);
            addr
        })
        .collect();
    let registry = RegistryActor {
        state: Default::default(),
        ctx,
        log: None,
        auth,
        configured_admin: cfg.admin_token.as_deref().map(|t| sha256(t.as_bytes())),
        mailbox_capacity: cfg.mailbox_capacity,
    }
    .start();
    let router = Router { shards, registry, queued, placement: Placement::ByPartition { partitions } };
    let runtime = ClusterRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(CLUSTER_RUNTIME_THREADS)
            .thread_name("zaiko-cluster")
            .enable_all()
            .build()
            .context("cannot start the cluster runtime")?,
    ));
    let host = Arc::new(crate::actors::host::ActorHost::new(router.clone()));
    let resumes = host.resumes.clone();
    // The search index of the partitions this node owns: built anew at every start
    // (each partition is indexed whole when it arrives), so it never holds a partition
    // this node stopped following while it was down.
    let search = start_cluster_search(&cfg, &router.shards, host.installed.clone(), partitions)?;
    let node_cfg = NodeConfig {
        node_id: cluster.node_id.clone(),
        advertise: cluster.advertise.clone(),
        partitions,
        standbys: cluster.standbys,
        timing: cluster.timing,
        limits: PlogLimits {
            record_bytes_max: cfg.journal.record_bytes_max,
            entry_bytes_max: cluster.engine.entry_bytes_max,
            queue_bytes_max: cfg.journal.queue_bytes_max,
        },
        scratch_dir: cfg.data_dir.join("cluster-snapshots"),
        feed_retention: std::time::Duration::from_millis(cfg.integration.retention.max_age_ms.max(0) as u64),
    };
    let engine_cfg = cluster.engine.clone();
    let node = runtime
        .spawn(async move {
            let engine = Engine::connect(&engine_cfg, &node_cfg.node_id).await?;
            engine.check_shape(ClusterShape { partitions: node_cfg.partitions }).await?;
            anyhow::Ok(Node::start(node_cfg, engine, host))
        })
        .await
        .context("the cluster runtime stopped")??;
    tracing::info!(node = %cluster.node_id, partitions, urls = %cluster.engine.urls, "cluster node started");
    let integrations = crate::integration::start_cluster(
        &cfg.data_dir,
        &cfg.integration,
        &node,
        runtime.handle().clone(),
        clock.clone(),
        router.clone(),
        resumes,
    )?;
    crate::cluster::snapshots::schedule(node.clone(), clock.clone(), cfg.snapshot_every_records, cfg.snapshot_every, runtime.handle());
    let (search, indexer) = search;
    let services = Services {
        router,
        clock,
        local: None,
        cluster: Some(node.clone()),
        cluster_integrations: Some(integrations),
        cluster_search: Some(search),
    };
    if app.services.set(services).is_err() {
        anyhow::bail!("services were set twice");
    }
    tracing::info!("ready");
    Ok(Running::Cluster { node: Box::new(node), runtime, indexer })
}

/// Cluster mode: empty search indexes under the data dir and the indexer that fills
/// them with the partitions installed on this node.
fn start_cluster_search(
    cfg: &ServeConfig,
    shards: &[actix::Addr<Shard>],
    installed: crate::actors::host::Installed,
    partitions: u32,
) -> anyhow::Result<(crate::http::ClusterSearch, IndexerHandle)> {
    use crate::index::{recreate_kind, SHIPMENTS, SKUS};
    let dir = DataDir::new(&cfg.data_dir);
    let opened =
        OpenedIndexes { skus: recreate_kind(&dir.sku_index(), SKUS)?, shipments: recreate_kind(&dir.shipment_index(), SHIPMENTS)? };
    let (marks_tx, covered) = tokio::sync::watch::channel(Arc::default());
    let followed = crate::index::indexer::Followed::Partitions(installed.clone());
    let (skus, shipments, indexer) = start_indexer(cfg, opened, shards, followed, Some((partitions, marks_tx)))?;
    let wake = skus.coverage().wake().clone();
    Ok((crate::http::ClusterSearch { skus, shipments, covered, installed, wake }, indexer))
}

/// Starts the indexer thread on the opened indexes and returns the search handles.
/// `partitions`: cluster mode's partition count and where per-partition coverage goes.
fn start_indexer(
    cfg: &ServeConfig,
    opened: OpenedIndexes,
    shards: &[actix::Addr<Shard>],
    followed: crate::index::indexer::Followed,
    partitions: Option<(u32, tokio::sync::watch::Sender<Arc<crate::index::indexer::PartitionMarks>>)>,
) -> anyhow::Result<(Arc<SkuIndex>, Arc<ShipmentIndex>, IndexerHandle)> {
    // Until the first cycle, searches see what both indexes hold: the lower LSN.
    let committed = opened.skus.committed_lsn.unwrap_or(0).min(opened.shipments.committed_lsn.unwrap_or(0));
    let skus = Target::open(opened.skus).context("cannot open the sku search index")?;
    let shipments = Target::open(opened.shipments).context("cannot open the shipment search index")?;
    let (covered_tx, covered_rx) = tokio::sync::watch::channel(committed);
    let wake = Arc::new(Wake::default());
    let coverage = Coverage::new(covered_rx.clone(), wake.clone());
    let sku_index =
        Arc::new(SkuIndex::new(skus.reader.clone(), skus.fields, covered_rx, wake.clone()).with_synonyms(cfg.search_synonyms.clone()));
    let shipment_index = Arc::new(ShipmentIndex::new(shipments.reader.clone(), shipments.fields, coverage));
    let indexer = Indexer {
        skus,
        shipments,
        source: Box::new(ShardSource(shards.to_vec())),
        followed,
        covered_tx,
        partitions,
        wake,
        commit_interval: cfg.index_commit_interval,
        last_cycle_max: crate::index::indexer::LAST_CYCLE_MAX_DEFAULT,
        committed_lsn: committed,
        health: crate::health::global().worker(crate::health::Worker::Indexer),
    }
    .spawn()
    .context("cannot start the indexer thread")?;
    Ok((sku_index, shipment_index, indexer))
}
