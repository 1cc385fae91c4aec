//! The SKU search index (tantivy): what is on disk under `<data-dir>/index/skus`, how
//! it is opened, checked and rebuilt, and how it follows the journal.
//!
//! * [`analyzer`] — normalisation and tokenisation (Japanese bigrams, Latin words).
//! * [`schema`] — the fields and the document of one SKU.
//! * [`query`] — a checked search request and the query it becomes.
//! * [`collector`] — one pass for total, facets and a page after a cursor.
//! * [`search`] — the handle searches go through, results and cursors.
//! * [`indexer`] — the thread that drains the shards and commits.
//!
//! Every commit's payload is [`Payload`]: the index format and the LSN the index
//! covers (every record at or below it is reflected). On start the index is opened
//! and that LSN read *before* the journal is replayed, so the replay can mark the SKUs
//! touched after it dirty; a missing, unreadable or other-format index is rebuilt
//! from the recovered state. The index is derived data: deleting the directory is
//! always safe.
//!
//! Architecture invariant: only the indexer thread writes the index, and it commits
//! nothing that is not durable in the journal.

pub mod analyzer;
pub mod collector;
pub mod indexer;
pub mod query;
pub mod schema;
pub mod search;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexWriter, TantivyDocument};

use crate::journal::Lsn;
use schema::{Fields, INDEX_FORMAT};

pub use indexer::{Indexer, IndexerHandle};
pub use query::{SearchRequest, Sort};
pub use search::{SearchResult, SkuIndex};

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
    pub fn new(lsn: Lsn) -> Payload {
        Payload { format: INDEX_FORMAT, lsn }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("payload serialises")
    }
}

/// The SKU index directory under a data dir.
pub fn skus_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index").join("skus")
}

/// An opened index and what its last commit covers; `None` means it was (re)created
/// empty and must be built from the whole state.
pub struct Opened {
    pub index: Index,
    pub fields: Fields,
    pub committed_lsn: Option<Lsn>,
}

fn register_tokenizer(index: &Index) {
    index.tokenizers().register(analyzer::TOKENIZER_NAME, TextAnalyzer::from(analyzer::JaTokenizer));
}

/// Opens the index in `dir`, or creates an empty one there when it is missing,
/// unreadable or of another format (logging why).
pub fn open_or_create(dir: &Path) -> Result<Opened, IndexError> {
    let (schema, fields) = schema::build();
    match try_open(dir, &schema) {
        Ok(Some((index, lsn))) => {
            tracing::info!(dir = %dir.display(), lsn, "search index opened");
            return Ok(Opened { index, fields, committed_lsn: Some(lsn) });
        }
        Ok(None) => tracing::info!(dir = %dir.display(), "no search index yet; building it from the state"),
        Err(reason) => tracing::warn!(dir = %dir.display(), reason = %reason, "search index unusable; rebuilding it from the state"),
    }
    recreate(dir)
}

/// Replaces whatever is in `dir` with an empty index.
pub fn recreate(dir: &Path) -> Result<Opened, IndexError> {
    let (schema, fields) = schema::build();
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
    let index = Index::create_in_dir(dir, schema)?;
    register_tokenizer(&index);
    Ok(Opened { index, fields, committed_lsn: None })
}

/// `Ok(None)`: nothing there. `Err`: something there that cannot be used, and why.
fn try_open(dir: &Path, schema: &tantivy::schema::Schema) -> Result<Option<(Index, Lsn)>, String> {
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
    if payload.format != INDEX_FORMAT {
        return Err(format!("index format {} is not {INDEX_FORMAT}", payload.format));
    }
    register_tokenizer(&index);
    Ok(Some((index, payload.lsn)))
}

/// Memory of the writer of a bulk build (`index rebuild`, the benchmark), all threads.
pub const BULK_WRITER_MEMORY_BYTES: usize = 512 << 20;

/// Adds `docs` to a freshly created index and commits them as covering `lsn`; calls
/// `progress` with the number of documents added so far every 10,000. Returns the
/// number of documents.
pub fn bulk_build(
    opened: &Opened,
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
        if n % 10_000 == 0 {
            progress(n);
        }
    }
    let mut prepared = writer.prepare_commit()?;
    prepared.set_payload(&Payload::new(lsn).encode());
    prepared.commit()?;
    writer.wait_merging_threads()?;
    progress(n);
    Ok(n)
}
