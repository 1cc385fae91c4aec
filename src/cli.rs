//! Offline commands (no server): `wal verify`.

use std::path::Path;
use std::process::ExitCode;

use crate::app::DataDir;
use crate::journal;

/// `zaiko wal verify`: prints every segment and where any damage is.
pub fn wal_verify(data_dir: &Path) -> ExitCode {
    let dir = DataDir::new(data_dir).wal();
    let report = match journal::verify(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zaiko: {e}");
            return ExitCode::from(2);
        }
    };
    println!("{:<60} {:>12} {:>10} {:>12}  end", "segment", "first_lsn", "records", "bytes");
    for s in &report.segments {
        println!("{:<60} {:>12} {:>10} {:>12}  {}", s.path.display(), s.first_lsn, s.records, s.data_bytes, s.end);
    }
    println!("records: {}, last lsn: {}", report.records, report.last_lsn);
    if let Some((path, offset)) = &report.torn_tail {
        println!("torn tail: {} at byte {offset} (a crash during a write; the next start cuts it)", path.display());
    }
    match report.corruption {
        Some(e) => {
            println!("CORRUPT: {e}");
            ExitCode::from(1)
        }
        None => {
            println!("ok");
            ExitCode::SUCCESS
        }
    }
}
