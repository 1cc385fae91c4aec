//! The search indexes (tantivy): what is on disk under `<data-dir>/index/`, how it is
//! opened, checked and rebuilt, and how it follows the journal.
//!
//! * [`analyzer`] — normalisation (width, case, kana) and tokenisation (Japanese
//!   bigrams, Latin words and their parts, Latin and digit trigrams).
//! * [`schema`] — the fields and the document of one SKU.
//! * [`labels`] — the display names of colour and category values.
//! * [`synonyms`] — query-time synonyms: the shipped table and the operator's file.
//! * [`query`] — a checked SKU search request and the query it becomes.
//! * `tier` — the score bands that order kinds of match, and `AnyOf`, a term's
//!   disjunction over its fields, moved lazily.
//! * `substring` — a term's whole words, or else its substring (checked only there).
//! * [`collector`] — one pass for total, facets and a page after a cursor (any kind).
//! * [`search`] — the SKU search handle, cursors, and the covered LSN all kinds share.
//! * [`shipments`] — the shipment index: schema, query and search handle.
//! * [`indexer`] — the thread that drains the shards and commits every kind.
//! * `wake` — how searches nudge the indexer and shutdown stops it ([`indexer::Wake`]).
//!
//! **One index directory per kind** (`index/skus`, `index/shipments`), not one index
//! with a kind field: the two have nothing in common but the brand, so one schema
//! would be the union of both; BM25 statistics (document count, average field
//! length) would mix SKUs and shipments, so a million shipments would change how SKUs
//! rank; and each kind can change its format and be rebuilt alone. The price is that
//! two commits are not one atomic step — which the payload makes harmless: each
//! index's commit carries the LSN *it* covers, the catch-up replays from the lower of
//! the two (re-indexing a document from the current state is idempotent), and searches
//! see one covered LSN, published by the one indexer thread only after both commits.
//!
//! Every commit's payload is [`Payload`]: the index format and the LSN the index
//! covers (every record at or below it is reflected). On start each index is opened
//! and that LSN read *before* the journal is replayed, so the replay can mark the
//! documents touched after it dirty; a missing, unreadable or other-format index is
//! rebuilt from the recovered state. The indexes are derived data: deleting the
//! directory is always safe.
//!
//! Architecture invariant: only the indexer thread writes the index, and it commits
//! nothing that is not durable in the journal.

pub mod analyzer;
pub mod collector;
pub mod indexer;
pub mod labels;
pub mod query;
pub mod schema;
pub mod search;
pub mod shipments;
mod substring;
pub mod synonyms;
#[cfg(test)]
mod tests;
mod tier;
mod wake;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tantivy::schema::Schema;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexWriter, TantivyDocument};

use crate::journal::Lsn;
use schema::{Fields, INDEX_FORMAT};
use shipments::schema::{ShipmentFields, SHIPMENT_INDEX_FORMAT};

pub use indexer::{Indexer, IndexerHandle};
pub use query::{SearchRequest, Sort};
pub use search::{SearchResult, SkuIndex};
pub use shipments::ShipmentIndex;

/// Errors of the search index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("search index i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("search index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("the search indexer stopped: the {0} stopped first")]
    Stopped(&'static str),
}

impl IndexError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        IndexError::Io { path: path.to_path_buf(), source }
    }
}

/// The commit payload: JSON, so that a person can read it in `meta.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub format: u32,
    pub lsn: Lsn,
}

impl Payload {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("payload serialises")
    }
}

/// The SKU index directory under a data dir.
pub fn skus_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index").join("skus")
}

/// The shipment index directory under a data dir.
pub fn shipments_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index").join("shipments")
}

/// A kind of index: its name (for logs), the format its commits carry, its schema.
#[derive(Clone, Copy)]
pub struct Kind<F> {
    pub name: &'static str,
    pub format: u32,
    pub build: fn() -> (Schema, F),
}

pub const SKUS: Kind<Fields> = Kind { name: "skus", format: INDEX_FORMAT, build: schema::build };
pub const SHIPMENTS: Kind<ShipmentFields> = Kind { name: "shipments", format: SHIPMENT_INDEX_FORMAT, build: shipments::schema::build };

/// An opened index and what its last commit covers; `None` means it was (re)created
/// empty and must be built from the whole state.
pub struct Opened<F = Fields> {
    pub index: Index,
    pub fields: F,
    pub committed_lsn: Option<Lsn>,
    /// The format its commits carry.
    pub format: u32,
}

fn register_tokenizer(index: &Index) {
    index.tokenizers().register(analyzer::TOKENIZER_NAME, TextAnalyzer::from(analyzer::JaTokenizer));
    index.tokenizers().register(analyzer::GRAM_TOKENIZER_NAME, TextAnalyzer::from(analyzer::GramTokenizer));
}

/// Opens the SKU index in `dir`, or creates an empty one (see [`open_or_create_kind`]).
pub fn open_or_create(dir: &Path) -> Result<Opened, IndexError> {
    open_or_create_kind(dir, SKUS)
}

/// Replaces whatever is in `dir` with an empty SKU index.
pub fn recreate(dir: &Path) -> Result<Opened, IndexError> {
    recreate_kind(dir, SKUS)
}

/// Opens the index of `kind` in `dir`, or creates an empty one there when it is
/// missing, unreadable or of another format (logging why).
pub fn open_or_create_kind<F>(dir: &Path, kind: Kind<F>) -> Result<Opened<F>, IndexError> {
    let (schema, fields) = (kind.build)();
    match try_open(dir, &schema, kind.format) {
        Ok(Some((index, lsn))) => {
            tracing::info!(kind = %kind.name, dir = %dir.display(), lsn, "search index opened");
            return Ok(Opened { index, fields, committed_lsn: Some(lsn), format: kind.format });
        }
        Ok(None) => tracing::info!(kind = %kind.name, dir = %dir.display(), "no search index yet; building it from the state"),
        Err(reason) => {
            tracing::warn!(kind = %kind.name, dir = %dir.display(), reason = %reason, "search index unusable; rebuilding it from the state")
        }
    }
    recreate_kind(dir, kind)
}

/// Replaces whatever is in `dir` with an empty index of `kind`.
pub fn recreate_kind<F>(dir: &Path, kind: Kind<F>) -> Result<Opened<F>, IndexError> {
    let (schema, fields) = (kind.build)();
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
    let index = Index::create_in_dir(dir, schema)?;
    register_tokenizer(&index);
    Ok(Opened { index, fields, committed_lsn: None, format: kind.format })
}

/// `Ok(None)`: nothing there. `Err`: something there that cannot be used, and why.
fn try_open(dir: &Path, schema: &Schema, format: u32) -> Result<Option<(Index, Lsn)>, String> {
    if !dir.join("meta.json").exists() {
        return Ok(None);
    }
    let index = Index::open_in_dir(dir).map_err(|e| format!("cannot open: {e}"))?;
    if serde_json::to_value(index.schema()).ok() != serde_json::to_value(schema).ok() {
        return Err("its schema differs from this version's".into());
    }
    let metas = index.load_metas().map_err(|e| format!("cannot read its meta: {e}"))?;
    let payload = metas.payload.ok_or("it was never committed")?;
    let payload: Payload = serde_json::from_str(&payload).map_err(|e| format!("unreadable commit payload {payload:?}: {e}"))?;
    if payload.format != format {
        return Err(format!("index format {} is not {format}", payload.format));
    }
    register_tokenizer(&index);
    Ok(Some((index, payload.lsn)))
}

/// Memory of the writer of a bulk build (`index rebuild`, the benchmark), all threads.
pub const BULK_WRITER_MEMORY_BYTES: usize = 512 << 20;

/// Adds `docs` to a freshly created index and commits them as covering `lsn`; calls
/// `progress` with the number of documents added so far every 10,000. Returns the
/// number of documents.
pub fn bulk_build<F>(
    opened: &Opened<F>,
    threads: usize,
    docs: impl Iterator<Item = TantivyDocument>,
    lsn: Lsn,
    mut progress: impl FnMut(u64),
) -> Result<u64, IndexError> {
    let mut writer: IndexWriter<TantivyDocument> = opened.index.writer_with_num_threads(threads.max(1), BULK_WRITER_MEMORY_BYTES)?;
    let mut n = 0u64;
    for doc in docs {
        writer.add_document(doc)?;
        n += 1;
        if n.is_multiple_of(10_000) {
            progress(n);
        }
    }
    let mut prepared = writer.prepare_commit()?;
    prepared.set_payload(&Payload { format: opened.format, lsn }.encode());
    prepared.commit()?;
    // On a large catalog each thread's buffer fills more than once, and every segment
    // costs each search a lookup per term: merge down to one segment per thread (the
    // merge keeps the commit's payload).
    let ids = opened.index.searchable_segment_ids()?;
    let threads = threads.max(1);
    if ids.len() > threads {
        let merges: Vec<_> = ids.chunks(ids.len().div_ceil(threads)).filter(|c| c.len() > 1).map(|c| writer.merge(c)).collect();
        for m in merges {
            m.wait()?;
        }
    }
    writer.wait_merging_threads()?;
    progress(n);
    Ok(n)
}
