//! The snapshot's SQLite schema. Documented for operators in `docs/snapshots.md`;
//! any change bumps [`FORMAT_VERSION`], and a snapshot of a newer version is refused.

/// Version of the schema below, stored in `meta.format_version`. 2: `stock` has
/// `unsellable` and `in_transit`, `transfers`/`transfer_lines` and
/// `returns`/`return_lines`, `low_stock` and `stock_bands` (a version-1 snapshot reads
/// the levels as 0 and has none of the rest). 3: `idempotency.fingerprint` holds the
/// first 16 bytes of the request's SHA-256, as memory keeps it (before: all 32). 4:
/// `idempotency.body` holds the answer as memory keeps it, packed when `packed` is 1,
/// with the fragments it was packed with in `meta.body_fragments` (before: the answer
/// as sent, packed again on every load). 5: the outcomes are in `idempotency_chunks`,
/// many to a row (encoding: `outcomes.rs`; the `idempotency` table of a row each is
/// gone), and the digest takes them as their chunks' bytes.
pub const FORMAT_VERSION: i64 = 5;

/// Times are RFC 3339 UTC text; quantities are integers; lists and maps are JSON text.
pub const DDL: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE locations (id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE tokens (id TEXT PRIMARY KEY, role TEXT NOT NULL, brand TEXT, secret_sha256 BLOB NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE admin_token (secret_sha256 BLOB NOT NULL);
CREATE TABLE brands (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL, last_lsn INTEGER NOT NULL);
CREATE TABLE skus (
  brand TEXT NOT NULL, sku TEXT NOT NULL, product_id TEXT, name TEXT NOT NULL, color TEXT, size TEXT, category TEXT,
  price INTEGER, tags TEXT NOT NULL, attributes TEXT NOT NULL, version INTEGER NOT NULL, stock_version INTEGER NOT NULL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (brand, sku));
CREATE TABLE stock (
  brand TEXT NOT NULL, sku TEXT NOT NULL, location TEXT NOT NULL, on_hand INTEGER NOT NULL, reserved INTEGER NOT NULL,
  safety_stock INTEGER NOT NULL, incoming INTEGER NOT NULL, available INTEGER NOT NULL, unsellable INTEGER NOT NULL,
  in_transit INTEGER NOT NULL, PRIMARY KEY (brand, sku, location));
CREATE TABLE reservations (
  brand TEXT NOT NULL, id TEXT NOT NULL, channel TEXT NOT NULL, status TEXT NOT NULL, ttl_seconds INTEGER NOT NULL,
  requested TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, ended_at TEXT, shipment_id TEXT,
  PRIMARY KEY (brand, id));
CREATE TABLE reservation_lines (brand TEXT NOT NULL, reservation TEXT NOT NULL, line INTEGER NOT NULL, sku TEXT NOT NULL,
  location TEXT NOT NULL, quantity INTEGER NOT NULL, PRIMARY KEY (brand, reservation, line));
CREATE TABLE shipments (
  brand TEXT NOT NULL, id TEXT NOT NULL, order_ref TEXT, channel TEXT, status TEXT NOT NULL, reservation_id TEXT,
  requested_lines TEXT, ship_to TEXT NOT NULL, tracking_number TEXT, carrier TEXT, created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL, PRIMARY KEY (brand, id));
CREATE TABLE shipment_lines (brand TEXT NOT NULL, shipment TEXT NOT NULL, line INTEGER NOT NULL, sku TEXT NOT NULL,
  location TEXT NOT NULL, quantity INTEGER NOT NULL, PRIMARY KEY (brand, shipment, line));
CREATE TABLE shipment_history (brand TEXT NOT NULL, shipment TEXT NOT NULL, seq INTEGER NOT NULL, status TEXT NOT NULL,
  at TEXT NOT NULL, PRIMARY KEY (brand, shipment, seq));
CREATE TABLE channels (brand TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, locations TEXT, buffer INTEGER NOT NULL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (brand, id));
CREATE TABLE channel_syncs (brand TEXT NOT NULL, channel TEXT NOT NULL, before TEXT, all_skus INTEGER NOT NULL, after TEXT,
  PRIMARY KEY (brand, channel));
CREATE TABLE inbounds (brand TEXT NOT NULL, id TEXT NOT NULL, location TEXT NOT NULL, expected_at TEXT, status TEXT NOT NULL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (brand, id));
CREATE TABLE inbound_lines (brand TEXT NOT NULL, inbound TEXT NOT NULL, line INTEGER NOT NULL, sku TEXT NOT NULL,
  expected INTEGER NOT NULL, received INTEGER NOT NULL, PRIMARY KEY (brand, inbound, line));
CREATE TABLE webhooks (brand TEXT NOT NULL, id TEXT NOT NULL, url TEXT NOT NULL, events TEXT NOT NULL, secret TEXT NOT NULL,
  created_at TEXT NOT NULL, PRIMARY KEY (brand, id));
CREATE TABLE import_jobs (brand TEXT NOT NULL, id TEXT NOT NULL, kind TEXT NOT NULL, format TEXT NOT NULL, file TEXT NOT NULL,
  bytes INTEGER NOT NULL, sha256 BLOB NOT NULL, created_at TEXT NOT NULL, status TEXT NOT NULL, rows_total INTEGER,
  rows_ok INTEGER NOT NULL, rows_failed INTEGER NOT NULL, next_chunk INTEGER NOT NULL, next_offset INTEGER NOT NULL,
  next_row INTEGER NOT NULL, started_at TEXT, finished_at TEXT, detail TEXT, finished_seq INTEGER, PRIMARY KEY (brand, id));
CREATE TABLE import_errors (brand TEXT NOT NULL, job TEXT NOT NULL, seq INTEGER NOT NULL, row INTEGER NOT NULL, code TEXT NOT NULL,
  detail TEXT NOT NULL, PRIMARY KEY (brand, job, seq));
CREATE TABLE idempotency_chunks (scope TEXT NOT NULL, seq INTEGER NOT NULL, outcomes INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (scope, seq));
CREATE TABLE transfers (brand TEXT NOT NULL, id TEXT NOT NULL, origin TEXT NOT NULL, destination TEXT NOT NULL,
  status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (brand, id));
CREATE TABLE transfer_lines (brand TEXT NOT NULL, transfer TEXT NOT NULL, line INTEGER NOT NULL, sku TEXT NOT NULL,
  quantity INTEGER NOT NULL, received INTEGER NOT NULL, written_off INTEGER NOT NULL, PRIMARY KEY (brand, transfer, line));
CREATE TABLE returns (brand TEXT NOT NULL, id TEXT NOT NULL, shipment_id TEXT NOT NULL, reason TEXT NOT NULL,
  status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (brand, id));
CREATE TABLE return_lines (brand TEXT NOT NULL, ret TEXT NOT NULL, line INTEGER NOT NULL, sku TEXT NOT NULL,
  quantity INTEGER NOT NULL, restocked INTEGER NOT NULL, unsellable INTEGER NOT NULL, missing INTEGER NOT NULL,
  PRIMARY KEY (brand, ret, line));
CREATE TABLE low_stock (brand TEXT NOT NULL, channel TEXT NOT NULL, default_threshold INTEGER, skus TEXT NOT NULL,
  PRIMARY KEY (brand, channel));
CREATE TABLE stock_bands (brand TEXT NOT NULL, sku TEXT NOT NULL, channel TEXT NOT NULL, band TEXT NOT NULL,
  PRIMARY KEY (brand, sku, channel));
"#;
