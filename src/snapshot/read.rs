//! Reading a snapshot file back into a state, and checking it against its digest.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use compact_str::CompactString;
use rusqlite::{Connection, OpenFlags, Row};

use super::digest::{self, Outcomes};
use super::{schema, SnapshotError, SnapshotInfo};
use crate::domain::alerts::{Band, Thresholds};
use crate::domain::brand::{BrandState, SkuState};
use crate::domain::catalog::Catalog;
use crate::domain::channel::{Channel, ChannelSync, Inbound, InboundLine};
use crate::domain::fulfilment::{Allocation, Reservation, ReservationStatus, Shipment, ShipmentSource, StatusEntry};
use crate::domain::idempotency::{kept_fingerprint, Fingerprint, IdempotencyStore, Status, FINGERPRINT_BYTES};
use crate::domain::import::{ImportJob, ImportSpec, RowError};
use crate::domain::registry::{Location, Registry, Role, TokenRecord};
use crate::domain::returns::{Return, ReturnLine};
use crate::domain::stock::{Level, Levels};
use crate::domain::transfer::{Transfer, TransferLine};
use crate::domain::webhook::Webhook;
use crate::domain::{BrandId, Id, Timestamp};
use crate::state::State;

/// A failure while decoding rows: the snapshot does not hold what it should.
#[derive(Debug)]
struct Bad(String);

impl From<String> for Bad {
    fn from(s: String) -> Self {
        Bad(s)
    }
}

impl From<rusqlite::types::FromSqlError> for Bad {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        Bad(e.to_string())
    }
}

impl From<rusqlite::Error> for Bad {
    fn from(e: rusqlite::Error) -> Self {
        Bad(e.to_string())
    }
}

fn open(path: &Path) -> Result<Connection, SnapshotError> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| SnapshotError::Sqlite { path: path.to_path_buf(), source: e })
}

fn meta(conn: &Connection) -> Result<HashMap<String, String>, String> {
    let mut st = conn.prepare("SELECT key, value FROM meta").map_err(|e| e.to_string())?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(|e| e.to_string())?;
    rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
}

fn meta_num<T: std::str::FromStr>(m: &HashMap<String, String>, key: &str) -> Result<T, String> {
    m.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| format!("meta.{key} is missing or not a number"))
}

/// Reads only the `meta` of a snapshot: what `snapshot list` shows.
pub(super) fn info(path: &Path) -> Result<SnapshotInfo, SnapshotError> {
    let corrupt = |detail: String| SnapshotError::Corrupt { path: path.to_path_buf(), detail };
    let conn = open(path)?;
    let m = meta(&conn).map_err(corrupt)?;
    let version: i64 = meta_num(&m, "format_version").map_err(corrupt)?;
    if version > schema::FORMAT_VERSION {
        return Err(SnapshotError::NewerFormat { path: path.to_path_buf(), found: version });
    }
    let lsn: u64 = meta_num(&m, "lsn").map_err(corrupt)?;
    let created_at = Timestamp(meta_num(&m, "created_at_ms").map_err(corrupt)?);
    let bytes = std::fs::metadata(path).map_err(|e| SnapshotError::Io { path: path.to_path_buf(), source: e })?.len();
    Ok(SnapshotInfo { id: format!("snap-{lsn:020}"), lsn, bytes, created_at, path: path.to_path_buf() })
}

pub(super) fn load(path: &Path) -> Result<(State, SnapshotInfo, LoadTimings), SnapshotError> {
    let started = std::time::Instant::now();
    let info = info(path)?;
    let corrupt = |detail: String| SnapshotError::Corrupt { path: path.to_path_buf(), detail };
    let conn = open(path)?;
    let m = meta(&conn).map_err(corrupt)?;
    let mut timings = LoadTimings::default();
    let (state, got) = read_state(path, &conn, &m, &mut timings).map_err(|b| corrupt(b.0))?;
    timings.wall = started.elapsed();
    let want = m.get("state_sha256").ok_or_else(|| corrupt("meta.state_sha256 is missing".into()))?;
    if &hex::encode(got) != want {
        return Err(corrupt("the state read back does not match its recorded SHA-256: the file is damaged".into()));
    }
    Ok((state, info, timings))
}

fn ts(s: String) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(&s).ok_or_else(|| format!("bad time {s:?}"))
}

fn ts_ref(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s).ok_or_else(|| format!("bad time {s:?}"))
}

fn id_ref(s: &str) -> Result<Id, String> {
    Id::parse(s).map_err(|e| format!("{s:?}: {e}"))
}

fn ots(s: Option<String>) -> Result<Option<Timestamp>, String> {
    s.map(ts).transpose()
}

fn id(s: String) -> Result<Id, String> {
    Id::parse(&s).map_err(|e| format!("{s:?}: {e}"))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_str(s).map_err(|e| format!("bad json {s:?}: {e}"))
}

fn from_text<T: serde::de::DeserializeOwned>(s: String) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.clone())).map_err(|e| format!("bad value {s:?}: {e}"))
}

fn hash32(v: Vec<u8>) -> Result<[u8; 32], String> {
    v.try_into().map_err(|_| "a hash is not 32 bytes".to_string())
}

/// Runs `sql` and converts each row with `f`.
fn rows<T>(conn: &Connection, sql: &str, f: impl FnMut(&Row<'_>) -> Result<T, Bad>) -> Result<Vec<T>, Bad> {
    rows_of(conn, sql, [], f)
}

/// Runs `sql` with `params` and converts each row with `f`.
fn rows_of<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    mut f: impl FnMut(&Row<'_>) -> Result<T, Bad>,
) -> Result<Vec<T>, Bad> {
    let mut st = conn.prepare_cached(sql)?;
    let mut q = st.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = q.next()? {
        out.push(f(row)?);
    }
    Ok(out)
}

/// Most threads a snapshot load uses; brands are loaded side by side, one per thread
/// at a time, each thread on its own read-only connection.
pub const LOAD_THREADS_MAX: usize = 8;

/// Where a snapshot load spent its time. The `*_cpu` figures add up the CPU time of
/// every thread that did that part (they overlap with each other in wall time).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct LoadTimings {
    /// Opening the file to the state and its digest checked.
    pub wall: std::time::Duration,
    /// Reading and decoding the idempotency outcomes (from format 5, with the hashing
    /// of their chunks for the digest).
    pub outcomes_cpu: std::time::Duration,
    /// Reading and decoding everything else (SKUs, stock, reservations, ...).
    pub tables_cpu: std::time::Duration,
    /// Computing the state's digest (on the thread that assembles the state, while
    /// the others still load).
    pub digest_cpu: std::time::Duration,
    pub threads: usize,
}

/// A brand's row of the `brands` table.
struct BrandRow {
    id: BrandId,
    name: String,
    created_at: Timestamp,
    last_lsn: u64,
}

/// Reads the whole state, brands side by side on up to [`LOAD_THREADS_MAX`] threads,
/// and computes its digest on this thread as the brands arrive, in the digest's order.
fn read_state(path: &Path, conn: &Connection, m: &HashMap<String, String>, timings: &mut LoadTimings) -> Result<(State, [u8; 32]), Bad> {
    let mut state = State { lsn: meta_num(m, "lsn")?, ..State::default() };
    let started = crate::procfs::thread_cpu();
    let format = Format::of(m)?;
    let (idem, registry_outcomes) = read_scope(conn, "", &format)?;
    read_registry(conn, &mut state, m, idem)?;
    let mut brands = brand_rows(conn)?;
    timings.tables_cpu += crate::procfs::thread_cpu().saturating_sub(started);
    // The digest walks brands in their order.
    brands.sort_by(|a, b| a.id.cmp(&b.id));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, LOAD_THREADS_MAX).min(brands.len().max(1));
    timings.threads = threads;
    let mut stream = digest::Stream::new(state.lsn, &state.registry, &registry_outcomes, format.digest_fragments());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<(BrandState, Outcomes, LoadTimings), Bad>)>();
    let (brands_ref, format) = (&brands, &format);
    std::thread::scope(|scope| -> Result<(), Bad> {
        for _ in 0..threads {
            let (tx, next, stop) = (tx.clone(), &next, &stop);
            scope.spawn(move || {
                let conn = match open(path) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send((0, Err(Bad(e.to_string()))));
                        return;
                    }
                };
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(row) = brands_ref.get(i) else { break };
                    let mut t = LoadTimings::default();
                    let loaded = read_brand(&conn, row, format, &mut t).map(|(b, outcomes)| (b, outcomes, t));
                    let failed = loaded.is_err();
                    if tx.send((i, loaded)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut arrived: BTreeMap<usize, (BrandState, Outcomes)> = BTreeMap::new();
        let mut want = 0;
        for (i, loaded) in rx {
            let (b, outcomes, t) = match loaded {
                Ok(found) => found,
                Err(e) => {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Err(e);
                }
            };
            timings.outcomes_cpu += t.outcomes_cpu;
            timings.tables_cpu += t.tables_cpu;
            arrived.insert(i, (b, outcomes));
            while let Some((b, outcomes)) = arrived.remove(&want) {
                let hashing = crate::procfs::thread_cpu();
                stream.brand(&b.id, &b, &outcomes);
                timings.digest_cpu += crate::procfs::thread_cpu().saturating_sub(hashing);
                state.brands.insert(b.id.clone(), b);
                want += 1;
            }
        }
        Ok(())
    })?;
    if state.brands.len() != brands.len() {
        return Err(Bad(format!("{} of {} brands were read", state.brands.len(), brands.len())));
    }
    Ok((state, stream.finish()))
}

/// A snapshot read one brand at a time, in the order of their ids (the builder's
/// source, `build.rs`): only the brand being read is in memory. Its digest is checked
/// as the brands go by; [`Source::finish`] says whether the whole file matched it.
pub(super) struct Source {
    pub info: SnapshotInfo,
    conn: Connection,
    format: Format,
    recorded_sha256: String,
    /// The brands not read yet, in reverse order of their ids (the next is last).
    brands: Vec<BrandRow>,
    check: digest::Stream,
}

impl Source {
    /// Opens a snapshot and reads its registry (returned; the source keeps only what
    /// checking its digest needs).
    pub(super) fn open(path: &Path) -> Result<(Source, Registry), SnapshotError> {
        let info = info(path)?;
        let corrupt = |detail: String| SnapshotError::Corrupt { path: path.to_path_buf(), detail };
        let conn = open(path)?;
        let m = meta(&conn).map_err(corrupt)?;
        let recorded_sha256 = m.get("state_sha256").cloned().ok_or_else(|| corrupt("meta.state_sha256 is missing".into()))?;
        let format = Format::of(&m).map_err(|b| corrupt(b.0))?;
        let read = || -> Result<_, Bad> {
            let mut state = State { lsn: meta_num(&m, "lsn")?, ..State::default() };
            let (idem, outcomes) = read_scope(&conn, "", &format)?;
            read_registry(&conn, &mut state, &m, idem)?;
            let mut brands = brand_rows(&conn)?;
            brands.sort_by(|a, b| b.id.cmp(&a.id));
            let check = digest::Stream::new(state.lsn, &state.registry, &outcomes, format.digest_fragments());
            Ok((state.registry, brands, check))
        };
        let (registry, brands, check) = read().map_err(|b| corrupt(b.0))?;
        Ok((Source { info, conn, format, recorded_sha256, brands, check }, registry))
    }

    /// The ids of the brands not read yet, in the order [`Source::next_brand`] gives them.
    pub(super) fn ids(&self) -> impl Iterator<Item = &BrandId> {
        self.brands.iter().rev().map(|b| &b.id)
    }

    /// The next brand's whole state, added to the digest check.
    pub(super) fn next_brand(&mut self) -> Result<Option<BrandState>, SnapshotError> {
        let Some(row) = self.brands.pop() else { return Ok(None) };
        let (b, outcomes) = read_brand(&self.conn, &row, &self.format, &mut LoadTimings::default())
            .map_err(|b| SnapshotError::Corrupt { path: self.info.path.clone(), detail: b.0 })?;
        self.check.brand(&b.id, &b, &outcomes);
        Ok(Some(b))
    }

    /// Whether every brand was read and the whole matched the recorded digest.
    pub(super) fn finish(self) -> Result<(), SnapshotError> {
        let corrupt = |detail: &str| SnapshotError::Corrupt { path: self.info.path.clone(), detail: detail.to_string() };
        if !self.brands.is_empty() {
            return Err(corrupt("the snapshot was not read to its end"));
        }
        if hex::encode(self.check.finish()) != self.recorded_sha256 {
            return Err(corrupt("the state read back does not match its recorded SHA-256: the file is damaged"));
        }
        Ok(())
    }
}

fn brand_rows(conn: &Connection) -> Result<Vec<BrandRow>, Bad> {
    rows(conn, "SELECT id, name, created_at, last_lsn FROM brands ORDER BY id", |r| {
        Ok(BrandRow {
            id: BrandId::parse(&r.get::<_, String>(0)?).map_err(|e| e.to_string())?,
            name: r.get::<_, String>(1)?,
            created_at: ts(r.get(2)?)?,
            last_lsn: r.get::<_, i64>(3)? as u64,
        })
    })
}

/// One brand's whole state, read with its own queries (every table's key starts with
/// the brand), and what the digest takes of its outcomes.
fn read_brand(conn: &Connection, row: &BrandRow, format: &Format, t: &mut LoadTimings) -> Result<(BrandState, Outcomes), Bad> {
    let version = format.version;
    let mut b = BrandState::new(row.id.clone(), row.name.clone(), row.created_at);
    b.last_lsn = row.last_lsn;
    let started = crate::procfs::thread_cpu();
    let outcomes;
    (b.idempotency, outcomes) = read_scope(conn, row.id.as_str(), format)?;
    let outcomes_done = crate::procfs::thread_cpu();
    t.outcomes_cpu += outcomes_done.saturating_sub(started);
    let brand = row.id.as_str();
    read_skus(conn, &mut b, brand, version)?;
    read_reservations(conn, &mut b, brand)?;
    read_shipments(conn, &mut b, brand)?;
    read_channels(conn, &mut b, brand)?;
    read_inbounds(conn, &mut b, brand)?;
    if version >= 2 {
        read_transfers(conn, &mut b, brand)?;
        read_returns(conn, &mut b, brand)?;
        read_alerts(conn, &mut b, brand)?;
    }
    read_integrations(conn, &mut b, brand)?;
    t.tables_cpu += crate::procfs::thread_cpu().saturating_sub(outcomes_done);
    Ok((b, outcomes))
}

/// What a snapshot's format says about reading it.
struct Format {
    version: i64,
    bodies: Bodies,
    /// `meta.body_fragments` (from format 4).
    fragments: Vec<String>,
}

/// How a snapshot holds its stored answers.
enum Bodies {
    /// As sent (formats 1 to 3): packed as they are read.
    Sent,
    /// As memory keeps them, packed with this build's fragments: copied.
    Kept,
    /// Packed with other fragments than this build's (`Format::fragments`):
    /// unpacked with those, and packed again.
    PackedWith,
}

impl Format {
    fn of(m: &HashMap<String, String>) -> Result<Format, Bad> {
        let version: i64 = meta_num(m, "format_version")?;
        if version < 4 {
            return Ok(Format { version, bodies: Bodies::Sent, fragments: Vec::new() });
        }
        let named = m.get("body_fragments").ok_or_else(|| Bad("meta.body_fragments is missing".into()))?;
        let fragments: Vec<String> = serde_json::from_str(named).map_err(|e| Bad(format!("meta.body_fragments: {e}")))?;
        if fragments.len() > 255 {
            return Err(Bad(format!("meta.body_fragments names {} fragments; a byte codes at most 255", fragments.len())));
        }
        if fragments.iter().any(|f| f.len() > FRAGMENT_MAX) {
            return Err(Bad(format!("meta.body_fragments names a fragment longer than {FRAGMENT_MAX} bytes")));
        }
        let bodies =
            if fragments.iter().map(String::as_str).eq(crate::domain::idempotency::FRAGMENTS) { Bodies::Kept } else { Bodies::PackedWith };
        Ok(Format { version, bodies, fragments })
    }

    /// The fragments the digest takes (from format 5: before, it took the answers as
    /// sent).
    fn digest_fragments(&self) -> Option<&[String]> {
        (self.version >= 5).then_some(&self.fragments[..])
    }

    /// The fragments answers are unpacked with before memory packs them again (none
    /// for answers stored as sent); `None`: they are copied as they are.
    fn unpack_with(&self) -> Option<&[String]> {
        match self.bodies {
            Bodies::Sent => Some(&[]),
            Bodies::Kept => None,
            Bodies::PackedWith => Some(&self.fragments),
        }
    }
}

/// The longest fragment `meta.body_fragments` may name (today's are under 40 bytes).
const FRAGMENT_MAX: usize = 1024;

/// The idempotency outcomes of one scope (a brand, or `""` for the registry), and what
/// the digest takes of them: from format 5 their chunks, before a row each.
fn read_scope(conn: &Connection, scope: &str, format: &Format) -> Result<(IdempotencyStore, Outcomes), Bad> {
    if format.version < 5 {
        return read_scope_rows(conn, scope, format);
    }
    let mut answers = super::outcomes::Answers::new(format.unpack_with());
    let mut store = IdempotencyStore::default();
    let count: i64 = conn
        .prepare_cached("SELECT coalesce(sum(outcomes), 0) FROM idempotency_chunks WHERE scope = ?1")?
        .query_row([scope], |r| r.get(0))?;
    store.reserve(count.clamp(0, i64::MAX) as usize);
    // A chunk's length is checked before its bytes are read: a hostile file's blob of a
    // gigabyte is refused, not loaded.
    let mut st = conn.prepare_cached(
        "SELECT outcomes, length(data), CASE WHEN length(data) <= ?2 THEN data END FROM idempotency_chunks WHERE scope = ?1 ORDER BY seq",
    )?;
    let mut q = st.query(rusqlite::params![scope, CHUNK_MAX as i64])?;
    let mut sha = <sha2::Sha256 as sha2::Digest>::new();
    while let Some(r) = q.next()? {
        let (said, len) = (r.get::<_, i64>(0)?, r.get::<_, i64>(1)?);
        let Some(data) = r.get_ref(2)?.as_blob_or_null()? else {
            return Err(Bad(format!("an outcome chunk of {len} bytes, more than {CHUNK_MAX}")));
        };
        sha2::Digest::update(&mut sha, data);
        let held = super::outcomes::decode(data, &mut store, &mut answers)?;
        if held as i64 != said {
            return Err(Bad(format!("an outcome chunk says it holds {said} outcomes and holds {held}")));
        }
    }
    Ok((store, Outcomes::Chunks(sha2::Digest::finalize(sha).into())))
}

/// The longest chunk of outcomes a snapshot may hold (the writer cuts them at 256 KiB,
/// a chunk of one long answer aside).
const CHUNK_MAX: usize = 64 << 20;

/// [`read_scope`] for formats 1 to 4: a row each, streamed into the store (millions of
/// rows: no list of them all, and no owned copy of a key or an answer). A snapshot from
/// format 3 holds the 16-byte fingerprint memory keeps; the formats before held the
/// full SHA-256 of 32 bytes, whose last 16 bytes the digest takes. From format 4 it
/// holds each answer as memory keeps it.
fn read_scope_rows(conn: &Connection, scope: &str, format: &Format) -> Result<(IdempotencyStore, Outcomes), Bad> {
    let version = format.version;
    let packed = if matches!(format.bodies, Bodies::Sent) { "0" } else { "packed" };
    let mut st = conn.prepare_cached(&format!(
        "SELECT key, fingerprint, status, body, at_ms, lsn, {packed} FROM idempotency WHERE scope = ?1 ORDER BY seq"
    ))?;
    let mut q = st.query([scope])?;
    let mut store = IdempotencyStore::default();
    // The rows are numbered from 0 in each scope: the highest number is about how
    // many there are (only a hint; the store bounds it).
    let last_seq: Option<i64> =
        conn.prepare_cached("SELECT max(seq) FROM idempotency WHERE scope = ?1")?.query_row([scope], |r| r.get(0))?;
    store.reserve(last_seq.map_or(0, |n| n.clamp(0, i64::MAX - 1) as usize + 1));
    let mut tails = (version < 3).then(Vec::new);
    let mut answers = super::outcomes::Answers::new(format.unpack_with());
    while let Some(r) = q.next()? {
        let status = match r.get_ref(2)?.as_str()? {
            "ok" => Status::Done,
            "created" => Status::Created,
            "accepted" => Status::Accepted,
            "no_content" => Status::Removed,
            other => return Err(Bad(format!("bad idempotency status {other:?}"))),
        };
        let key = r.get_ref(0)?.as_str()?;
        if !crate::domain::idempotency::valid_key(key) {
            return Err(Bad(format!("bad idempotency key {key:?}")));
        }
        let hash = r.get_ref(1)?.as_blob()?;
        let fingerprint: Fingerprint = match &mut tails {
            None => hash.try_into().map_err(|_| Bad(format!("a fingerprint is not {FINGERPRINT_BYTES} bytes")))?,
            Some(tails) => {
                let full: &[u8; 32] = hash.try_into().map_err(|_| Bad("a hash is not 32 bytes".to_string()))?;
                tails.push(full[FINGERPRINT_BYTES..].try_into().expect("16 bytes"));
                kept_fingerprint(full)
            }
        };
        let (body, at, lsn) = (r.get_ref(3)?.as_blob()?, Timestamp(r.get(4)?), r.get::<_, i64>(5)? as u64);
        answers.load(&mut store, key, &fingerprint, status, body, r.get(6)?, at, lsn)?;
    }
    Ok((store, Outcomes::Walk(tails)))
}

fn read_registry(conn: &Connection, state: &mut State, m: &HashMap<String, String>, idem: IdempotencyStore) -> Result<(), Bad> {
    let r = &mut state.registry;
    r.last_lsn = meta_num(m, "registry_last_lsn")?;
    r.idempotency = idem;
    for l in rows(conn, "SELECT id, name, kind, created_at, updated_at FROM locations ORDER BY id", |row| {
        Ok(Location {
            id: id(row.get(0)?)?,
            name: row.get(1)?,
            kind: from_text(row.get(2)?)?,
            created_at: ts(row.get(3)?)?,
            updated_at: ts(row.get(4)?)?,
        })
    })? {
        r.locations.insert(l.id.clone(), l);
    }
    for t in rows(conn, "SELECT id, role, brand, secret_sha256, created_at, revoked_at FROM tokens ORDER BY id", |row| {
        let role = match (row.get::<_, String>(1)?.as_str(), row.get::<_, Option<String>>(2)?) {
            ("admin", None) => Role::Admin,
            ("viewer", None) => Role::Viewer,
            ("brand", Some(b)) => Role::Brand(BrandId::parse(&b).map_err(|e| e.to_string())?),
            (role, brand) => return Err(Bad(format!("bad token role {role:?} / {brand:?}"))),
        };
        Ok(TokenRecord {
            id: id(row.get(0)?)?,
            role,
            secret_sha256: hash32(row.get(3)?)?,
            created_at: ts(row.get(4)?)?,
            revoked_at: ots(row.get(5)?)?,
        })
    })? {
        r.tokens.insert(t.id.clone(), t);
    }
    r.admin_sha256 = rows(conn, "SELECT secret_sha256 FROM admin_token", |row| Ok(hash32(row.get(0)?)?))?.into_iter().next();
    Ok(())
}

fn read_skus(conn: &Connection, b: &mut BrandState, brand: &str, version: i64) -> Result<(), Bad> {
    let mut skus = rows_of(
        conn,
        "SELECT sku, product_id, name, color, size, category, price, tags, attributes, version, stock_version, created_at, updated_at
         FROM skus WHERE brand = ?1 ORDER BY sku",
        [brand],
        |r| {
            // Straight into the catalog's own string type (short ones need no allocation).
            let attrs: BTreeMap<CompactString, CompactString> = from_json(r.get_ref(8)?.as_str()?)?;
            let tags: Vec<CompactString> = from_json(r.get_ref(7)?.as_str()?)?;
            let catalog = Catalog {
                product_id: r.get_ref(1)?.as_str_or_null()?.map(Into::into),
                name: r.get_ref(2)?.as_str()?.into(),
                color: r.get_ref(3)?.as_str_or_null()?.map(Into::into),
                size: r.get_ref(4)?.as_str_or_null()?.map(Into::into),
                category: r.get_ref(5)?.as_str_or_null()?.map(Into::into),
                price: r.get(6)?,
                tags: tags.into_boxed_slice(),
                attributes: attrs.into_iter().collect(),
            };
            let s = SkuState {
                catalog,
                version: r.get::<_, i64>(9)? as u64,
                stock_version: r.get::<_, i64>(10)? as u64,
                levels: Levels::default(),
                created_at: ts_ref(r.get_ref(11)?.as_str()?)?,
                updated_at: ts_ref(r.get_ref(12)?.as_str()?)?,
            };
            Ok((id_ref(r.get_ref(0)?.as_str()?)?, Box::new(s)))
        },
    )?;
    // Version 1 had no unsellable or in-transit units.
    let extra = if version >= 2 { "unsellable, in_transit" } else { "0, 0" };
    let sql = format!(
        "SELECT sku, location, on_hand, reserved, safety_stock, incoming, {extra} FROM stock WHERE brand = ?1 ORDER BY sku, location"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let mut q = st.query([brand])?;
    // Both come ordered by SKU: each SKU's run of stock rows becomes its levels.
    let (mut at, mut run_of, mut run) = (0, None::<usize>, Vec::new());
    while let Some(r) = q.next()? {
        let sku = r.get_ref(0)?.as_str()?;
        if run_of.is_none_or(|i| skus[i].0.as_str() != sku) {
            if let Some(i) = run_of {
                skus[i].1.levels = Levels(std::mem::take(&mut run).into_boxed_slice());
            }
            while at < skus.len() && skus[at].0.as_str() != sku {
                at += 1;
            }
            if at == skus.len() {
                return Err(Bad(format!("stock row for unknown sku {sku}")));
            }
            run_of = Some(at);
        }
        let l = Level {
            on_hand: r.get(2)?,
            reserved: r.get(3)?,
            safety_stock: r.get(4)?,
            incoming: r.get(5)?,
            unsellable: r.get(6)?,
            in_transit: r.get(7)?,
        };
        run.push((id_ref(r.get_ref(1)?.as_str()?)?, l));
    }
    if let Some(i) = run_of {
        skus[i].1.levels = Levels(run.into_boxed_slice());
    }
    b.skus = skus.into_iter().collect();
    Ok(())
}

fn allocations(conn: &Connection, table: &str, key: &str, brand: &str) -> Result<HashMap<String, Vec<Allocation>>, Bad> {
    let sql = format!("SELECT {key}, sku, location, quantity FROM {table} WHERE brand = ?1 ORDER BY {key}, line");
    let all = rows_of(conn, &sql, [brand], |r| {
        Ok((r.get::<_, String>(0)?, Allocation { sku: id(r.get(1)?)?, location: id(r.get(2)?)?, quantity: r.get(3)? }))
    })?;
    let mut out: HashMap<String, Vec<Allocation>> = HashMap::new();
    for (k, a) in all {
        out.entry(k).or_default().push(a);
    }
    Ok(out)
}

fn read_reservations(conn: &Connection, b: &mut BrandState, brand: &str) -> Result<(), Bad> {
    let mut lines = allocations(conn, "reservation_lines", "reservation", brand)?;
    let all = rows_of(
        conn,
        "SELECT brand, id, channel, status, ttl_seconds, requested, created_at, expires_at, ended_at, shipment_id FROM reservations WHERE brand = ?1 ORDER BY id",
        [brand],
        |r| {
            Ok(Reservation {
                id: id(r.get(1)?)?,
                channel: id(r.get(2)?)?,
                status: from_text(r.get(3)?)?,
                ttl_seconds: r.get(4)?,
                requested: from_json(&r.get::<_, String>(5)?)?,
                lines: Vec::new(),
                created_at: ts(r.get(6)?)?,
                expires_at: ts(r.get(7)?)?,
                ended_at: ots(r.get(8)?)?,
                shipment_id: r.get::<_, Option<String>>(9)?.map(id).transpose()?,
            })
        },
    )?;
    for mut res in all {
        res.lines = lines.remove(res.id.as_str()).unwrap_or_default();
        if res.status == ReservationStatus::Active {
            b.expiries.insert((res.expires_at, res.id.clone()));
        }
        b.reservations.insert(res.id.clone(), res);
    }
    Ok(())
}

fn read_shipments(conn: &Connection, b: &mut BrandState, brand: &str) -> Result<(), Bad> {
    let mut lines = allocations(conn, "shipment_lines", "shipment", brand)?;
    let history =
        rows_of(conn, "SELECT shipment, status, at FROM shipment_history WHERE brand = ?1 ORDER BY shipment, seq", [brand], |r| {
            Ok((r.get::<_, String>(0)?, StatusEntry { status: from_text(r.get(1)?)?, at: ts(r.get(2)?)? }))
        })?;
    let mut histories: HashMap<String, Vec<StatusEntry>> = HashMap::new();
    for (k, h) in history {
        histories.entry(k).or_default().push(h);
    }
    let all = rows_of(
        conn,
        "SELECT brand, id, order_ref, channel, status, reservation_id, requested_lines, ship_to, tracking_number, carrier, created_at, updated_at
         FROM shipments WHERE brand = ?1 ORDER BY id",
        [brand],
        |r| {
            let source = match (r.get::<_, Option<String>>(5)?, r.get::<_, Option<String>>(6)?) {
                (Some(res), None) => ShipmentSource::Reservation(id(res)?),
                (None, Some(l)) => ShipmentSource::Lines(from_json(&l)?),
                _ => return Err(Bad("a shipment needs exactly one of reservation_id and requested_lines".to_string())),
            };
            Ok(Shipment {
                id: id(r.get(1)?)?,
                order_ref: r.get::<_, Option<String>>(2)?.map(Into::into),
                channel: r.get::<_, Option<String>>(3)?.map(id).transpose()?,
                source,
                lines: Vec::new(),
                ship_to: from_json(&r.get::<_, String>(7)?)?,
                status: from_text(r.get(4)?)?,
                history: Vec::new(),
                tracking_number: r.get::<_, Option<String>>(8)?.map(Into::into),
                carrier: r.get::<_, Option<String>>(9)?.map(Into::into),
                created_at: ts(r.get(10)?)?,
                updated_at: ts(r.get(11)?)?,
            })
        },
    )?;
    for mut s in all {
        s.lines = lines.remove(s.id.as_str()).unwrap_or_default();
        s.history = histories.remove(s.id.as_str()).unwrap_or_default();
        b.shipments.insert(s.id.clone(), s);
    }
    Ok(())
}

fn read_channels(conn: &Connection, b: &mut BrandState, brand: &str) -> Result<(), Bad> {
    let channels = rows_of(
        conn,
        "SELECT brand, id, name, locations, buffer, created_at, updated_at FROM channels WHERE brand = ?1 ORDER BY id",
        [brand],
        |r| {
            Ok(Channel {
                id: id(r.get(1)?)?,
                name: r.get(2)?,
                locations: r.get::<_, Option<String>>(3)?.map(|l| from_json(&l)).transpose()?,
                buffer: r.get(4)?,
                created_at: ts(r.get(5)?)?,
                updated_at: ts(r.get(6)?)?,
            })
        },
    )?;
    for c in channels {
        b.channels.insert(c.id.clone(), c);
    }
    let syncs = rows_of(
        conn,
        "SELECT brand, channel, before, all_skus, after FROM channel_syncs WHERE brand = ?1 ORDER BY channel",
        [brand],
        |r| {
            let sync = ChannelSync {
                before: r.get::<_, Option<String>>(2)?.map(|b| from_json(&b)).transpose()?,
                all: r.get(3)?,
                after: r.get::<_, Option<String>>(4)?.map(id).transpose()?,
            };
            Ok((id(r.get(1)?)?, sync))
        },
    )?;
    for (channel, sync) in syncs {
        b.channel_syncs.insert(channel, sync);
    }
    Ok(())
}

fn read_transfers(conn: &Connection, b: &mut BrandState, brand: &str) -> Result<(), Bad> {
    let lines = rows_of(
        conn,
        "SELECT transfer, sku, quantity, received, written_off FROM transfer_lines WHERE brand = ?1 ORDER BY transfer, line",
        [brand],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                TransferLine { sku: id(r.get(1)?)?, quantity: r.get(2)?, received: r.get(3)?, written_off: r.get(4)? },
            ))
        },
    )?;
    let mut by_transfer: HashMap<String, Vec<TransferLine>> = HashMap::new();
    for (k, l) in lines {
        by_transfer.entry(k).or_default().push(l);
    }
    let transfers = rows_of(
        conn,
        "SELECT brand, id, origin, destination, status, created_at, updated_at FROM transfers WHERE brand = ?1 ORDER BY id",
        [brand],
        |r| {
            Ok(Transfer {
                id: id(r.get(1)?)?,
                origin: id(r.get(2)?)?,
                destination: id(r.get(3)?)?,
                status: from_text(r.get(4)?)?,
                lines: Vec::new(),
                created_at: ts(r.get(5)?)?,
                updated_at: ts(r.get(6)?)?,
            })
        },
    )?;
    for mut t in transfers {
        t.lines = by_transfer.remove(t.id.as_str()).unwrap_or_default();
        b.transfers.insert(t.id.clone(), t);
    }
    Ok(())
}

fn read_returns(conn: &Connection, b: &mut BrandState, brand: &str) -> Result<(), Bad> {
    let lines = rows_of(
        conn,
        "SELECT ret, sku, quantity, restocked, unsellable, missing FROM return_lines WHERE brand = ?1 ORDER BY ret, line",
        [brand],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                ReturnLine { sku: id(r.get(1)?)?, quantity: r.get(2)?, restocked: r.get(3)?, unsellable: r.get(4)?, missing: r.get(5)? },
            ))
        },
    )?;
    let mut by_return: HashMap<String, Vec<ReturnLine>> = HashMap::new();
    for (k, l) in lines {
        by_return.entry(k).or_default().push(l);
    }
    let returns = rows_of(
        conn,
        "SELECT brand, id, shipment_id, reason, status, created_at, updated_at FROM returns WHERE brand = ?1 ORDER BY id",
        [brand],
        |r| {
            Ok(Return {
                id: id(r.get(1)?)?,
                shipment_id: id(r.get(2)?)?,
                reason: r.get::<_, String>(3)?.into(),
                status: from_text(r.get(4)?)?,
                lines: Vec::new(),
                created_at: ts(r.get(5)?)?,
                updated_at: ts(r.get(6)?)?,
            })
        },
    )?;
    for mut ret in returns {
        ret.lines = by_return.remove(ret.id.as_str()).unwrap_or_default();
        b.returns.insert(ret.id.clone(), ret);
    }
    Ok(())
}

fn read_alerts(conn: &Connection, b: &mut BrandState, brand: &str) -> Result<(), Bad> {
    let thresholds =
        rows_of(conn, "SELECT channel, default_threshold, skus FROM low_stock WHERE brand = ?1 ORDER BY channel", [brand], |r| {
            let t = Thresholds { default: r.get(1)?, skus: from_json(&r.get::<_, String>(2)?)? };
            Ok((id(r.get(0)?)?, t))
        })?;
    for (channel, t) in thresholds {
        b.thresholds.insert(channel, t);
    }
    let bands = rows_of(conn, "SELECT sku, channel, band FROM stock_bands WHERE brand = ?1 ORDER BY sku, channel", [brand], |r| {
        Ok((id(r.get(0)?)?, id(r.get(1)?)?, from_text::<Band>(r.get(2)?)?))
    })?;
    for (sku, channel, band) in bands {
        b.bands.insert((sku, channel), band);
    }
    Ok(())
}

fn read_inbounds(conn: &Connection, b: &mut BrandState, brand: &str) -> Result<(), Bad> {
    let lines = rows_of(
        conn,
        "SELECT inbound, sku, expected, received FROM inbound_lines WHERE brand = ?1 ORDER BY inbound, line",
        [brand],
        |r| Ok((r.get::<_, String>(0)?, InboundLine { sku: id(r.get(1)?)?, expected: r.get(2)?, received: r.get(3)? })),
    )?;
    let mut by_inbound: HashMap<String, Vec<InboundLine>> = HashMap::new();
    for (k, l) in lines {
        by_inbound.entry(k).or_default().push(l);
    }
    let inbounds = rows_of(
        conn,
        "SELECT brand, id, location, expected_at, status, created_at, updated_at FROM inbounds WHERE brand = ?1 ORDER BY id",
        [brand],
        |r| {
            Ok(Inbound {
                id: id(r.get(1)?)?,
                location: id(r.get(2)?)?,
                expected_at: ots(r.get(3)?)?,
                status: from_text(r.get(4)?)?,
                lines: Vec::new(),
                created_at: ts(r.get(5)?)?,
                updated_at: ts(r.get(6)?)?,
            })
        },
    )?;
    for mut i in inbounds {
        i.lines = by_inbound.remove(i.id.as_str()).unwrap_or_default();
        b.inbounds.insert(i.id.clone(), i);
    }
    Ok(())
}

fn read_integrations(conn: &Connection, b: &mut BrandState, brand: &str) -> Result<(), Bad> {
    let hooks =
        rows_of(conn, "SELECT brand, id, url, events, secret, created_at FROM webhooks WHERE brand = ?1 ORDER BY id", [brand], |r| {
            Ok(Webhook {
                id: id(r.get(1)?)?,
                url: r.get(2)?,
                events: from_json(&r.get::<_, String>(3)?)?,
                secret: r.get(4)?,
                created_at: ts(r.get(5)?)?,
            })
        })?;
    for w in hooks {
        b.webhooks.insert(w.id.clone(), w);
    }
    let errors = rows_of(conn, "SELECT job, row, code, detail FROM import_errors WHERE brand = ?1 ORDER BY job, seq", [brand], |r| {
        let e = RowError { row: r.get::<_, i64>(1)? as u64, code: from_text(r.get(2)?)?, detail: r.get(3)? };
        Ok((r.get::<_, String>(0)?, e))
    })?;
    let mut by_job: HashMap<String, Vec<RowError>> = HashMap::new();
    for (k, e) in errors {
        by_job.entry(k).or_default().push(e);
    }
    let jobs = rows_of(
        conn,
        "SELECT brand, id, kind, format, file, bytes, sha256, created_at, status, rows_total, rows_ok, rows_failed,
           next_chunk, next_offset, next_row, started_at, finished_at, detail, finished_seq
         FROM import_jobs WHERE brand = ?1 ORDER BY finished_seq, id",
        [brand],
        |r| {
            let spec = ImportSpec {
                id: id(r.get(1)?)?,
                kind: from_text(r.get(2)?)?,
                format: from_text(r.get(3)?)?,
                file: r.get(4)?,
                bytes: r.get::<_, i64>(5)? as u64,
                sha256: hash32(r.get(6)?)?,
                created_at: ts(r.get(7)?)?,
            };
            let job = ImportJob {
                spec,
                status: from_text(r.get(8)?)?,
                rows_total: r.get::<_, Option<i64>>(9)?.map(|n| n as u64),
                rows_ok: r.get::<_, i64>(10)? as u64,
                rows_failed: r.get::<_, i64>(11)? as u64,
                errors: Vec::new(),
                next_chunk: r.get::<_, i64>(12)? as u64,
                next_offset: r.get::<_, i64>(13)? as u64,
                next_row: r.get::<_, i64>(14)? as u64,
                started_at: ots(r.get(15)?)?,
                finished_at: ots(r.get(16)?)?,
                detail: r.get(17)?,
            };
            Ok((job, r.get::<_, Option<i64>>(18)?.is_some()))
        },
    )?;
    // Ordered by finished_seq (NULLs first), so finished jobs arrive oldest first.
    for (mut job, finished) in jobs {
        job.errors = by_job.remove(job.spec.id.as_str()).unwrap_or_default();
        if finished {
            b.imports.finished.push_back(job.spec.id.clone());
        }
        b.imports.jobs.insert(job.spec.id.clone(), job);
    }
    Ok(())
}
