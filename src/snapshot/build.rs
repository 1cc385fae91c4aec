//! Building a snapshot off the hot path, one brand at a time.
//!
//! Brands are independent: a brand's records change only that brand. So the builder
//! reads the journal after the newest snapshot once, folding registry records into the
//! registry and noting only *where* each brand's records lie; then, brand by brand in
//! the order of their ids, it reads that brand from the old snapshot, folds in its
//! records (read again by where they lie), writes it to the new file and drops it.
//! Besides the live state, memory holds one brand's state and the records' places,
//! never a second whole state. The file and its digest are those a build from the
//! whole state gives ([`super::write`]), since both walk the same `Writer`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::read::Source;
use super::write::Writer;
use super::{SnapshotError, SnapshotInfo};
use crate::domain::brand::{apply_brand_record, BrandState};
use crate::domain::event::{self, WalRecord};
use crate::domain::registry::Registry;
use crate::domain::{BrandId, Timestamp};
use crate::journal::{self, FrameAt, JournalError, Lsn};

/// Why a build from one source snapshot failed.
enum Failed {
    /// The source snapshot is damaged or unreadable: an older one may do.
    Source(SnapshotError),
    /// Anything else (the journal, the new file): no other source would help.
    Build(SnapshotError),
}

impl From<JournalError> for Failed {
    fn from(e: JournalError) -> Self {
        Failed::Build(e.into())
    }
}

/// Builds a snapshot at `through` (a durable LSN) from the newest valid snapshot and
/// the journal records after it, without touching the live state. A damaged snapshot
/// is logged and the one before it used (the journal reaches back to the oldest kept
/// one); one of a newer format is an error, since skipping it could lose data.
pub fn build(data_dir: &Path, through: Lsn, now: Timestamp) -> Result<SnapshotInfo, SnapshotError> {
    for info in super::list(data_dir)?.into_iter().rev() {
        let opened = Source::open(&info.path).map_err(Failed::Source);
        match opened.and_then(|(source, registry)| from(data_dir, Some(source), registry, through, now)) {
            Ok(built) => return Ok(built),
            Err(Failed::Source(e @ SnapshotError::NewerFormat { .. })) => return Err(e),
            Err(Failed::Source(e)) => tracing::error!(error = %e, "snapshot is damaged; falling back to an older one"),
            Err(Failed::Build(e)) => return Err(e),
        }
    }
    from(data_dir, None, Registry::default(), through, now).map_err(|(Failed::Source(e) | Failed::Build(e))| e)
}

/// The build from one source (none: from the empty state, LSN 0).
fn from(data_dir: &Path, mut source: Option<Source>, registry: Registry, through: Lsn, now: Timestamp) -> Result<SnapshotInfo, Failed> {
    if let Some(s) = source.as_mut().filter(|s| s.info.lsn >= through) {
        // Nothing to add: the newest snapshot is the answer, once it has checked.
        while s.next_brand().map_err(Failed::Source)?.is_some() {}
        let s = source.expect("a source");
        let info = s.info.clone();
        s.finish().map_err(Failed::Source)?;
        return Ok(info);
    }
    let after = source.as_ref().map_or(0, |s| s.info.lsn);
    let d = super::dir(data_dir);
    std::fs::create_dir_all(&d).map_err(|e| Failed::Build(SnapshotError::Io { path: d.clone(), source: e }))?;
    let path = d.join(super::file_name(through));
    if path.exists() {
        return super::read::info(&path).map_err(Failed::Build);
    }
    // The one pass over the journal: the registry's records folded in, the brands'
    // only placed.
    let mut registry = registry;
    let mut places: HashMap<BrandId, Vec<FrameAt>> = HashMap::new();
    let files = journal::read_range_located(&data_dir.join("wal"), after, through, |lsn, payload, at| match event::decode(payload)? {
        WalRecord::Registry(r) => registry.apply(lsn, &r),
        WalRecord::Brand(b) => {
            places.entry(b.brand).or_default().push(at);
            Ok(())
        }
    })?;
    let ids: BTreeSet<BrandId> = source.iter().flat_map(|s| s.ids().cloned()).chain(places.keys().cloned()).collect();
    let mut writer = Writer::create(&path, through, &registry).map_err(Failed::Build)?;
    drop(registry);
    let mut buf = Vec::new();
    for id in ids {
        let mut one: HashMap<BrandId, BrandState> = HashMap::with_capacity(1);
        if let Some(s) = source.as_mut().filter(|s| s.ids().next() == Some(&id)) {
            let b = s.next_brand().map_err(Failed::Source)?.expect("the brand it listed");
            one.insert(id.clone(), b);
        }
        for at in places.remove(&id).unwrap_or_default() {
            let replay = |detail: String| JournalError::Replay { lsn: at.lsn, detail };
            let payload = files.read(at, &mut buf)?;
            let WalRecord::Brand(record) = event::decode(payload).map_err(replay)? else {
                return Err(replay("a brand's record reads back as the registry's".to_string()).into());
            };
            apply_brand_record(&mut one, at.lsn, &record).map_err(replay)?;
        }
        let b = one.remove(&id).expect("a brand comes from the snapshot or from its records");
        writer.brand(&b).map_err(Failed::Build)?;
    }
    // The new file is put in place only once its source has checked.
    if let Some(s) = source {
        s.finish().map_err(Failed::Source)?;
    }
    writer.finish(now).map_err(Failed::Build)
}
