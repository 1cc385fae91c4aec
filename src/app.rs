//! Wiring: recovery, actors, HTTP server, shutdown.
//!
//! [`Application::build`] binds the listener first (so `/healthz` answers and
//! `/readyz` says 503 during recovery), replays the journal on a plain thread, then
//! starts the actors and marks the server ready. [`Application::run`] serves until
//! SIGTERM/Ctrl-C, lets in-flight requests finish, and flushes the journal.

use std::collections::{BTreeMap, HashMap};
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
use crate::journal::{self, Journal, OpenOptions, OpenReport};

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
}

/// Holds an exclusive lock on the data dir for the life of the process, so two
/// servers can never write the same journal.
struct DirLock(#[allow(dead_code)] File);

fn lock_data_dir(root: &Path) -> anyhow::Result<DirLock> {
    std::fs::create_dir_all(root).with_context(|| format!("cannot create data dir {}", root.display()))?;
    let path = root.join("LOCK");
    let f =
        File::options().create(true).truncate(false).write(true).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| anyhow::anyhow!("data dir {} is in use by another zaiko process", root.display()))?;
    Ok(DirLock(f))
}

/// The whole state rebuilt from the journal.
pub struct Recovered {
    pub registry: Registry,
    pub brands: HashMap<BrandId, BrandState>,
    pub journal: Journal,
    pub report: OpenReport,
}

/// Replays the journal into state. Blocking; run it off the async executors.
pub fn recover(cfg: &ServeConfig) -> anyhow::Result<Recovered> {
    let dir = DataDir::new(&cfg.data_dir);
    let mut registry = Registry::default();
    let mut brands = HashMap::new();
    let opts = OpenOptions { config: cfg.journal.clone(), replay_after: 0 };
    let (journal, report) = journal::open(&dir.wal(), opts, |lsn, payload| match event::decode(payload)? {
        WalRecord::Registry(r) => registry.apply(lsn, &r),
        WalRecord::Brand(b) => apply_brand_record(&mut brands, lsn, &b),
    })?;
    Ok(Recovered { registry, brands, journal, report })
}

pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
    ready: oneshot::Receiver<anyhow::Result<Journal>>,
    _lock: DirLock,
}

impl Application {
    /// Binds the listener and starts recovery in the background. Must run inside an
    /// actix `System`.
    pub async fn build(cfg: ServeConfig) -> anyhow::Result<Application> {
        let mut cfg = cfg;
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
        let state = web::Data::new(AppState { services: Default::default(), auth: auth.clone(), limits: cfg.limits.clone(), loading_demo });
        let app_state = state.clone();
        let server = HttpServer::new(move || App::new().app_data(app_state.clone()).configure(crate::http::configure))
            .workers(cfg.http_workers)
            .backlog(4096)
            .shutdown_timeout(30)
            .bind(&cfg.listen)
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let port = server.addrs().first().map(|a| a.port()).context("no listen address")?;
        let server = server.run();
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
            let mut result = start_services(cfg, state.clone(), auth).await;
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
        Ok(Application { server, port, ready, _lock: lock })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until a shutdown signal, then flushes the journal.
    pub async fn run(self) -> anyhow::Result<()> {
        self.server.await.context("http server failed")?;
        let journal = match self.ready.await {
            Ok(Ok(j)) => j,
            Ok(Err(e)) => return Err(e),
            Err(_) => anyhow::bail!("stopped before recovery finished"),
        };
        journal.shutdown();
        tracing::info!(durable_lsn = journal.durable_lsn(), "journal flushed; bye");
        Ok(())
    }
}

/// Writes a line to stdout for the person who started the server; a closed stdout
/// (nobody reading) is not an error.
pub fn announce(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
    let _ = std::io::stdout().flush();
}

/// Loads the demo (if this data dir does not have it yet), makes a viewer token for
/// the UI, and tells the user where to go.
async fn start_demo(plan: crate::demo::Plan, data_dir: &Path, base: &str, admin: &str, admin_generated: bool) -> anyhow::Result<()> {
    if let crate::demo::Plan::Load = plan {
        let started = std::time::Instant::now();
        let n = crate::demo::load(data_dir, base, admin).await?;
        tracing::info!(requests = n, elapsed_ms = started.elapsed().as_millis() as u64, "demo data loaded");
    }
    let client = awc::Client::default();
    let mut resp = client
        .post(format!("{base}/v1/tokens"))
        .insert_header(("Authorization", format!("Bearer {admin}")))
        .send_json(&serde_json::json!({"role": "viewer"}))
        .await
        .map_err(|e| anyhow::anyhow!("cannot create a viewer token: {e}"))?;
    let body: serde_json::Value = resp.json().await.map_err(|e| anyhow::anyhow!("cannot create a viewer token: {e}"))?;
    let viewer = body["token"].as_str().context("no token in the answer")?;
    announce(&format!("zaiko demo ready: open {base}/ui/"));
    announce(&format!("  viewer token (paste it into the UI): {viewer}"));
    if admin_generated {
        announce(&format!("  admin token (for the API; shown only now): {admin}"));
    }
    Ok(())
}

async fn start_services(cfg: ServeConfig, state: web::Data<AppState>, auth: Arc<ArcSwap<AuthTable>>) -> anyhow::Result<Journal> {
    let started = std::time::Instant::now();
    let recover_cfg = cfg.clone();
    let recovered = tokio::task::spawn_blocking(move || recover(&recover_cfg)).await.context("recovery thread panicked")??;
    let Recovered { registry, brands, journal, report } = recovered;
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
    let pending_imports = crate::integration::pending_imports(&brands);
    let mut parts: Vec<HashMap<BrandId, BrandState>> = (0..cfg.shards).map(|_| HashMap::new()).collect();
    for (id, b) in brands {
        parts[shard_index(&id, cfg.shards)].insert(id, b);
    }
    let shards = parts
        .into_iter()
        .enumerate()
        .map(|(index, brands)| {
            let ctx = ctx.clone();
            let capacity = cfg.mailbox_capacity;
            let arbiter = Arbiter::new();
            let addr = Shard::start_in_arbiter(&arbiter.handle(), move |_| Shard::new(index, brands, ctx, capacity));
            // The arbiter thread lives as long as the System; dropping the handle does not stop it.
            std::mem::forget(arbiter);
            addr
        })
        .collect();
    let registry = RegistryActor {
        state: registry,
        ctx: ctx.clone(),
        auth,
        configured_admin: cfg.admin_token.as_deref().map(|t| sha256(t.as_bytes())),
        mailbox_capacity: cfg.mailbox_capacity,
    }
    .start();
    let router = Router { shards, registry: registry.clone() };
    let integrations =
        crate::integration::start(&cfg.data_dir, &cfg.integration, &journal, clock.clone(), router.clone(), pending_imports)?;
    let (tx, rx) = oneshot::channel();
    registry.send(EnsureAdmin { reply: tx }).await.context("registry actor stopped")?;
    if let Some(token) = rx.await.context("registry actor stopped")?.map_err(|r| anyhow::anyhow!("{r}"))? {
        eprintln!("\nzaiko: no admin token was configured, so one was generated. It is shown only now:\n\n    {token}\n\nKeep it safe; set ZAIKO_ADMIN_TOKEN to choose your own.\n");
    }
    // Reservations that expired while the server was down are expired before anyone
    // can see them as active.
    let swept = router.sweep_all().await.context("a shard stopped during the start-up sweep")?;
    journal.wait_durable(swept).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if state.services.set(Services { router, journal: journal.clone(), clock, integrations }).is_err() {
        anyhow::bail!("services were set twice");
    }
    tracing::info!("ready");
    Ok(journal)
}
