//! Wiring: recovery, actors, HTTP server, shutdown.
//!
//! [`Application::build`] binds the listener first (so `/healthz` answers and
//! `/readyz` says 503 during recovery), opens the search index and replays the
//! journal on a plain thread, then starts the actors and the indexer and marks the
//! server ready. [`Application::run`] serves until SIGTERM/Ctrl-C, lets in-flight
//! requests finish, commits the index and flushes the journal.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::{Actor, Arbiter};
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use crate::actors::registry::{sha256, AuthTable, EnsureAdmin, RegistryActor};
use crate::actors::shard::{apply_brand_record, Shard};
use crate::actors::{shard_index, Context, Router};
use crate::clock::{ManualClock, SharedClock, SystemClock};
use crate::config::ServeConfig;
use crate::domain::brand::BrandState;
use crate::domain::event::{self, WalRecord};
use crate::domain::registry::Registry;
use crate::domain::BrandId;
use crate::http::{AppState, Services};
use crate::index::indexer::{ShardSource, Wake, WRITER_MEMORY_BYTES};
use crate::index::{Indexer, IndexerHandle, SkuIndex};
use crate::journal::{self, Journal, JournalConfig, Lsn, OpenOptions, OpenReport};

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

pub use crate::actors::shard::SkuKey;

/// The whole state rebuilt from the journal.
pub struct Recovered {
    pub registry: Registry,
    pub brands: HashMap<BrandId, BrandState>,
    pub journal: Journal,
    pub report: OpenReport,
    /// The SKUs touched by records after the `dirty_after` LSN given to [`recover`].
    pub dirty: HashSet<SkuKey>,
}

/// Replays the journal into state. Blocking; run it off the async executors.
pub fn recover(cfg: &ServeConfig, dirty_after: Option<Lsn>) -> anyhow::Result<Recovered> {
    recover_dir(&cfg.data_dir, cfg.journal.clone(), dirty_after)
}

/// Replays the journal of `data_dir`. With `dirty_after`, collects the SKUs that
/// records after that LSN touched (what the search index has not seen).
pub fn recover_dir(data_dir: &Path, config: JournalConfig, dirty_after: Option<Lsn>) -> anyhow::Result<Recovered> {
    let dir = DataDir::new(data_dir);
    let mut registry = Registry::default();
    let mut brands = HashMap::new();
    let mut dirty = HashSet::new();
    let opts = OpenOptions { config, replay_after: 0 };
    let (journal, report) = journal::open(&dir.wal(), opts, |lsn, payload| match event::decode(payload)? {
        WalRecord::Registry(r) => registry.apply(lsn, &r),
        WalRecord::Brand(b) => {
            apply_brand_record(&mut brands, lsn, &b)?;
            if dirty_after.is_some_and(|after| lsn > after) {
                dirty.extend(b.touched_skus().map(|sku| (b.brand.clone(), sku.clone())));
            }
            Ok(())
        }
    })?;
    Ok(Recovered { registry, brands, journal, report, dirty })
}

/// Every SKU of the state: what a rebuild of the index must index.
pub fn all_skus(brands: &HashMap<BrandId, BrandState>) -> HashSet<SkuKey> {
    brands.iter().flat_map(|(b, st)| st.skus.keys().map(move |s| (b.clone(), s.clone()))).collect()
}

/// Opens the search index, then replays the journal marking dirty what the index
/// has not seen: the SKUs touched after its committed LSN, or every SKU when the
/// index had to be (re)created or claims more than the journal holds.
///
/// Invariant: the catch-up needs every record after the index's LSN to be replayed.
/// A recovery that starts later (from a snapshot at S > the index's LSN) cannot tell
/// which SKUs changed up to S, nor which were deleted, so it must rebuild the index
/// (`crate::index::recreate`, every SKU dirty).
fn recover_with_index(cfg: &ServeConfig) -> anyhow::Result<(Recovered, crate::index::Opened)> {
    let dir = DataDir::new(&cfg.data_dir).sku_index();
    let mut opened = crate::index::open_or_create(&dir)?;
    let mut recovered = recover(cfg, opened.committed_lsn)?;
    let last = recovered.report.last_lsn;
    if let Some(i) = opened.committed_lsn.filter(|&i| i > last) {
        tracing::warn!(index_lsn = i, journal_lsn = last, "search index is ahead of the journal; rebuilding it");
        opened = crate::index::recreate(&dir)?;
    }
    match opened.committed_lsn {
        Some(i) => tracing::info!(index_lsn = i, dirty = recovered.dirty.len(), "search index catching up"),
        None => recovered.dirty = all_skus(&recovered.brands),
    }
    Ok((recovered, opened))
}

pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
    ready: oneshot::Receiver<anyhow::Result<Running>>,
    _lock: DirLock,
}

impl Application {
    /// Binds the listener and starts recovery in the background. Must run inside an
    /// actix `System`.
    pub async fn build(cfg: ServeConfig) -> anyhow::Result<Application> {
        let lock = lock_data_dir(&cfg.data_dir)?;
        let auth = Arc::new(ArcSwap::from_pointee(AuthTable::default()));
        let state = web::Data::new(AppState { services: Default::default(), auth: auth.clone(), limits: cfg.limits.clone() });
        let app_state = state.clone();
        let server = HttpServer::new(move || App::new().app_data(app_state.clone()).configure(crate::http::configure))
            .workers(cfg.http_workers)
            .backlog(4096)
            .shutdown_timeout(30)
            // Signals are handled in `run`: actix-server's own handler stops the whole
            // actix System, shard arbiters included, before the index is committed.
            .disable_signals()
            .bind(&cfg.listen)
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let port = server.addrs().first().map(|a| a.port()).context("no listen address")?;
        let server = server.run();
        let (tx, ready) = oneshot::channel();
        let handle = server.handle();
        actix_rt::spawn(async move {
            let result = start_services(cfg, state, auth).await;
            if let Err(e) = &result {
                tracing::error!(error = %format!("{e:#}"), "recovery failed; stopping");
                handle.stop(false).await;
            }
            let _ = tx.send(result);
        });
        Ok(Application { server, port, ready, _lock: lock })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until a shutdown signal, then commits the index and flushes the journal.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut server = self.server;
        let handle = server.handle();
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
        let Running { journal, indexer } = match self.ready.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(e),
            Err(_) => anyhow::bail!("stopped before recovery finished"),
        };
        // The indexer's last cycle needs the shards and the journal, so it goes first.
        tokio::task::spawn_blocking(move || indexer.shutdown()).await.context("indexer shutdown panicked")?;
        journal.shutdown();
        tracing::info!(durable_lsn = journal.durable_lsn(), "journal flushed; bye");
        Ok(())
    }
}

/// What runs once recovery is done, for [`Application::run`] to stop in order.
struct Running {
    journal: Journal,
    indexer: IndexerHandle,
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

async fn start_services(cfg: ServeConfig, state: web::Data<AppState>, auth: Arc<ArcSwap<AuthTable>>) -> anyhow::Result<Running> {
    let started = std::time::Instant::now();
    let recover_cfg = cfg.clone();
    let (recovered, opened) =
        tokio::task::spawn_blocking(move || recover_with_index(&recover_cfg)).await.context("recovery thread panicked")??;
    let Recovered { registry, brands, journal, report, dirty } = recovered;
    tracing::info!(
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
    let ctx = Context { journal: journal.clone(), clock: clock.clone(), locations: Arc::new(ArcSwap::from_pointee(BTreeMap::new())) };
    let mut parts: Vec<(HashMap<BrandId, BrandState>, HashSet<SkuKey>)> = (0..cfg.shards).map(|_| Default::default()).collect();
    for (id, b) in brands {
        parts[shard_index(&id, cfg.shards)].0.insert(id, b);
    }
    for key in dirty {
        parts[shard_index(&key.0, cfg.shards)].1.insert(key);
    }
    let shards: Vec<_> = parts
        .into_iter()
        .enumerate()
        .map(|(index, (brands, dirty))| {
            let last_lsn = brands.values().map(|b| b.last_lsn).max().unwrap_or(0);
            let ctx = ctx.clone();
            let capacity = cfg.mailbox_capacity;
            let arbiter = Arbiter::new();
            let dirty = dirty.into_iter().collect();
            let addr = Shard::start_in_arbiter(&arbiter.handle(), move |_| Shard {
                index,
                brands,
                dirty,
                ctx,
                mailbox_capacity: capacity,
                last_lsn,
            });
            // The arbiter thread lives as long as the System; dropping the handle does not stop it.
            std::mem::forget(arbiter);
            addr
        })
        .collect();
    let (skus, indexer) = start_indexer(&cfg, opened, &shards, &journal)?;
    let registry = RegistryActor {
        state: registry,
        ctx: ctx.clone(),
        auth,
        configured_admin: cfg.admin_token.as_deref().map(|t| sha256(t.as_bytes())),
        mailbox_capacity: cfg.mailbox_capacity,
    }
    .start();
    let (tx, rx) = oneshot::channel();
    registry.send(EnsureAdmin { reply: tx }).await.context("registry actor stopped")?;
    if let Some(token) = rx.await.context("registry actor stopped")?.map_err(|r| anyhow::anyhow!("{r}"))? {
        eprintln!("\nzaiko: no admin token was configured, so one was generated. It is shown only now:\n\n    {token}\n\nKeep it safe; set ZAIKO_ADMIN_TOKEN to choose your own.\n");
    }
    let router = Router { shards, registry };
    if state.services.set(Services { router, journal: journal.clone(), clock, skus }).is_err() {
        anyhow::bail!("services were set twice");
    }
    tracing::info!("ready");
    Ok(Running { journal, indexer })
}

/// Starts the indexer thread on the opened index and returns the search handle.
fn start_indexer(
    cfg: &ServeConfig,
    opened: crate::index::Opened,
    shards: &[actix::Addr<Shard>],
    journal: &Journal,
) -> anyhow::Result<(Arc<SkuIndex>, IndexerHandle)> {
    let crate::index::Opened { index, fields, committed_lsn } = opened;
    let writer = index.writer_with_num_threads(1, WRITER_MEMORY_BYTES).context("cannot open the search index writer")?;
    let reader: tantivy::IndexReader =
        index.reader_builder().reload_policy(tantivy::ReloadPolicy::Manual).try_into().context("cannot open the search index reader")?;
    let (covered_tx, covered_rx) = tokio::sync::watch::channel(committed_lsn.unwrap_or(0));
    let wake = Arc::new(Wake::default());
    let indexer = Indexer {
        writer,
        reader: reader.clone(),
        fields,
        source: Box::new(ShardSource(shards.to_vec())),
        journal: journal.clone(),
        covered_tx,
        wake: wake.clone(),
        commit_interval: cfg.index_commit_interval,
        committed_lsn: committed_lsn.unwrap_or(0),
    }
    .spawn()
    .context("cannot start the indexer thread")?;
    Ok((Arc::new(SkuIndex::new(reader, fields, covered_rx, wake)), indexer))
}
