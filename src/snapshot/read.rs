//! Reading a snapshot file back into a state, and checking it against its digest.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rusqlite::{Connection, OpenFlags, Row};

use super::{digest, schema, SnapshotError, SnapshotInfo};
use crate::domain::alerts::{Band, Thresholds};
use crate::domain::brand::{BrandState, SkuState};
use crate::domain::catalog::Catalog;
use crate::domain::channel::{Channel, ChannelSync, Inbound, InboundLine};
use crate::domain::fulfilment::{Allocation, Reservation, ReservationStatus, Shipment, ShipmentSource, StatusEntry};
use crate::domain::idempotency::{Body, IdemEntry, IdempotencyStore, Status};
use crate::domain::import::{ImportJob, ImportSpec, RowError};
use crate::domain::registry::{Location, Role, TokenRecord};
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

pub(super) fn load(path: &Path) -> Result<(State, SnapshotInfo), SnapshotError> {
    let info = info(path)?;
    let corrupt = |detail: String| SnapshotError::Corrupt { path: path.to_path_buf(), detail };
    let conn = open(path)?;
    let m = meta(&conn).map_err(corrupt)?;
    let state = read_state(&conn, &m).map_err(|b| corrupt(b.0))?;
    let want = m.get("state_sha256").ok_or_else(|| corrupt("meta.state_sha256 is missing".into()))?;
    if &hex::encode(digest(&state)) != want {
        return Err(corrupt("the state read back does not match its recorded SHA-256: the file is damaged".into()));
    }
    Ok((state, info))
}

fn ts(s: String) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(&s).ok_or_else(|| format!("bad time {s:?}"))
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
fn rows<T>(conn: &Connection, sql: &str, mut f: impl FnMut(&Row<'_>) -> Result<T, Bad>) -> Result<Vec<T>, Bad> {
    let mut st = conn.prepare(sql)?;
    let mut q = st.query([])?;
    let mut out = Vec::new();
    while let Some(row) = q.next()? {
        out.push(f(row)?);
    }
    Ok(out)
}

fn read_state(conn: &Connection, m: &HashMap<String, String>) -> Result<State, Bad> {
    let mut state = State { lsn: meta_num(m, "lsn")?, ..State::default() };
    let mut idem = read_idempotency(conn)?;
    read_registry(conn, &mut state, m, idem.remove("").unwrap_or_default())?;
    let brands = rows(conn, "SELECT id, name, created_at, last_lsn FROM brands ORDER BY id", |r| {
        Ok((
            BrandId::parse(&r.get::<_, String>(0)?).map_err(|e| e.to_string())?,
            r.get::<_, String>(1)?,
            ts(r.get(2)?)?,
            r.get::<_, i64>(3)? as u64,
        ))
    })?;
    for (bid, name, created_at, last_lsn) in brands {
        let mut b = BrandState::new(bid.clone(), name, created_at);
        b.last_lsn = last_lsn;
        b.idempotency = idem.remove(bid.as_str()).unwrap_or_default();
        state.brands.insert(bid, b);
    }
    let version: i64 = meta_num(m, "format_version")?;
    read_skus(conn, &mut state, version)?;
    read_reservations(conn, &mut state)?;
    read_shipments(conn, &mut state)?;
    read_channels(conn, &mut state)?;
    read_inbounds(conn, &mut state)?;
    if version >= 2 {
        read_transfers(conn, &mut state)?;
        read_returns(conn, &mut state)?;
        read_alerts(conn, &mut state)?;
    }
    read_integrations(conn, &mut state)?;
    Ok(state)
}

fn brand_mut<'a>(state: &'a mut State, brand: &str) -> Result<&'a mut BrandState, Bad> {
    state.brands.get_mut(brand).ok_or_else(|| Bad(format!("row for unknown brand {brand}")))
}

/// The idempotency outcomes of every scope, streamed into their stores row by row
/// (millions of rows: no list of them all, and no owned copy of a key or an answer).
fn read_idempotency(conn: &Connection) -> Result<HashMap<String, IdempotencyStore>, Bad> {
    let mut st = conn.prepare("SELECT scope, key, fingerprint, status, body, at_ms, lsn FROM idempotency ORDER BY scope, seq")?;
    let mut q = st.query([])?;
    let mut out: HashMap<String, IdempotencyStore> = HashMap::new();
    let mut scope = String::new();
    let mut store = IdempotencyStore::default();
    while let Some(r) = q.next()? {
        let row_scope = r.get_ref(0)?.as_str()?;
        if row_scope != scope {
            let (done_scope, done) = (std::mem::replace(&mut scope, row_scope.to_string()), std::mem::take(&mut store));
            if !done.is_empty() {
                out.insert(done_scope, done);
            }
        }
        let status = match r.get_ref(3)?.as_str()? {
            "ok" => Status::Done,
            "created" => Status::Created,
            "accepted" => Status::Accepted,
            "no_content" => Status::Removed,
            other => return Err(Bad(format!("bad idempotency status {other:?}"))),
        };
        let key = r.get_ref(1)?.as_str()?;
        if !crate::domain::idempotency::valid_key(key) {
            return Err(Bad(format!("bad idempotency key {key:?}")));
        }
        let e = IdemEntry {
            fingerprint: hash32(r.get(2)?)?,
            status,
            body: Body::new(r.get_ref(4)?.as_blob()?),
            at: Timestamp(r.get(5)?),
            lsn: r.get::<_, i64>(6)? as u64,
        };
        store.load(key, e);
    }
    if !store.is_empty() {
        out.insert(scope, store);
    }
    Ok(out)
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

fn read_skus(conn: &Connection, state: &mut State, version: i64) -> Result<(), Bad> {
    let skus = rows(
        conn,
        "SELECT brand, sku, product_id, name, color, size, category, price, tags, attributes, version, stock_version, created_at, updated_at
         FROM skus ORDER BY brand, sku",
        |r| {
            {
                let attrs: BTreeMap<String, String> = from_json(&r.get::<_, String>(9)?)?;
                let tags: Vec<String> = from_json(&r.get::<_, String>(8)?)?;
                let catalog = Catalog {
                    product_id: r.get::<_, Option<String>>(2)?.map(Into::into),
                    name: r.get::<_, String>(3)?.into(),
                    color: r.get::<_, Option<String>>(4)?.map(Into::into),
                    size: r.get::<_, Option<String>>(5)?.map(Into::into),
                    category: r.get::<_, Option<String>>(6)?.map(Into::into),
                    price: r.get(7)?,
                    tags: tags.into_iter().map(Into::into).collect(),
                    attributes: attrs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
                };
                let s = SkuState {
                    catalog,
                    version: r.get::<_, i64>(10)? as u64,
                    stock_version: r.get::<_, i64>(11)? as u64,
                    levels: Levels::default(),
                    created_at: ts(r.get(12)?)?,
                    updated_at: ts(r.get(13)?)?,
                };
                Ok((r.get::<_, String>(0)?, id(r.get(1)?)?, s))
            }
        },
    )?;
    for (brand, sku, s) in skus {
        brand_mut(state, &brand)?.skus.insert(sku, Box::new(s));
    }
    // Version 1 had no unsellable or in-transit units.
    let extra = if version >= 2 { "unsellable, in_transit" } else { "0, 0" };
    let levels = rows(
        conn,
        &format!(
            "SELECT brand, sku, location, on_hand, reserved, safety_stock, incoming, {extra} FROM stock ORDER BY brand, sku, location"
        ),
        |r| {
            let l = Level {
                on_hand: r.get(3)?,
                reserved: r.get(4)?,
                safety_stock: r.get(5)?,
                incoming: r.get(6)?,
                unsellable: r.get(7)?,
                in_transit: r.get(8)?,
            };
            Ok((r.get::<_, String>(0)?, id(r.get(1)?)?, id(r.get(2)?)?, l))
        },
    )?;
    // Rows come ordered by SKU and location: each SKU's run becomes its levels.
    for run in levels.chunk_by(|a, b| (&a.0, &a.1) == (&b.0, &b.1)) {
        let (brand, sku) = (&run[0].0, &run[0].1);
        let s = brand_mut(state, brand)?.skus.get_mut(sku).ok_or_else(|| format!("stock row for unknown sku {sku}"))?;
        s.levels = Levels(run.iter().map(|(_, _, loc, l)| (loc.clone(), *l)).collect());
    }
    Ok(())
}

fn allocations(conn: &Connection, table: &str, key: &str) -> Result<HashMap<(String, String), Vec<Allocation>>, Bad> {
    let sql = format!("SELECT brand, {key}, sku, location, quantity FROM {table} ORDER BY brand, {key}, line");
    let all = rows(conn, &sql, |r| {
        Ok((
            (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            Allocation { sku: id(r.get(2)?)?, location: id(r.get(3)?)?, quantity: r.get(4)? },
        ))
    })?;
    let mut out: HashMap<(String, String), Vec<Allocation>> = HashMap::new();
    for (k, a) in all {
        out.entry(k).or_default().push(a);
    }
    Ok(out)
}

fn read_reservations(conn: &Connection, state: &mut State) -> Result<(), Bad> {
    let mut lines = allocations(conn, "reservation_lines", "reservation")?;
    let all = rows(
        conn,
        "SELECT brand, id, channel, status, ttl_seconds, requested, created_at, expires_at, ended_at, shipment_id FROM reservations ORDER BY brand, id",
        |r| {
            {
                let res = Reservation {
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
                };
                Ok((r.get::<_, String>(0)?, res))
            }
        },
    )?;
    for (brand, mut res) in all {
        res.lines = lines.remove(&(brand.clone(), res.id.to_string())).unwrap_or_default();
        let b = brand_mut(state, &brand)?;
        if res.status == ReservationStatus::Active {
            b.expiries.insert((res.expires_at, res.id.clone()));
        }
        b.reservations.insert(res.id.clone(), res);
    }
    Ok(())
}

fn read_shipments(conn: &Connection, state: &mut State) -> Result<(), Bad> {
    let mut lines = allocations(conn, "shipment_lines", "shipment")?;
    let history = rows(conn, "SELECT brand, shipment, status, at FROM shipment_history ORDER BY brand, shipment, seq", |r| {
        Ok(((r.get::<_, String>(0)?, r.get::<_, String>(1)?), StatusEntry { status: from_text(r.get(2)?)?, at: ts(r.get(3)?)? }))
    })?;
    let mut histories: HashMap<(String, String), Vec<StatusEntry>> = HashMap::new();
    for (k, h) in history {
        histories.entry(k).or_default().push(h);
    }
    let all = rows(
        conn,
        "SELECT brand, id, order_ref, channel, status, reservation_id, requested_lines, ship_to, tracking_number, carrier, created_at, updated_at
         FROM shipments ORDER BY brand, id",
        |r| {
            {
                let source = match (r.get::<_, Option<String>>(5)?, r.get::<_, Option<String>>(6)?) {
                    (Some(res), None) => ShipmentSource::Reservation(id(res)?),
                    (None, Some(l)) => ShipmentSource::Lines(from_json(&l)?),
                    _ => return Err(Bad("a shipment needs exactly one of reservation_id and requested_lines".to_string())),
                };
                let s = Shipment {
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
                };
                Ok((r.get::<_, String>(0)?, s))
            }
        },
    )?;
    for (brand, mut s) in all {
        let key = (brand.clone(), s.id.to_string());
        s.lines = lines.remove(&key).unwrap_or_default();
        s.history = histories.remove(&key).unwrap_or_default();
        brand_mut(state, &brand)?.shipments.insert(s.id.clone(), s);
    }
    Ok(())
}

fn read_channels(conn: &Connection, state: &mut State) -> Result<(), Bad> {
    let channels = rows(conn, "SELECT brand, id, name, locations, buffer, created_at, updated_at FROM channels ORDER BY brand, id", |r| {
        let c = Channel {
            id: id(r.get(1)?)?,
            name: r.get(2)?,
            locations: r.get::<_, Option<String>>(3)?.map(|l| from_json(&l)).transpose()?,
            buffer: r.get(4)?,
            created_at: ts(r.get(5)?)?,
            updated_at: ts(r.get(6)?)?,
        };
        Ok((r.get::<_, String>(0)?, c))
    })?;
    for (brand, c) in channels {
        brand_mut(state, &brand)?.channels.insert(c.id.clone(), c);
    }
    let syncs = rows(conn, "SELECT brand, channel, before, all_skus, after FROM channel_syncs ORDER BY brand, channel", |r| {
        let sync = ChannelSync {
            before: r.get::<_, Option<String>>(2)?.map(|b| from_json(&b)).transpose()?,
            all: r.get(3)?,
            after: r.get::<_, Option<String>>(4)?.map(id).transpose()?,
        };
        Ok((r.get::<_, String>(0)?, id(r.get(1)?)?, sync))
    })?;
    for (brand, channel, sync) in syncs {
        brand_mut(state, &brand)?.channel_syncs.insert(channel, sync);
    }
    Ok(())
}

fn read_transfers(conn: &Connection, state: &mut State) -> Result<(), Bad> {
    let lines = rows(
        conn,
        "SELECT brand, transfer, sku, quantity, received, written_off FROM transfer_lines ORDER BY brand, transfer, line",
        |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                TransferLine { sku: id(r.get(2)?)?, quantity: r.get(3)?, received: r.get(4)?, written_off: r.get(5)? },
            ))
        },
    )?;
    let mut by_transfer: HashMap<(String, String), Vec<TransferLine>> = HashMap::new();
    for (k, l) in lines {
        by_transfer.entry(k).or_default().push(l);
    }
    let transfers =
        rows(conn, "SELECT brand, id, origin, destination, status, created_at, updated_at FROM transfers ORDER BY brand, id", |r| {
            let t = Transfer {
                id: id(r.get(1)?)?,
                origin: id(r.get(2)?)?,
                destination: id(r.get(3)?)?,
                status: from_text(r.get(4)?)?,
                lines: Vec::new(),
                created_at: ts(r.get(5)?)?,
                updated_at: ts(r.get(6)?)?,
            };
            Ok((r.get::<_, String>(0)?, t))
        })?;
    for (brand, mut t) in transfers {
        t.lines = by_transfer.remove(&(brand.clone(), t.id.as_str().to_string())).unwrap_or_default();
        brand_mut(state, &brand)?.transfers.insert(t.id.clone(), t);
    }
    Ok(())
}

fn read_returns(conn: &Connection, state: &mut State) -> Result<(), Bad> {
    let lines =
        rows(conn, "SELECT brand, ret, sku, quantity, restocked, unsellable, missing FROM return_lines ORDER BY brand, ret, line", |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                ReturnLine { sku: id(r.get(2)?)?, quantity: r.get(3)?, restocked: r.get(4)?, unsellable: r.get(5)?, missing: r.get(6)? },
            ))
        })?;
    let mut by_return: HashMap<(String, String), Vec<ReturnLine>> = HashMap::new();
    for (k, l) in lines {
        by_return.entry(k).or_default().push(l);
    }
    let returns =
        rows(conn, "SELECT brand, id, shipment_id, reason, status, created_at, updated_at FROM returns ORDER BY brand, id", |r| {
            let ret = Return {
                id: id(r.get(1)?)?,
                shipment_id: id(r.get(2)?)?,
                reason: r.get::<_, String>(3)?.into(),
                status: from_text(r.get(4)?)?,
                lines: Vec::new(),
                created_at: ts(r.get(5)?)?,
                updated_at: ts(r.get(6)?)?,
            };
            Ok((r.get::<_, String>(0)?, ret))
        })?;
    for (brand, mut ret) in returns {
        ret.lines = by_return.remove(&(brand.clone(), ret.id.as_str().to_string())).unwrap_or_default();
        brand_mut(state, &brand)?.returns.insert(ret.id.clone(), ret);
    }
    Ok(())
}

fn read_alerts(conn: &Connection, state: &mut State) -> Result<(), Bad> {
    let thresholds = rows(conn, "SELECT brand, channel, default_threshold, skus FROM low_stock ORDER BY brand, channel", |r| {
        let t = Thresholds { default: r.get(2)?, skus: from_json(&r.get::<_, String>(3)?)? };
        Ok((r.get::<_, String>(0)?, id(r.get(1)?)?, t))
    })?;
    for (brand, channel, t) in thresholds {
        brand_mut(state, &brand)?.thresholds.insert(channel, t);
    }
    let bands = rows(conn, "SELECT brand, sku, channel, band FROM stock_bands ORDER BY brand, sku, channel", |r| {
        Ok((r.get::<_, String>(0)?, id(r.get(1)?)?, id(r.get(2)?)?, from_text::<Band>(r.get(3)?)?))
    })?;
    for (brand, sku, channel, band) in bands {
        brand_mut(state, &brand)?.bands.insert((sku, channel), band);
    }
    Ok(())
}

fn read_inbounds(conn: &Connection, state: &mut State) -> Result<(), Bad> {
    let lines = rows(conn, "SELECT brand, inbound, sku, expected, received FROM inbound_lines ORDER BY brand, inbound, line", |r| {
        Ok((
            (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            InboundLine { sku: id(r.get(2)?)?, expected: r.get(3)?, received: r.get(4)? },
        ))
    })?;
    let mut by_inbound: HashMap<(String, String), Vec<InboundLine>> = HashMap::new();
    for (k, l) in lines {
        by_inbound.entry(k).or_default().push(l);
    }
    let inbounds =
        rows(conn, "SELECT brand, id, location, expected_at, status, created_at, updated_at FROM inbounds ORDER BY brand, id", |r| {
            let i = Inbound {
                id: id(r.get(1)?)?,
                location: id(r.get(2)?)?,
                expected_at: ots(r.get(3)?)?,
                status: from_text(r.get(4)?)?,
                lines: Vec::new(),
                created_at: ts(r.get(5)?)?,
                updated_at: ts(r.get(6)?)?,
            };
            Ok((r.get::<_, String>(0)?, i))
        })?;
    for (brand, mut i) in inbounds {
        i.lines = by_inbound.remove(&(brand.clone(), i.id.to_string())).unwrap_or_default();
        brand_mut(state, &brand)?.inbounds.insert(i.id.clone(), i);
    }
    Ok(())
}

fn read_integrations(conn: &Connection, state: &mut State) -> Result<(), Bad> {
    let hooks = rows(conn, "SELECT brand, id, url, events, secret, created_at FROM webhooks ORDER BY brand, id", |r| {
        let w = Webhook {
            id: id(r.get(1)?)?,
            url: r.get(2)?,
            events: from_json(&r.get::<_, String>(3)?)?,
            secret: r.get(4)?,
            created_at: ts(r.get(5)?)?,
        };
        Ok((r.get::<_, String>(0)?, w))
    })?;
    for (brand, w) in hooks {
        brand_mut(state, &brand)?.webhooks.insert(w.id.clone(), w);
    }
    let errors = rows(conn, "SELECT brand, job, row, code, detail FROM import_errors ORDER BY brand, job, seq", |r| {
        let e = RowError { row: r.get::<_, i64>(2)? as u64, code: from_text(r.get(3)?)?, detail: r.get(4)? };
        Ok(((r.get::<_, String>(0)?, r.get::<_, String>(1)?), e))
    })?;
    let mut by_job: HashMap<(String, String), Vec<RowError>> = HashMap::new();
    for (k, e) in errors {
        by_job.entry(k).or_default().push(e);
    }
    let jobs = rows(
        conn,
        "SELECT brand, id, kind, format, file, bytes, sha256, created_at, status, rows_total, rows_ok, rows_failed,
           next_chunk, next_offset, next_row, started_at, finished_at, detail, finished_seq
         FROM import_jobs ORDER BY brand, finished_seq, id",
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
            Ok((r.get::<_, String>(0)?, job, r.get::<_, Option<i64>>(18)?.is_some()))
        },
    )?;
    // Ordered by finished_seq (NULLs first), so finished jobs arrive oldest first.
    for (brand, mut job, finished) in jobs {
        job.errors = by_job.remove(&(brand.clone(), job.spec.id.to_string())).unwrap_or_default();
        let imports = &mut brand_mut(state, &brand)?.imports;
        if finished {
            imports.finished.push_back(job.spec.id.clone());
        }
        imports.jobs.insert(job.spec.id.clone(), job);
    }
    Ok(())
}
