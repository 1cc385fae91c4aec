//! Writing a state into a new snapshot file.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use super::{digest, schema, SnapshotError, SnapshotInfo};
use crate::domain::brand::BrandState;
use crate::domain::fulfilment::{status_name, ShipmentSource};
use crate::domain::idempotency::{IdempotencyStore, FRAGMENTS};
use crate::domain::registry::Registry;
use crate::domain::registry::Role;
use crate::domain::BrandId;
use crate::domain::Timestamp;
use crate::journal::Lsn;
use crate::state::State;

pub(super) fn t(ts: Timestamp) -> String {
    ts.to_rfc3339()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("snapshot values serialise")
}

pub(super) fn enum_text<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v).expect("enum serialises") {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The temporary file a snapshot is written to before it is renamed into place.
pub(super) fn tmp_path(path: &Path) -> std::path::PathBuf {
    path.with_extension("sqlite.tmp")
}

/// Writes a whole state (one brand after another through a [`Writer`]).
pub(super) fn write(path: &Path, state: &State, now: Timestamp) -> Result<SnapshotInfo, SnapshotError> {
    let mut w = Writer::create(path, state.lsn, &state.registry)?;
    let mut ids: Vec<_> = state.brands.keys().collect();
    ids.sort();
    for id in ids {
        w.brand(&state.brands[id])?;
    }
    w.finish(now)
}

/// A snapshot being written to its temporary file: the registry, then each brand in
/// the order of their ids (any brand may be dropped once written), then `meta` with
/// the digest computed over the same walk as it went ([`Writer::finish`]). Whatever
/// holds the state, the same state gives the same rows in the same order. Until
/// `finish` has renamed the file into place, dropping the writer removes it.
pub(super) struct Writer {
    conn: Connection,
    tmp: TmpFile,
    path: PathBuf,
    lsn: Lsn,
    digest: digest::Stream,
    brands: usize,
    skus: usize,
    last: Option<BrandId>,
}

impl Writer {
    pub(super) fn create(path: &Path, lsn: Lsn, registry: &Registry) -> Result<Writer, SnapshotError> {
        let tmp = TmpFile(tmp_path(path));
        let _ = std::fs::remove_file(&tmp.0);
        let sql = |e| SnapshotError::Sqlite { path: tmp.0.clone(), source: e };
        let conn = Connection::open(&tmp.0).map_err(sql)?;
        // Durability comes from our own fsync + rename in `finish`; SQLite's journal is
        // not needed for a file nobody reads until it is complete.
        conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA page_size = 8192;").map_err(sql)?;
        conn.execute_batch(schema::DDL).map_err(sql)?;
        conn.execute_batch("BEGIN").map_err(sql)?;
        let outcomes = write_registry(&conn, registry).map_err(sql)?;
        let digest = digest::Stream::new(lsn, registry, &digest::Outcomes::Chunks(outcomes), Some(&FRAGMENTS[..]));
        Ok(Writer { conn, tmp, path: path.to_path_buf(), lsn, digest, brands: 0, skus: 0, last: None })
    }

    /// Adds a brand; brands must come in the order of their ids.
    pub(super) fn brand(&mut self, b: &BrandState) -> Result<(), SnapshotError> {
        assert!(self.last.as_ref().is_none_or(|last| *last < b.id), "brands are written in the order of their ids");
        let outcomes = write_brand(&self.conn, b).map_err(|e| SnapshotError::Sqlite { path: self.tmp.0.clone(), source: e })?;
        self.digest.brand(&b.id, b, &digest::Outcomes::Chunks(outcomes));
        self.brands += 1;
        self.skus += b.skus.len();
        self.last = Some(b.id.clone());
        Ok(())
    }

    /// Writes `meta`, commits, and puts the file in place atomically: fsync, rename,
    /// fsync of the directory.
    pub(super) fn finish(self, now: Timestamp) -> Result<SnapshotInfo, SnapshotError> {
        let Writer { conn, tmp, path, lsn, digest, brands, skus, .. } = self;
        let sql = |e| SnapshotError::Sqlite { path: tmp.0.clone(), source: e };
        let meta = [
            ("format_version", schema::FORMAT_VERSION.to_string()),
            ("lsn", lsn.to_string()),
            ("created_at", t(now)),
            ("created_at_ms", now.0.to_string()),
            ("state_sha256", hex::encode(digest.finish())),
            ("zaiko_version", env!("CARGO_PKG_VERSION").to_string()),
            ("brands", brands.to_string()),
            ("skus", skus.to_string()),
            ("body_fragments", serde_json::to_string(&FRAGMENTS).expect("strings encode")),
        ];
        for (k, v) in meta {
            conn.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![k, v]).map_err(sql)?;
        }
        conn.execute_batch("COMMIT").map_err(sql)?;
        conn.close().map_err(|(_, e)| sql(e))?;
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| SnapshotError::Io { path: p, source: e }
        };
        std::fs::File::open(&tmp.0).and_then(|f| f.sync_all()).map_err(io(&tmp.0))?;
        std::fs::rename(&tmp.0, &path).map_err(io(&path))?;
        tmp.renamed();
        let parent = path.parent().expect("snapshot path has a directory");
        std::fs::File::open(parent).and_then(|f| f.sync_all()).map_err(io(parent))?;
        let info = super::read::info(&path)?;
        tracing::info!(lsn = info.lsn, bytes = info.bytes, path = %path.display(), "snapshot written");
        Ok(info)
    }
}

/// The temporary file of a snapshot being written, removed unless it was renamed into
/// place: a failed build (a full disk, most often) must not leave its partial file
/// taking the space it could not finish with.
struct TmpFile(PathBuf);

impl TmpFile {
    /// The file is in place under its final name: nothing to remove.
    fn renamed(mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if self.0.as_os_str().is_empty() {
            return;
        }
        match std::fs::remove_file(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %self.0.display(), error = %e, "cannot remove a failed snapshot's temporary file"),
        }
    }
}

/// Writes a scope's outcomes as chunks (`outcomes.rs`); returns what the digest takes
/// of them.
fn write_idempotency(tx: &Connection, scope: &str, store: &IdempotencyStore) -> rusqlite::Result<[u8; 32]> {
    let mut st = tx.prepare_cached("INSERT INTO idempotency_chunks (scope, seq, outcomes, data) VALUES (?1, ?2, ?3, ?4)")?;
    let mut seq = 0i64;
    super::outcomes::encode(store, |data, n| {
        st.execute(params![scope, seq, n as i64, data])?;
        seq += 1;
        Ok(())
    })
}

/// Writes the registry; returns what the digest takes of its outcomes.
fn write_registry(tx: &Connection, r: &Registry) -> rusqlite::Result<[u8; 32]> {
    for l in r.locations.values() {
        tx.execute(
            "INSERT INTO locations (id, name, kind, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![l.id.as_str(), l.name, enum_text(&l.kind), t(l.created_at), t(l.updated_at)],
        )?;
    }
    for tok in r.tokens.values() {
        let (role, brand) = match &tok.role {
            Role::Admin => ("admin", None),
            Role::Brand(b) => ("brand", Some(b.as_str())),
            Role::Viewer => ("viewer", None),
        };
        tx.execute(
            "INSERT INTO tokens (id, role, brand, secret_sha256, created_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![tok.id.as_str(), role, brand, &tok.secret_sha256[..], t(tok.created_at), tok.revoked_at.map(t)],
        )?;
    }
    if let Some(h) = &r.admin_sha256 {
        tx.execute("INSERT INTO admin_token (secret_sha256) VALUES (?1)", params![&h[..]])?;
    }
    tx.execute("INSERT INTO meta (key, value) VALUES ('registry_last_lsn', ?1)", params![r.last_lsn.to_string()])?;
    write_idempotency(tx, "", &r.idempotency)
}

/// Writes a brand; returns what the digest takes of its outcomes.
fn write_brand(tx: &Connection, b: &BrandState) -> rusqlite::Result<[u8; 32]> {
    let brand = b.id.as_str();
    tx.execute(
        "INSERT INTO brands (id, name, created_at, last_lsn) VALUES (?1, ?2, ?3, ?4)",
        params![brand, b.name, t(b.created_at), b.last_lsn as i64],
    )?;
    let mut sku_st = tx.prepare_cached(
        "INSERT INTO skus (brand, sku, product_id, name, color, size, category, price, tags, attributes, version, stock_version, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    let mut stock_st = tx.prepare_cached(
        "INSERT INTO stock (brand, sku, location, on_hand, reserved, safety_stock, incoming, available, unsellable, in_transit)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for (id, s) in &b.skus {
        let c = &s.catalog;
        let attrs: serde_json::Map<String, serde_json::Value> =
            c.attributes.iter().map(|(k, v)| (k.to_string(), v.as_str().into())).collect();
        sku_st.execute(params![
            brand,
            id.as_str(),
            c.product_id.as_deref(),
            c.name.as_str(),
            c.color.as_deref(),
            c.size.as_deref(),
            c.category.as_deref(),
            c.price,
            json(&c.tags),
            json(&attrs),
            s.version as i64,
            s.stock_version as i64,
            t(s.created_at),
            t(s.updated_at)
        ])?;
        for (loc, l) in s.levels.iter() {
            stock_st.execute(params![
                brand,
                id.as_str(),
                loc.as_str(),
                l.on_hand,
                l.reserved,
                l.safety_stock,
                l.incoming,
                l.available(),
                l.unsellable,
                l.in_transit
            ])?;
        }
    }
    for r in b.reservations.values() {
        tx.execute(
            "INSERT INTO reservations (brand, id, channel, status, ttl_seconds, requested, created_at, expires_at, ended_at, shipment_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                brand,
                r.id.as_str(),
                r.channel.as_str(),
                status_name(r.status),
                r.ttl_seconds,
                json(&r.requested),
                t(r.created_at),
                t(r.expires_at),
                r.ended_at.map(t),
                r.shipment_id.as_ref().map(|s| s.as_str())
            ],
        )?;
        for (i, a) in r.lines.iter().enumerate() {
            tx.execute(
                "INSERT INTO reservation_lines (brand, reservation, line, sku, location, quantity) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![brand, r.id.as_str(), i as i64, a.sku.as_str(), a.location.as_str(), a.quantity],
            )?;
        }
    }
    for s in b.shipments.values() {
        let (reservation_id, requested) = match &s.source {
            ShipmentSource::Reservation(r) => (Some(r.as_str()), None),
            ShipmentSource::Lines(l) => (None, Some(json(l))),
        };
        tx.execute(
            "INSERT INTO shipments (brand, id, order_ref, channel, status, reservation_id, requested_lines, ship_to, tracking_number, carrier, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                brand,
                s.id.as_str(),
                s.order_ref.as_deref(),
                s.channel.as_ref().map(|c| c.as_str()),
                s.status.as_str(),
                reservation_id,
                requested,
                json(&s.ship_to),
                s.tracking_number.as_deref(),
                s.carrier.as_deref(),
                t(s.created_at),
                t(s.updated_at)
            ],
        )?;
        for (i, a) in s.lines.iter().enumerate() {
            tx.execute(
                "INSERT INTO shipment_lines (brand, shipment, line, sku, location, quantity) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![brand, s.id.as_str(), i as i64, a.sku.as_str(), a.location.as_str(), a.quantity],
            )?;
        }
        for (i, h) in s.history.iter().enumerate() {
            tx.execute(
                "INSERT INTO shipment_history (brand, shipment, seq, status, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![brand, s.id.as_str(), i as i64, h.status.as_str(), t(h.at)],
            )?;
        }
    }
    for c in b.channels.values() {
        tx.execute(
            "INSERT INTO channels (brand, id, name, locations, buffer, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![brand, c.id.as_str(), c.name, c.locations.as_ref().map(json), c.buffer, t(c.created_at), t(c.updated_at)],
        )?;
    }
    for (channel, sync) in &b.channel_syncs {
        tx.execute(
            "INSERT INTO channel_syncs (brand, channel, before, all_skus, after) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![brand, channel.as_str(), sync.before.as_ref().map(json), sync.all, sync.after.as_ref().map(|a| a.as_str())],
        )?;
    }
    for i in b.inbounds.values() {
        tx.execute(
            "INSERT INTO inbounds (brand, id, location, expected_at, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                brand,
                i.id.as_str(),
                i.location.as_str(),
                i.expected_at.map(t),
                enum_text(&i.status),
                t(i.created_at),
                t(i.updated_at)
            ],
        )?;
        for (n, l) in i.lines.iter().enumerate() {
            tx.execute(
                "INSERT INTO inbound_lines (brand, inbound, line, sku, expected, received) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![brand, i.id.as_str(), n as i64, l.sku.as_str(), l.expected, l.received],
            )?;
        }
    }
    for tr in b.transfers.values() {
        tx.execute(
            "INSERT INTO transfers (brand, id, origin, destination, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                brand,
                tr.id.as_str(),
                tr.origin.as_str(),
                tr.destination.as_str(),
                enum_text(&tr.status),
                t(tr.created_at),
                t(tr.updated_at)
            ],
        )?;
        for (n, l) in tr.lines.iter().enumerate() {
            tx.execute(
                "INSERT INTO transfer_lines (brand, transfer, line, sku, quantity, received, written_off) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![brand, tr.id.as_str(), n as i64, l.sku.as_str(), l.quantity, l.received, l.written_off],
            )?;
        }
    }
    for r in b.returns.values() {
        tx.execute(
            "INSERT INTO returns (brand, id, shipment_id, reason, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                brand,
                r.id.as_str(),
                r.shipment_id.as_str(),
                r.reason.as_str(),
                enum_text(&r.status),
                t(r.created_at),
                t(r.updated_at)
            ],
        )?;
        for (n, l) in r.lines.iter().enumerate() {
            tx.execute(
                "INSERT INTO return_lines (brand, ret, line, sku, quantity, restocked, unsellable, missing) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![brand, r.id.as_str(), n as i64, l.sku.as_str(), l.quantity, l.restocked, l.unsellable, l.missing],
            )?;
        }
    }
    for (channel, th) in &b.thresholds {
        tx.execute(
            "INSERT INTO low_stock (brand, channel, default_threshold, skus) VALUES (?1, ?2, ?3, ?4)",
            params![brand, channel.as_str(), th.default, json(&th.skus)],
        )?;
    }
    for ((sku, channel), band) in &b.bands {
        tx.execute(
            "INSERT INTO stock_bands (brand, sku, channel, band) VALUES (?1, ?2, ?3, ?4)",
            params![brand, sku.as_str(), channel.as_str(), enum_text(band)],
        )?;
    }
    write_integrations(tx, b)?;
    write_idempotency(tx, brand, &b.idempotency)
}

/// Webhook subscriptions and import jobs (with their kept row errors).
fn write_integrations(tx: &Connection, b: &BrandState) -> rusqlite::Result<()> {
    let brand = b.id.as_str();
    for w in b.webhooks.values() {
        tx.execute(
            "INSERT INTO webhooks (brand, id, url, events, secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![brand, w.id.as_str(), w.url, json(&w.events), w.secret, t(w.created_at)],
        )?;
    }
    let finished_seq: std::collections::HashMap<&crate::domain::Id, usize> =
        b.imports.finished.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut job_st = tx.prepare_cached(
        "INSERT INTO import_jobs (brand, id, kind, format, file, bytes, sha256, created_at, status, rows_total, rows_ok, rows_failed,
           next_chunk, next_offset, next_row, started_at, finished_at, detail, finished_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?;
    let mut err_st = tx.prepare_cached("INSERT INTO import_errors (brand, job, seq, row, code, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
    for j in b.imports.jobs.values() {
        let s = &j.spec;
        job_st.execute(params![
            brand,
            s.id.as_str(),
            s.kind.as_str(),
            enum_text(&s.format),
            s.file,
            s.bytes as i64,
            &s.sha256[..],
            t(s.created_at),
            enum_text(&j.status),
            j.rows_total.map(|n| n as i64),
            j.rows_ok as i64,
            j.rows_failed as i64,
            j.next_chunk as i64,
            j.next_offset as i64,
            j.next_row as i64,
            j.started_at.map(t),
            j.finished_at.map(t),
            j.detail.as_deref(),
            finished_seq.get(&s.id).map(|n| *n as i64)
        ])?;
        for (seq, e) in j.errors.iter().enumerate() {
            err_st.execute(params![brand, s.id.as_str(), seq as i64, e.row as i64, enum_text(&e.code), e.detail])?;
        }
    }
    Ok(())
}
