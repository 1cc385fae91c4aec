//! Reading an import file in chunks from any recorded position. Chunk boundaries are a
//! pure function of the file (at most `rows_max` rows and about `bytes_max` bytes
//! each), and every chunk says where the next one starts (byte offset and line), so
//! a runner that resumes after a crash at a recorded position reads exactly the
//! chunks it did not apply.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use super::parse::{check_header, csv_row, json_row, Columns, Row};
use crate::domain::import::{ImportFormat, ImportKind, RowError};
use crate::domain::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the import file: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading the import file: {0}")]
    Csv(#[from] csv::Error),
    /// The file cannot be used at all (its header).
    #[error("{0}")]
    Unusable(String),
}

/// Rows of one chunk, with the position after it.
#[derive(Debug, Default)]
pub struct Chunk {
    pub rows: Vec<(u64, Row)>,
    pub errors: Vec<RowError>,
    pub next_offset: u64,
    pub next_row: u64,
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.rows.len() + self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where the data rows start: after a CSV header (checked), or at the top.
#[derive(Debug, Clone)]
pub struct Start {
    pub columns: Option<Columns>,
    pub offset: u64,
    pub line: u64,
}

fn csv_builder() -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false).flexible(true);
    b
}

/// Reads (and checks) the header of a file.
pub fn start(path: &Path, format: ImportFormat, kind: ImportKind) -> Result<Start, ReadError> {
    if format == ImportFormat::Ndjson {
        return Ok(Start { columns: None, offset: 0, line: 1 });
    }
    let mut r = csv_builder().from_reader(BufReader::new(File::open(path)?));
    let mut header = csv::ByteRecord::new();
    if !r.read_byte_record(&mut header)? {
        return Err(ReadError::Unusable("the file is empty; a CSV import starts with a header row".into()));
    }
    let names: Vec<&str> = header.iter().map(|f| std::str::from_utf8(f).unwrap_or("\u{fffd}")).collect();
    let columns = check_header(kind, &names).map_err(ReadError::Unusable)?;
    let offset = r.position().byte();
    // Lines are counted as in `ChunkReader` (the csv crate counts only `\n`).
    let mut head = Vec::new();
    File::open(path)?.take(offset).read_to_end(&mut head)?;
    let (breaks, _) = line_breaks(head, &mut false);
    Ok(Start { columns: Some(columns), offset, line: 1 + breaks })
}

/// A record of one empty field (a line holding just `""`): no row, neither read nor
/// counted.
fn is_blank(rec: &csv::ByteRecord) -> bool {
    rec.len() == 1 && rec[0].is_empty()
}

/// Line breaks in `bytes`, as the csv crate ends records: `\n`, `\r\n` and a lone `\r`
/// (old Mac spreadsheets still write those) each count once; and how many of them come
/// before the first byte that is not a line break (where a record starts). `after_cr`
/// carries across calls whether the byte before was a `\r`, whose `\n` belongs to the
/// same break.
fn line_breaks(bytes: impl IntoIterator<Item = u8>, after_cr: &mut bool) -> (u64, u64) {
    let (mut breaks, mut leading) = (0u64, None);
    for b in bytes {
        if leading.is_none() && b != b'\r' && b != b'\n' {
            leading = Some(breaks);
        }
        breaks += u64::from(b == b'\r' || (b == b'\n' && !*after_cr));
        *after_cr = b == b'\r';
    }
    (breaks, leading.unwrap_or(breaks))
}

/// Data rows in the file (for `rows_total`).
pub fn count_rows(path: &Path, format: ImportFormat) -> Result<u64, ReadError> {
    match format {
        ImportFormat::Csv => {
            let mut r = csv_builder().from_reader(BufReader::new(File::open(path)?));
            let mut rec = csv::ByteRecord::new();
            let mut n = 0u64;
            while r.read_byte_record(&mut rec)? {
                n += u64::from(!is_blank(&rec));
            }
            Ok(n.saturating_sub(1))
        }
        ImportFormat::Ndjson => {
            let mut n = 0;
            for line in BufReader::new(File::open(path)?).split(b'\n') {
                n += u64::from(!line?.trim_ascii().is_empty());
            }
            Ok(n)
        }
    }
}

enum Source {
    Csv(csv::Reader<Tee>, Columns),
    Ndjson(BufReader<File>, ImportKind),
}

/// Reads chunks from a position.
pub struct ChunkReader {
    source: Source,
    /// File offset where the reader was opened.
    base_offset: u64,
    /// Offset and line of the next unread row.
    offset: u64,
    line: u64,
    /// Whether the byte before `offset` is a `\r` (see [`line_breaks`]).
    after_cr: bool,
    /// The bytes the CSV parser has read and not yet accounted for, from `offset` on.
    /// Lines are counted here rather than taken from the csv crate, whose record
    /// positions point at blank lines before a record and stop inside a CRLF.
    seen: Rc<RefCell<VecDeque<u8>>>,
}

/// Passes reads through and keeps a copy for line counting.
struct Tee {
    inner: BufReader<File>,
    seen: Rc<RefCell<VecDeque<u8>>>,
}

impl Read for Tee {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.seen.borrow_mut().extend(&out[..n]);
        Ok(n)
    }
}

impl ChunkReader {
    pub fn open(
        path: &Path,
        format: ImportFormat,
        kind: ImportKind,
        start: &Start,
        offset: u64,
        line: u64,
    ) -> Result<ChunkReader, ReadError> {
        let mut file = File::open(path)?;
        let mut before = [0u8];
        if offset > 0 {
            file.seek(SeekFrom::Start(offset - 1))?;
            file.read_exact(&mut before)?;
        }
        file.seek(SeekFrom::Start(offset))?;
        let buf = BufReader::with_capacity(1 << 20, file);
        let seen = Rc::new(RefCell::new(VecDeque::new()));
        let source = match (format, &start.columns) {
            (ImportFormat::Csv, Some(cols)) => Source::Csv(csv_builder().from_reader(Tee { inner: buf, seen: seen.clone() }), cols.clone()),
            (ImportFormat::Ndjson, _) => Source::Ndjson(buf, kind),
            (ImportFormat::Csv, None) => return Err(ReadError::Unusable("a CSV file needs its header".into())),
        };
        Ok(ChunkReader { source, base_offset: offset, offset, line, after_cr: before[0] == b'\r', seen })
    }

    /// The next chunk; `None` only at the end of the file.
    pub fn next_chunk(&mut self, rows_max: usize, bytes_max: u64) -> Result<Option<Chunk>, ReadError> {
        let chunk_start = self.position();
        let mut chunk = Chunk::default();
        // The byte bound counts only once the chunk holds a row: a stretch of blank
        // lines longer than the bound must not end the file early.
        while chunk.len() < rows_max && (chunk.is_empty() || self.position().0 - chunk_start.0 < bytes_max) {
            let more = match &mut self.source {
                Source::Csv(..) => self.csv_next(&mut chunk)?,
                Source::Ndjson(..) => self.ndjson_next(&mut chunk)?,
            };
            if !more {
                break;
            }
        }
        (chunk.next_offset, chunk.next_row) = self.position();
        Ok((!chunk.is_empty()).then_some(chunk))
    }

    fn position(&self) -> (u64, u64) {
        (self.offset, self.line)
    }

    fn csv_next(&mut self, chunk: &mut Chunk) -> Result<bool, ReadError> {
        let Source::Csv(r, cols) = &mut self.source else { unreachable!("csv source") };
        let mut rec = csv::ByteRecord::new();
        if !r.read_byte_record(&mut rec)? {
            return Ok(false);
        }
        // The bytes from the previous record's end to this one's: line breaks (blank
        // lines, the rest of a CRLF), the record, its terminator if read. The record
        // starts on the line after the breaks before its first byte.
        let end = self.base_offset + r.position().byte();
        let (newlines, before) = line_breaks(self.seen.borrow_mut().drain(..(end - self.offset) as usize), &mut self.after_cr);
        let line = self.line + before;
        (self.offset, self.line) = (end, self.line + newlines);
        if is_blank(&rec) {
            return Ok(true);
        }
        let fields: Result<Vec<&str>, _> = rec.iter().map(std::str::from_utf8).collect();
        let parsed = match fields {
            Ok(f) => csv_row(cols, &f),
            Err(_) => Err("the row is not valid UTF-8".to_string()),
        };
        push(chunk, line, parsed);
        Ok(true)
    }

    fn ndjson_next(&mut self, chunk: &mut Chunk) -> Result<bool, ReadError> {
        let Source::Ndjson(r, kind) = &mut self.source else { unreachable!("ndjson source") };
        let mut buf = Vec::new();
        let n = r.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(false);
        }
        let line = self.line;
        self.offset += n as u64;
        self.line += 1;
        let text = buf.trim_ascii();
        if !text.is_empty() {
            let kind = *kind;
            push(chunk, line, json_row(kind, text));
        }
        Ok(true)
    }
}

fn push(chunk: &mut Chunk, line: u64, parsed: Result<Row, String>) {
    match parsed {
        Ok(row) => chunk.rows.push((line, row)),
        Err(detail) => chunk.errors.push(RowError { row: line, code: ErrorCode::InvalidRequest, detail }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn lines(chunk: &Chunk) -> Vec<u64> {
        let mut v: Vec<u64> = chunk.rows.iter().map(|r| r.0).chain(chunk.errors.iter().map(|e| e.row)).collect();
        v.sort();
        v
    }

    #[test]
    fn csv_chunks_resume_at_their_recorded_position() {
        let dir = tempfile::tempdir().unwrap();
        let text = "sku,location,delta\nS1,t,1\n\"S2\",t,x\nS3,t,\"3\"\n\nS4,t,4\nS5,t,5\n";
        let p = file(&dir, "a.csv", text);
        let s = start(&p, ImportFormat::Csv, ImportKind::Stock).unwrap();
        assert_eq!((s.offset, s.line), (19, 2));
        assert_eq!(count_rows(&p, ImportFormat::Csv).unwrap(), 5);
        let mut r = ChunkReader::open(&p, ImportFormat::Csv, ImportKind::Stock, &s, s.offset, s.line).unwrap();
        let c1 = r.next_chunk(2, 1 << 20).unwrap().unwrap();
        assert_eq!(lines(&c1), vec![2, 3]);
        assert_eq!(c1.errors[0].code, ErrorCode::InvalidRequest);
        let all_after: Vec<u64> = std::iter::from_fn(|| r.next_chunk(2, 1 << 20).unwrap()).flat_map(|c| lines(&c)).collect();
        assert_eq!(all_after, vec![4, 6, 7]);
        // A reader opened at c1's end reads exactly what followed it.
        let mut again = ChunkReader::open(&p, ImportFormat::Csv, ImportKind::Stock, &s, c1.next_offset, c1.next_row).unwrap();
        let resumed: Vec<u64> = std::iter::from_fn(|| again.next_chunk(2, 1 << 20).unwrap()).flat_map(|c| lines(&c)).collect();
        assert_eq!(resumed, vec![4, 6, 7]);
    }

    #[test]
    fn csv_rows_are_numbered_by_the_line_they_start_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(&dir, "a.csv", "sku,location,delta\r\nS1,t,1\r\n\r\n\"S\n2\",t,1\nS3,t,1");
        let s = start(&p, ImportFormat::Csv, ImportKind::Stock).unwrap();
        let mut r = ChunkReader::open(&p, ImportFormat::Csv, ImportKind::Stock, &s, s.offset, s.line).unwrap();
        assert_eq!(lines(&r.next_chunk(10, 1 << 20).unwrap().unwrap()), vec![2, 4, 6]);
    }

    #[test]
    fn csv_rows_ended_by_a_lone_cr_are_numbered_by_their_own_line() {
        // Old Mac spreadsheets end lines with a lone CR; the csv crate ends records
        // there too, so the rows must not all share one line number. A reader resumed
        // between the CR and LF of a CRLF counts that break once.
        let dir = tempfile::tempdir().unwrap();
        let p = file(&dir, "a.csv", "sku,location,delta\rS1,t,1\rS2,t,x\r\rS3,t,1\r\nS4,t,1");
        let s = start(&p, ImportFormat::Csv, ImportKind::Stock).unwrap();
        assert_eq!(s.line, 2);
        let mut r = ChunkReader::open(&p, ImportFormat::Csv, ImportKind::Stock, &s, s.offset, s.line).unwrap();
        let all: Vec<Chunk> = std::iter::from_fn(|| r.next_chunk(1, 1 << 20).unwrap()).collect();
        assert_eq!(all.iter().flat_map(lines).collect::<Vec<_>>(), vec![2, 3, 5, 6]);
        for c in &all {
            let mut again = ChunkReader::open(&p, ImportFormat::Csv, ImportKind::Stock, &s, c.next_offset, c.next_row).unwrap();
            let rest: Vec<u64> = std::iter::from_fn(|| again.next_chunk(1, 1 << 20).unwrap()).flat_map(|c| lines(&c)).collect();
            let want: Vec<u64> = all.iter().flat_map(lines).filter(|l| *l > lines(c)[0]).collect();
            assert_eq!(rest, want, "resumed after line {}", lines(c)[0]);
        }
    }

    #[test]
    fn blank_lines_longer_than_the_byte_bound_do_not_end_the_file() {
        // A chunk that met only blank lines within its byte bound used to come back
        // empty, which reads as the end of the file: the rows after were never applied.
        let dir = tempfile::tempdir().unwrap();
        let blank = "\n".repeat(64);
        let p = file(
            &dir,
            "a.ndjson",
            &format!("{{\"sku\":\"S1\",\"location\":\"t\",\"delta\":1}}\n{blank}{{\"sku\":\"S2\",\"location\":\"t\",\"delta\":1}}\n"),
        );
        let s = start(&p, ImportFormat::Ndjson, ImportKind::Stock).unwrap();
        let mut r = ChunkReader::open(&p, ImportFormat::Ndjson, ImportKind::Stock, &s, 0, 1).unwrap();
        let all: Vec<u64> = std::iter::from_fn(|| r.next_chunk(1, 8).unwrap()).flat_map(|c| lines(&c)).collect();
        assert_eq!(all, vec![1, 66]);
        assert_eq!(count_rows(&p, ImportFormat::Ndjson).unwrap(), 2);
        let p = file(&dir, "b.csv", &format!("sku,location,delta\nS1,t,1\n{blank}\"\"\nS2,t,1\n"));
        let s = start(&p, ImportFormat::Csv, ImportKind::Stock).unwrap();
        let mut r = ChunkReader::open(&p, ImportFormat::Csv, ImportKind::Stock, &s, s.offset, s.line).unwrap();
        let all: Vec<u64> = std::iter::from_fn(|| r.next_chunk(1, 8).unwrap()).flat_map(|c| lines(&c)).collect();
        assert_eq!(all, vec![2, 68], "a line of just \"\" is no row");
        assert_eq!(count_rows(&p, ImportFormat::Csv).unwrap(), 2);
    }

    #[test]
    fn ndjson_rows_are_numbered_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = "{\"sku\":\"S1\",\"location\":\"t\",\"on_hand\":1}\n\n{bad\n{\"sku\":\"S2\",\"location\":\"t\",\"on_hand\":2}";
        let p = file(&dir, "a.ndjson", text);
        let s = start(&p, ImportFormat::Ndjson, ImportKind::Stock).unwrap();
        assert_eq!(count_rows(&p, ImportFormat::Ndjson).unwrap(), 3);
        let mut r = ChunkReader::open(&p, ImportFormat::Ndjson, ImportKind::Stock, &s, 0, 1).unwrap();
        let c = r.next_chunk(10, 1 << 20).unwrap().unwrap();
        assert_eq!(c.rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 4]);
        assert_eq!(c.errors[0].row, 3);
        assert!(r.next_chunk(10, 1 << 20).unwrap().is_none());
    }

    #[test]
    fn a_header_with_no_known_column_is_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(&dir, "a.csv", "foo,bar\n1,2\n");
        assert!(matches!(start(&p, ImportFormat::Csv, ImportKind::Stock), Err(ReadError::Unusable(_))));
        let p = file(&dir, "b.csv", "");
        assert!(matches!(start(&p, ImportFormat::Csv, ImportKind::Stock), Err(ReadError::Unusable(_))));
    }
}
