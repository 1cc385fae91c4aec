//! Reading an import file in chunks from any recorded position. Chunk boundaries are a
//! pure function of the file (at most `rows_max` rows and about `bytes_max` bytes
//! each), and every chunk says where the next one starts (byte offset and line), so
//! a runner that resumes after a crash at a recorded position reads exactly the
//! chunks it did not apply.
//!
//! Memory is bounded whatever the file: a CSV record is parsed (by `csv_core`) into
//! buffers of [`ROW_BYTES_MAX`] bytes and [`ROW_FIELDS_MAX`] fields, an NDJSON line
//! into one of [`ROW_BYTES_MAX`] bytes; a longer record or line is read to its end
//! without being kept and becomes a row error (a header, an unusable file). Line
//! breaks are counted from the bytes as they are consumed, never from a copy.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use csv_core::ReadRecordResult;

use super::parse::{check_header, csv_row, json_row, Columns, Row};
use crate::domain::fulfilment::LINES_MAX;
use crate::domain::import::{ImportFormat, ImportKind, RowError};
use crate::domain::{ErrorCode, Id};

/// Longest row, in bytes: a CSV record's field data (without delimiters and quotes)
/// or an NDJSON line (without its line break). Any valid row is far shorter (a
/// catalog row with every field and 50 attributes at their longest is ~170 KB).
pub const ROW_BYTES_MAX: usize = 1 << 20;
/// Most fields in a CSV record, the header included: a catalog's 8 columns and
/// many `attributes.<key>` columns fit.
pub const ROW_FIELDS_MAX: usize = 1024;
/// Documents (transfers or returns, by id) one import file may hold: what
/// [`document_problems`] keeps in memory while it reads the file.
pub const DOCUMENTS_MAX: usize = 100_000;
/// Read buffer of a file being imported.
const READ_BUFFER_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the import file: {0}")]
    Io(#[from] std::io::Error),
    /// The file cannot be used at all (its header).
    #[error("{0}")]
    Unusable(String),
}

/// The bounds a reader keeps rows within: [`ROW_BYTES_MAX`] and [`ROW_FIELDS_MAX`]
/// unless a test sets smaller ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub row_bytes_max: usize,
    pub row_fields_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { row_bytes_max: ROW_BYTES_MAX, row_fields_max: ROW_FIELDS_MAX }
    }
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

/// Where the data rows start: after a CSV header (checked), or at the top; and the
/// bounds rows are read within.
#[derive(Debug, Clone)]
pub struct Start {
    pub columns: Option<Columns>,
    pub offset: u64,
    pub line: u64,
    pub limits: Limits,
}

/// Reads (and checks) the header of a file.
pub fn start(path: &Path, format: ImportFormat, kind: ImportKind) -> Result<Start, ReadError> {
    let limits = Limits::default();
    if format == ImportFormat::Ndjson {
        return Ok(Start { columns: None, offset: 0, line: 1, limits });
    }
    let mut records = CsvRecords::open(File::open(path)?, false, limits);
    let Some(header) = records.next()? else {
        return Err(ReadError::Unusable("the file is empty; a CSV import starts with a header row".into()));
    };
    let names: Vec<&str> = match header.record {
        Record::Fields => records.fields().map(|f| std::str::from_utf8(f).unwrap_or("\u{fffd}")).collect(),
        Record::TooLong => {
            return Err(ReadError::Unusable(format!(
                "the header row is longer than {} bytes; it should hold only the column names",
                limits.row_bytes_max
            )))
        }
        Record::TooManyFields => {
            return Err(ReadError::Unusable(format!(
                "the header row has more than {} columns; give only the {} columns",
                limits.row_fields_max,
                kind.as_str()
            )))
        }
    };
    let columns = check_header(kind, &names).map_err(ReadError::Unusable)?;
    Ok(Start { columns: Some(columns), offset: header.bytes, line: 1 + header.breaks, limits })
}

/// A record of one empty field (a line holding just `""`): no row, neither read nor
/// counted.
fn is_blank(records: &CsvRecords, read: &RecordRead) -> bool {
    read.record == Record::Fields && records.fields == 1 && records.ends[0] == 0
}

/// Counts line breaks as the csv crate ends records: `\n`, `\r\n` and a lone `\r`
/// (old Mac spreadsheets still write those) each count once; and how many of them come
/// before the first byte that is not a line break (where a record starts). `after_cr`
/// carries across records whether the byte before was a `\r`, whose `\n` belongs to the
/// same break.
#[derive(Debug, Clone, Copy, Default)]
struct Breaks {
    after_cr: bool,
    total: u64,
    leading: Option<u64>,
}

impl Breaks {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.leading.is_none() && b != b'\r' && b != b'\n' {
                self.leading = Some(self.total);
            }
            self.total += u64::from(b == b'\r' || (b == b'\n' && !self.after_cr));
            self.after_cr = b == b'\r';
        }
    }

    /// Breaks counted since the last call, and how many came before a record's first
    /// byte; starts counting afresh.
    fn take(&mut self) -> (u64, u64) {
        let taken = (self.total, self.leading.unwrap_or(self.total));
        (self.total, self.leading) = (0, None);
        taken
    }
}

/// What a CSV record turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    /// Within the bounds: [`CsvRecords::fields`] has its fields.
    Fields,
    /// More than `row_bytes_max` bytes of field data; read to its end, not kept.
    TooLong,
    /// More than `row_fields_max` fields; read to its end, not kept.
    TooManyFields,
}

/// One record read, and the bytes it took from the file: the line breaks before it
/// (blank lines, the rest of a CRLF), the record, its line break.
#[derive(Debug, Clone, Copy)]
struct RecordRead {
    record: Record,
    bytes: u64,
    breaks: u64,
    /// Line breaks before the record's first byte.
    leading: u64,
}

/// CSV records parsed by `csv_core` straight from the file into fixed buffers.
struct CsvRecords {
    input: BufReader<File>,
    core: csv_core::Reader,
    data: Vec<u8>,
    ends: Vec<usize>,
    /// Fields of the last record read (`ends[..fields]`).
    fields: usize,
    breaks: Breaks,
}

impl CsvRecords {
    /// Records from `file`'s current position; `after_cr` says whether the byte
    /// before it is a `\r`.
    fn open(file: File, after_cr: bool, limits: Limits) -> CsvRecords {
        CsvRecords {
            input: BufReader::with_capacity(READ_BUFFER_BYTES, file),
            core: csv_core::Reader::new(),
            // At least one byte and one field, or a record past them would never end.
            data: vec![0; limits.row_bytes_max.max(1)],
            ends: vec![0; limits.row_fields_max.max(1)],
            fields: 0,
            breaks: Breaks { after_cr, ..Breaks::default() },
        }
    }

    /// The next record; `None` at the end of the file. A record past the bounds is
    /// read to its end with its data overwritten in place.
    fn next(&mut self) -> std::io::Result<Option<RecordRead>> {
        let (mut out, mut ends, mut bytes, mut over) = (0, 0, 0u64, None);
        loop {
            let input = self.input.fill_buf()?;
            let (result, nin, nout, nend) = self.core.read_record(input, &mut self.data[out..], &mut self.ends[ends..]);
            self.breaks.feed(&input[..nin]);
            self.input.consume(nin);
            (bytes, out, ends) = (bytes + nin as u64, out + nout, ends + nend);
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => (out, over) = (0, over.or(Some(Record::TooLong))),
                ReadRecordResult::OutputEndsFull => (ends, over) = (0, over.or(Some(Record::TooManyFields))),
                ReadRecordResult::Record => {
                    self.fields = if over.is_none() { ends } else { 0 };
                    let (breaks, leading) = self.breaks.take();
                    return Ok(Some(RecordRead { record: over.unwrap_or(Record::Fields), bytes, breaks, leading }));
                }
                ReadRecordResult::End => return Ok(None),
            }
        }
    }

    /// The fields of the last record read.
    fn fields(&self) -> impl Iterator<Item = &[u8]> {
        let ends = &self.ends[..self.fields];
        (0..ends.len()).map(move |i| &self.data[if i == 0 { 0 } else { ends[i - 1] }..ends[i]])
    }
}

/// What an NDJSON line turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Only white space: no row.
    Blank,
    /// A row, in the line buffer.
    Text,
    /// More than `row_bytes_max` bytes; read to its end, not kept.
    TooLong,
}

/// Reads the next line into `buf` (cleared first) unless it is longer than
/// `bytes_max`; returns what it was and the bytes it took, `None` at the end. Whether
/// a line is blank does not depend on the bound, so neither does the count of rows.
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>, bytes_max: usize) -> std::io::Result<Option<(Line, u64)>> {
    buf.clear();
    let (mut bytes, mut too_long, mut blank) = (0u64, false, true);
    loop {
        let input = r.fill_buf()?;
        if input.is_empty() {
            break;
        }
        let (take, ended) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (input.len(), false),
        };
        let text = take - usize::from(ended);
        blank = blank && input[..text].iter().all(u8::is_ascii_whitespace);
        if !too_long && buf.len() + text > bytes_max {
            too_long = true;
            buf.clear();
        }
        if !too_long {
            buf.extend_from_slice(&input[..take]);
        }
        r.consume(take);
        bytes += take as u64;
        if ended {
            break;
        }
    }
    Ok(match bytes {
        0 => None,
        _ if blank => Some((Line::Blank, bytes)),
        _ if too_long => Some((Line::TooLong, bytes)),
        _ => Some((Line::Text, bytes)),
    })
}

/// Data rows in the file (for `rows_total`): what a [`ChunkReader`] will hand out,
/// a record or line past the bounds counting as one.
pub fn count_rows(path: &Path, format: ImportFormat) -> Result<u64, ReadError> {
    let limits = Limits::default();
    match format {
        ImportFormat::Csv => {
            let mut records = CsvRecords::open(File::open(path)?, false, limits);
            let mut n = 0u64;
            while let Some(read) = records.next()? {
                n += u64::from(!is_blank(&records, &read));
            }
            Ok(n.saturating_sub(1))
        }
        ImportFormat::Ndjson => {
            let (mut r, mut buf, mut n) = (BufReader::with_capacity(READ_BUFFER_BYTES, File::open(path)?), Vec::new(), 0u64);
            while let Some((line, _)) = next_line(&mut r, &mut buf, limits.row_bytes_max)? {
                n += u64::from(line != Line::Blank);
            }
            Ok(n)
        }
    }
}

enum Source {
    Csv(Box<CsvRecords>, Columns),
    Ndjson { input: BufReader<File>, kind: ImportKind, line: Vec<u8> },
}

/// Reads chunks from a position.
pub struct ChunkReader {
    source: Source,
    kind: ImportKind,
    limits: Limits,
    /// Offset and line after the last row read from the source (the held one included).
    offset: u64,
    line: u64,
    /// A row read ahead to see whether it belongs to the document a chunk ends with,
    /// not taken into a chunk yet.
    held: Option<Held>,
}

/// A row read ahead: where it (and the blank lines before it) started, its line, and
/// what it parsed to.
struct Held {
    start: (u64, u64),
    line: u64,
    parsed: Result<Row, String>,
}

impl Held {
    fn document(&self) -> Option<&Id> {
        match &self.parsed {
            Ok(Row::Document(id, _)) => Some(id),
            _ => None,
        }
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
        let limits = start.limits;
        let source = match (format, &start.columns) {
            (ImportFormat::Csv, Some(cols)) => Source::Csv(Box::new(CsvRecords::open(file, before[0] == b'\r', limits)), cols.clone()),
            (ImportFormat::Ndjson, _) => {
                Source::Ndjson { input: BufReader::with_capacity(READ_BUFFER_BYTES, file), kind, line: Vec::new() }
            }
            (ImportFormat::Csv, None) => return Err(ReadError::Unusable("a CSV file needs its header".into())),
        };
        Ok(ChunkReader { source, kind, limits, offset, line, held: None })
    }

    /// The next chunk; `None` only at the end of the file. A chunk of transfers or
    /// returns never ends inside a document: past its bounds it goes on while the rows
    /// are of the document its last row is of (at most [`LINES_MAX`] more; a longer
    /// document is an error whichever chunks its rows fall in).
    pub fn next_chunk(&mut self, rows_max: usize, bytes_max: u64) -> Result<Option<Chunk>, ReadError> {
        let chunk_start = self.position();
        let mut chunk = Chunk::default();
        let mut last_document: Option<Id> = None;
        // The byte bound counts only once the chunk holds a row: a stretch of blank
        // lines longer than the bound must not end the file early.
        while chunk.len() < rows_max && (chunk.is_empty() || self.position().0 - chunk_start.0 < bytes_max) {
            if !self.fetch()? {
                break;
            }
            last_document = self.take(&mut chunk);
        }
        if let Some(doc) = last_document.filter(|_| self.kind.is_document()) {
            for _ in 0..LINES_MAX {
                if !self.fetch()? || self.held.as_ref().and_then(Held::document) != Some(&doc) {
                    break;
                }
                self.take(&mut chunk);
            }
        }
        (chunk.next_offset, chunk.next_row) = self.position();
        Ok((!chunk.is_empty()).then_some(chunk))
    }

    /// Where the next chunk starts: before the held row, if any.
    fn position(&self) -> (u64, u64) {
        match &self.held {
            Some(h) => h.start,
            None => (self.offset, self.line),
        }
    }

    /// Makes sure a row is held (reading past blank lines); `false` at the end.
    fn fetch(&mut self) -> Result<bool, ReadError> {
        if self.held.is_some() {
            return Ok(true);
        }
        let start = (self.offset, self.line);
        loop {
            let read = match &mut self.source {
                Source::Csv(..) => self.csv_next()?,
                Source::Ndjson { .. } => self.ndjson_next()?,
            };
            match read {
                None => return Ok(false),
                Some(None) => continue,
                Some(Some((line, parsed))) => {
                    self.held = Some(Held { start, line, parsed });
                    return Ok(true);
                }
            }
        }
    }

    /// Moves the held row into `chunk`; returns its document, if it is a document's row.
    fn take(&mut self, chunk: &mut Chunk) -> Option<Id> {
        let held = self.held.take()?;
        let document = held.document().cloned();
        push(chunk, held.line, held.parsed);
        document
    }

    /// The next record: `None` at the end, `Some(None)` for a blank one (no row).
    #[allow(clippy::type_complexity)]
    fn csv_next(&mut self) -> Result<Option<Option<(u64, Result<Row, String>)>>, ReadError> {
        let Source::Csv(records, cols) = &mut self.source else { unreachable!("csv source") };
        let Some(read) = records.next()? else { return Ok(None) };
        // The record starts on the line after the breaks before its first byte.
        let line = self.line + read.leading;
        (self.offset, self.line) = (self.offset + read.bytes, self.line + read.breaks);
        if is_blank(records, &read) {
            return Ok(Some(None));
        }
        let parsed = match read.record {
            Record::Fields => match records.fields().map(std::str::from_utf8).collect::<Result<Vec<&str>, _>>() {
                Ok(f) => csv_row(cols, &f),
                Err(_) => Err("the row is not valid UTF-8".to_string()),
            },
            Record::TooLong => Err(format!(
                "the row holds more than {} bytes, the most a row may hold; check its quoting, or shorten its fields",
                self.limits.row_bytes_max
            )),
            Record::TooManyFields => Err(format!(
                "the row has more than {} fields, the header has {}; check its quoting and delimiters",
                self.limits.row_fields_max, cols.count
            )),
        };
        Ok(Some(Some((line, parsed))))
    }

    /// The next line: `None` at the end, `Some(None)` for a blank one (no row).
    #[allow(clippy::type_complexity)]
    fn ndjson_next(&mut self) -> Result<Option<Option<(u64, Result<Row, String>)>>, ReadError> {
        let Source::Ndjson { input, kind, line: buf } = &mut self.source else { unreachable!("ndjson source") };
        let Some((read, bytes)) = next_line(input, buf, self.limits.row_bytes_max)? else { return Ok(None) };
        let line = self.line;
        self.offset += bytes;
        self.line += 1;
        let parsed = match read {
            Line::Blank => return Ok(Some(None)),
            Line::Text => json_row(*kind, buf.trim_ascii()),
            Line::TooLong => Err(format!(
                "the line is longer than {} bytes, the most a row may hold; shorten it (one JSON object per line)",
                self.limits.row_bytes_max
            )),
        };
        Ok(Some(Some((line, parsed))))
    }
}

/// The documents of a transfers or returns file that cannot be applied whatever chunk
/// they fall in, and why: those whose rows are not all together (another row, or a row
/// with no valid id, comes between two of them) and those of more than [`LINES_MAX`]
/// rows. One pass over the file, keeping each document's id once: a file of more than
/// [`DOCUMENTS_MAX`] documents is refused (the job fails, nothing applied).
pub fn document_problems(path: &Path, format: ImportFormat, kind: ImportKind, start: &Start) -> Result<HashMap<Id, String>, ReadError> {
    let mut reader = ChunkReader::open(path, format, kind, start, start.offset, start.line)?;
    let name = kind.document_name();
    // Each document's first line, and the problems found so far.
    let mut seen: HashMap<Id, u64> = HashMap::new();
    let mut problems: HashMap<Id, String> = HashMap::new();
    let (mut current, mut run_rows): (Option<Id>, usize) = (None, 0);
    while reader.fetch()? {
        let held = reader.held.take().expect("fetched");
        let Some(doc) = held.document().cloned() else {
            current = None;
            continue;
        };
        if current.as_ref() == Some(&doc) {
            run_rows += 1;
            if run_rows > LINES_MAX {
                problems.entry(doc).or_insert_with(|| format!("{name} has more than {LINES_MAX} rows, the most a document may have"));
            }
            continue;
        }
        run_rows = 1;
        match seen.get(&doc) {
            Some(first) => {
                let why = format!(
                    "the rows of this {name} are not all together (it starts on line {first} and again on line {}); put every row of a document next to the others, e.g. by sorting the file by id",
                    held.line
                );
                problems.entry(doc.clone()).or_insert(why);
            }
            None if seen.len() >= DOCUMENTS_MAX => {
                return Err(ReadError::Unusable(format!(
                    "the file holds more than {DOCUMENTS_MAX} {name}s, the most one import may hold; split it into smaller files"
                )))
            }
            None => {
                seen.insert(doc.clone(), held.line);
            }
        }
        current = Some(doc);
    }
    Ok(problems)
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

    /// Every row of a file read in chunks of one row from `start`: (line, error detail
    /// or "ok").
    fn read_all(p: &Path, format: ImportFormat, kind: ImportKind, s: &Start) -> Vec<(u64, String)> {
        let mut r = ChunkReader::open(p, format, kind, s, s.offset, s.line).unwrap();
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk(1, 1 << 20).unwrap() {
            out.extend(c.rows.iter().map(|(l, _)| (*l, "ok".to_string())));
            out.extend(c.errors.iter().map(|e| (e.row, e.detail.clone())));
        }
        out
    }

    #[test]
    fn csv_rows_past_the_bounds_are_row_errors_and_the_next_rows_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let text = "sku,location,delta,reason\nS1,t,1,ok\nS2,t,1,\"0123456789\n0123456789\"\nS3,t,1,ok\nS4,t,1,ok,,,\r\nS5,t,1,ok";
        let p = file(&dir, "a.csv", text);
        let mut s = start(&p, ImportFormat::Csv, ImportKind::Stock).unwrap();
        s.limits = Limits { row_bytes_max: 16, row_fields_max: 5 };
        let rows = read_all(&p, ImportFormat::Csv, ImportKind::Stock, &s);
        let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, vec![2, 3, 5, 6, 7]);
        assert!(rows[1].1.contains("more than 16 bytes"), "{rows:?}");
        assert_eq!(rows[2].1, "ok");
        assert!(rows[3].1.contains("more than 5 fields, the header has 4"), "{rows:?}");
        assert_eq!(rows[4].1, "ok");
        assert_eq!(count_rows(&p, ImportFormat::Csv).unwrap(), 5);
    }

    #[test]
    fn ndjson_lines_past_the_bound_are_row_errors_and_the_next_lines_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ok = r#"{"sku":"S1","location":"t","delta":1}"#;
        let long = format!(r#"{{"sku":"S2","location":"t","delta":1,"reason":"{}"}}"#, "x".repeat(100));
        let blank = " ".repeat(200);
        let p = file(&dir, "a.ndjson", &format!("{ok}\n{long}\n{blank}\n{ok}\r\n{long}"));
        let mut s = start(&p, ImportFormat::Ndjson, ImportKind::Stock).unwrap();
        s.limits.row_bytes_max = ok.len() + 1;
        let rows = read_all(&p, ImportFormat::Ndjson, ImportKind::Stock, &s);
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 4, 5], "a blank line of any length is no row");
        assert_eq!((rows[0].1.as_str(), rows[2].1.as_str()), ("ok", "ok"), "a CRLF line ends within the bound");
        for i in [1, 3] {
            assert!(rows[i].1.contains("longer than"), "{rows:?}");
        }
        assert_eq!(count_rows(&p, ImportFormat::Ndjson).unwrap(), 4);
    }

    #[test]
    fn headers_past_the_bounds_are_unusable_with_a_short_reason() {
        let dir = tempfile::tempdir().unwrap();
        let many = format!("sku,location,delta,{}\nS1,t,1\n", vec!["x"; ROW_FIELDS_MAX].join(","));
        let p = file(&dir, "a.csv", &many);
        let Err(ReadError::Unusable(why)) = start(&p, ImportFormat::Csv, ImportKind::Stock) else { panic!() };
        assert!(why.contains(&format!("more than {ROW_FIELDS_MAX} columns")), "{why}");
        let long = format!("sku,location,delta,\"{}\"\nS1,t,1\n", "y".repeat(ROW_BYTES_MAX));
        let p = file(&dir, "b.csv", &long);
        let Err(ReadError::Unusable(why)) = start(&p, ImportFormat::Csv, ImportKind::Stock) else { panic!() };
        assert!(why.contains(&format!("longer than {ROW_BYTES_MAX} bytes")), "{why}");
        // Within the bounds but wrong: the reason lists ten names, each cut short.
        let wrong = format!("sku,location,delta,{},{}\n", "z".repeat(5000), vec!["w"; 50].join(","));
        let p = file(&dir, "c.csv", &wrong);
        let Err(ReadError::Unusable(why)) = start(&p, ImportFormat::Csv, ImportKind::Stock) else { panic!() };
        assert!(why.len() < 1000 && why.contains("and 41 more"), "{why}");
    }

    #[test]
    fn a_chunk_never_ends_inside_a_document_and_resumes_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let text = "id,origin,destination,sku,quantity\n\
                    T1,a,b,S1,1\nT1,a,b,S2,1\nT1,a,b,S3,1\n,a,b,S1,1\nT2,a,b,S1,1\n\nT2,a,b,S2,1\nT3,a,b,S1,1\nT2,a,b,S3,1\n";
        let p = file(&dir, "t.csv", text);
        let s = start(&p, ImportFormat::Csv, ImportKind::Transfers).unwrap();
        let mut r = ChunkReader::open(&p, ImportFormat::Csv, ImportKind::Transfers, &s, s.offset, s.line).unwrap();
        let chunks: Vec<Chunk> = std::iter::from_fn(|| r.next_chunk(1, 1 << 20).unwrap()).collect();
        let got: Vec<Vec<u64>> = chunks.iter().map(lines).collect();
        // T1's three rows in one chunk; the row with no id alone; T2's rows across the
        // blank line in one; then T3, then T2 again (apart: a problem, below).
        assert_eq!(got, vec![vec![2, 3, 4], vec![5], vec![6, 8], vec![9], vec![10]]);
        for (i, c) in chunks.iter().enumerate() {
            let mut again = ChunkReader::open(&p, ImportFormat::Csv, ImportKind::Transfers, &s, c.next_offset, c.next_row).unwrap();
            let rest: Vec<Vec<u64>> = std::iter::from_fn(|| again.next_chunk(1, 1 << 20).unwrap()).map(|c| lines(&c)).collect();
            assert_eq!(rest, got[i + 1..].to_vec(), "resumed after chunk {i}");
        }
        let problems = document_problems(&p, ImportFormat::Csv, ImportKind::Transfers, &s).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[&Id::parse("T2").unwrap()].contains("starts on line 6 and again on line 10"), "{problems:?}");
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
