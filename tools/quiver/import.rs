//! Streaming readers for the vector files that `quiver import`, `quiver search
//! --query` and `quiver bench` take.
//!
//! | extension | layout (every number little-endian) |
//! |---|---|
//! | `.fvecs` | per row: `i32` dimension, then that many `f32` |
//! | `.bvecs` | per row: `i32` dimension, then that many `u8` (read as `f32`) |
//! | `.fbin` | `u32` rows, `u32` dimension, then rows × dimension `f32` (big-ann-benchmarks) |
//! | `.u8bin` | as `.fbin`, with `u8` components |
//! | `.npy` | NumPy format 1.0, 2.0 or 3.0 holding a 2-D, C-order `<f4` array |
//! | `.jsonl`, `.ndjson` | one object per non-blank line: `{"id": 7, "vector": [0.5, 1], "payload": ...}` |
//! | `.ivecs` | ground truth for [`read_ivecs`], per row: `i32` count, then that many `i32` ids |
//!
//! Rows and components are numbered from 0, lines from 1. A row's id is its
//! row number counted from the start of the file, unless a JSON Lines file
//! names an id field. Every component must be finite: Quiver stores nothing
//! else.
//!
//! Nothing read from a file is trusted. Sizes in headers are checked against
//! the file size before anything is allocated from them, a dimension above
//! 2^20 is refused, and a malformed file is an [`ImportError`] naming the file
//! and the row, never a panic. Memory stays bounded by one batch, one row and
//! one line (at most 64 MiB), whatever the size of the file.

use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Largest dimension read; a larger one means the file is not what its
/// extension says (the database itself takes at most 2^16).
const MAX_DIM: usize = 1 << 20;
/// Capacity of the read buffer.
const BUFFER_BYTES: usize = 1 << 20;
/// Longest JSON line read: a 2^20-dimension vector written in full precision
/// fits, with room for a payload.
const MAX_LINE_BYTES: u64 = 64 << 20;
/// Longest `.npy` header read (NumPy writes about 128 bytes for a plain array).
const MAX_NPY_HEADER: u64 = 1 << 20;
/// `.npy` files start with this, then the major and minor version bytes.
const NPY_MAGIC: &[u8] = b"\x93NUMPY";
/// A UTF-8 byte order mark, skipped at the start of a JSON Lines file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why reading a vector file failed: one line, naming the file and where.
#[derive(Debug)]
pub struct ImportError {
    /// The file being read.
    pub path: PathBuf,
    /// The row (counted from 0) that is malformed, when the failure belongs
    /// to one (a failed read belongs to none).
    pub row: Option<u64>,
    /// What is wrong, without the file name or row.
    pub message: String,
}

impl ImportError {
    fn new(path: &Path, row: Option<u64>, message: impl Into<String>) -> Self {
        ImportError {
            path: path.to_path_buf(),
            row,
            message: message.into(),
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path.display())?;
        if let Some(row) = self.row {
            write!(f, "row {row}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ImportError {}

/// The vector file formats [`VectorReader`] reads, told apart by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.fvecs`: per row an `i32` dimension, then `f32` components.
    Fvecs,
    /// `.bvecs`: per row an `i32` dimension, then `u8` components.
    Bvecs,
    /// `.fbin`: `u32` rows, `u32` dimension, then `f32` components.
    Fbin,
    /// `.u8bin`: `u32` rows, `u32` dimension, then `u8` components.
    U8bin,
    /// `.npy`: a 2-D little-endian float32 NumPy array.
    Npy,
    /// `.jsonl` or `.ndjson`: one JSON object per line.
    Jsonl,
}

impl Format {
    const SUPPORTED: &'static str = ".fvecs, .bvecs, .fbin, .u8bin, .npy, .jsonl, .ndjson";

    /// The format a file's extension (in any case) names.
    ///
    /// # Errors
    /// An unknown or missing extension, with the list of supported ones.
    pub fn from_path(path: &Path) -> Result<Format, ImportError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("fvecs") => Ok(Format::Fvecs),
            Some("bvecs") => Ok(Format::Bvecs),
            Some("fbin") => Ok(Format::Fbin),
            Some("u8bin") => Ok(Format::U8bin),
            Some("npy") => Ok(Format::Npy),
            Some("jsonl" | "ndjson") => Ok(Format::Jsonl),
            Some(other) => Err(ImportError::new(
                path,
                None,
                format!(
                    "unknown extension .{other}: supported are {}",
                    Self::SUPPORTED
                ),
            )),
            None => Err(ImportError::new(
                path,
                None,
                format!(
                    "no extension to tell the format by: supported are {}",
                    Self::SUPPORTED
                ),
            )),
        }
    }

    /// Whether components are stored as `u8` rather than `f32`.
    fn bytes_per_component(self) -> usize {
        match self {
            Format::Bvecs | Format::U8bin => 1,
            Format::Fvecs | Format::Fbin | Format::Npy | Format::Jsonl => 4,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Fvecs => ".fvecs",
            Format::Bvecs => ".bvecs",
            Format::Fbin => ".fbin",
            Format::U8bin => ".u8bin",
            Format::Npy => ".npy",
            Format::Jsonl => "JSON Lines",
        })
    }
}

/// One batch of rows; buffers are reused across calls.
#[derive(Debug, Default)]
pub struct Batch {
    /// One id per row.
    pub ids: Vec<u64>,
    /// Row-major components, `ids.len() * dim` of them.
    pub vectors: Vec<f32>,
    /// One entry per row; always `None` outside JSON Lines.
    pub payloads: Vec<Option<Vec<u8>>>,
}

/// How rows sit in the file.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// `.fvecs`/`.bvecs`: every row starts with its own `i32` dimension.
    Vecs,
    /// `.fbin`/`.u8bin`/`.npy`: a header giving `rows`, then bare rows.
    Flat { rows: u64 },
    /// JSON Lines: one object per non-blank line.
    Json,
}

/// Reads a vector file a batch at a time, checking every row.
///
/// After an error the reader is spent: further calls may fail or return
/// rows out of step.
#[derive(Debug)]
pub struct VectorReader {
    path: PathBuf,
    format: Format,
    layout: Layout,
    src: BufReader<File>,
    total_bytes: u64,
    bytes_read: u64,
    /// Offset of row 0 (fixed-size formats).
    data_start: u64,
    /// Bytes per row, dimension prefix included (fixed-size formats).
    record_bytes: u64,
    dim: usize,
    position: u64,
    /// One row's raw bytes, reused.
    row_buf: Vec<u8>,
    /// JSON Lines: the field ids come from.
    ids_field: Option<String>,
    /// JSON Lines: the current line, reused.
    line: Vec<u8>,
    /// JSON Lines: number of the current line.
    line_no: u64,
    /// JSON Lines: row 0, parsed by `open` to learn the dimension.
    pending: Option<Batch>,
}

impl VectorReader {
    /// Opens `path` and reads its header (for `.fvecs`, `.bvecs` and JSON
    /// Lines, its first row) so that [`dim`](Self::dim) is known.
    ///
    /// `ids_field` names the JSON Lines field ids come from; with `None`, ids
    /// are row numbers.
    ///
    /// # Errors
    /// An unknown extension, an unreadable file, a malformed or truncated
    /// header, an empty file, or `ids_field` given for a binary format.
    pub fn open(path: &Path, ids_field: Option<&str>) -> Result<VectorReader, ImportError> {
        let format = Format::from_path(path)?;
        if ids_field.is_some() && format != Format::Jsonl {
            return Err(ImportError::new(
                path,
                None,
                format!("ids come from row numbers in {format} files"),
            ));
        }
        let file = File::open(path)
            .map_err(|e| ImportError::new(path, None, format!("cannot open: {e}")))?;
        let total_bytes = file
            .metadata()
            .map_err(|e| ImportError::new(path, None, format!("cannot read metadata: {e}")))?
            .len();
        let mut reader = VectorReader {
            path: path.to_path_buf(),
            format,
            layout: Layout::Json,
            src: BufReader::with_capacity(BUFFER_BYTES, file),
            total_bytes,
            bytes_read: 0,
            data_start: 0,
            record_bytes: 0,
            dim: 0,
            position: 0,
            row_buf: Vec::new(),
            ids_field: ids_field.map(str::to_owned),
            line: Vec::new(),
            line_no: 0,
            pending: None,
        };
        match format {
            Format::Fvecs | Format::Bvecs => reader.open_vecs()?,
            Format::Fbin | Format::U8bin => reader.open_bin()?,
            Format::Npy => reader.open_npy()?,
            Format::Jsonl => reader.open_jsonl()?,
        }
        Ok(reader)
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Components per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Checks that the file's rows are `dim`-d, as a database that stores
    /// such vectors needs (every later row is checked against the first as
    /// it is read).
    ///
    /// # Errors
    /// The one message every command gives for a file of another dimension.
    pub fn expect_dim(&self, dim: usize) -> Result<(), ImportError> {
        if self.dim == dim {
            return Ok(());
        }
        Err(dim_mismatch(&self.path, self.dim, dim))
    }

    /// Total rows, when known without reading everything: from the header,
    /// or the file size over the row size for `.fvecs`/`.bvecs`. `None` for
    /// JSON Lines.
    pub fn rows_hint(&self) -> Option<u64> {
        match self.layout {
            Layout::Vecs => {
                Some(self.total_bytes.saturating_sub(self.data_start) / self.record_bytes.max(1))
            }
            Layout::Flat { rows } => Some(rows),
            Layout::Json => None,
        }
    }

    /// The file's size in bytes, as it was when opened.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Bytes consumed so far, for a progress bar.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Row number of the next row to be returned.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Skips `rows` rows, to resume an interrupted import. Fixed-size formats
    /// seek (the skipped rows are not checked); JSON Lines reads and discards
    /// non-blank lines without parsing them.
    ///
    /// # Errors
    /// Fewer than `rows` rows left, or a failed read or seek.
    pub fn skip(&mut self, rows: u64) -> Result<(), ImportError> {
        if let Layout::Json = self.layout {
            for _ in 0..rows {
                if self.pending.take().is_none() && !self.next_line()? {
                    let message = format!(
                        "cannot skip {rows} rows: the file has only {} rows",
                        self.position
                    );
                    return Err(self.fail(None, message));
                }
                self.position += 1;
            }
            return Ok(());
        }
        let available = self.rows_hint().unwrap_or(0);
        let Some(target) = self.position.checked_add(rows).filter(|&t| t <= available) else {
            let message = format!(
                "cannot skip {rows} rows from row {}: the file has {available} rows",
                self.position
            );
            return Err(self.fail(None, message));
        };
        // Cannot overflow: target rows of record_bytes fit in the file.
        let offset = self.data_start + target * self.record_bytes;
        self.src
            .seek(SeekFrom::Start(offset))
            .map_err(|e| self.fail(None, format!("seek failed: {e}")))?;
        self.bytes_read = offset;
        self.position = target;
        Ok(())
    }

    /// Clears `out` and fills it with up to `max_rows` rows; returns the
    /// number read, 0 at the end of the file (or when `max_rows` is 0).
    ///
    /// # Errors
    /// A malformed row (wrong dimension, non-finite component, bad JSON), a
    /// truncated file or a failed read; `out` then holds the rows before it.
    pub fn next_batch(&mut self, max_rows: usize, out: &mut Batch) -> Result<usize, ImportError> {
        out.ids.clear();
        out.vectors.clear();
        out.payloads.clear();
        while out.ids.len() < max_rows && self.read_row(out)? {}
        Ok(out.ids.len())
    }

    /// Reads every row left, for query files; memory grows with the file.
    ///
    /// # Errors
    /// As [`next_batch`](Self::next_batch).
    pub fn read_all(&mut self) -> Result<Batch, ImportError> {
        let mut out = Batch::default();
        self.next_batch(usize::MAX, &mut out)?;
        Ok(out)
    }

    fn fail(&self, row: Option<u64>, message: impl Into<String>) -> ImportError {
        ImportError::new(&self.path, row, message)
    }

    /// A failed read: the file may be fine, so the error names no row (only
    /// a malformed row does), only where it was reading.
    fn read_failed(&self, row: Option<u64>, e: &io::Error) -> ImportError {
        let at = row.map_or_else(String::new, |row| format!(" at row {row}"));
        self.fail(None, format!("read failed{at}: {e}"))
    }

    fn truncated(&self, row: u64, got: usize) -> ImportError {
        let message = format!(
            "truncated: the file ends {got} bytes into this row of {} bytes",
            self.record_bytes
        );
        self.fail(Some(row), message)
    }

    /// Reads up to `len` bytes into `row_buf`; returns how many the file had.
    fn read_row_bytes(&mut self, len: usize, row: Option<u64>) -> Result<usize, ImportError> {
        self.row_buf.resize(len, 0);
        match read_full(&mut self.src, &mut self.row_buf) {
            Ok(n) => {
                self.bytes_read += n as u64;
                Ok(n)
            }
            Err(e) => Err(self.read_failed(row, &e)),
        }
    }

    fn open_vecs(&mut self) -> Result<(), ImportError> {
        let n = self.read_row_bytes(4, Some(0))?;
        if n == 0 {
            return Err(self.fail(None, "empty file: no row to take the dimension from"));
        }
        self.record_bytes = 4;
        if n < 4 {
            return Err(self.truncated(0, n));
        }
        let dim = i32::from_le_bytes(word(&self.row_buf, 0));
        self.dim = check_dim(self.format, dim.into()).map_err(|m| self.fail(Some(0), m))?;
        self.record_bytes = 4 + (self.dim * self.format.bytes_per_component()) as u64;
        self.src
            .seek(SeekFrom::Start(0))
            .map_err(|e| self.fail(None, format!("seek failed: {e}")))?;
        self.bytes_read = 0;
        self.layout = Layout::Vecs;
        Ok(())
    }

    fn open_bin(&mut self) -> Result<(), ImportError> {
        let n = self.read_row_bytes(8, None)?;
        if n < 8 {
            let message = format!("truncated: {n} bytes, shorter than the 8-byte header");
            return Err(self.fail(None, message));
        }
        let rows = u32::from_le_bytes(word(&self.row_buf, 0));
        let dim = u32::from_le_bytes(word(&self.row_buf, 4));
        self.dim = check_dim(self.format, dim.into()).map_err(|m| self.fail(None, m))?;
        self.open_flat(8, rows.into())
    }

    fn open_npy(&mut self) -> Result<(), ImportError> {
        let n = self.read_row_bytes(8, None)?;
        if n < 8 || self.row_buf.get(..6) != Some(NPY_MAGIC) {
            return Err(self.fail(None, "not a .npy file: no NumPy magic string and version"));
        }
        let (major, minor) = (self.row_buf[6], self.row_buf[7]);
        let len_bytes = match major {
            1 => 2,
            2 | 3 => 4,
            _ => {
                let message = format!("unsupported .npy format version {major}.{minor}");
                return Err(self.fail(None, message));
            }
        };
        if self.read_row_bytes(len_bytes, None)? < len_bytes {
            return Err(self.fail(None, "truncated in the .npy header"));
        }
        let header_len = if len_bytes == 2 {
            u64::from(u16::from_le_bytes([self.row_buf[0], self.row_buf[1]]))
        } else {
            u64::from(u32::from_le_bytes(word(&self.row_buf, 0)))
        };
        let data_start = 8 + len_bytes as u64 + header_len;
        if header_len > MAX_NPY_HEADER || data_start > self.total_bytes {
            let message = format!(
                "a .npy header of {header_len} bytes is longer than the file or than {MAX_NPY_HEADER} bytes"
            );
            return Err(self.fail(None, message));
        }
        // At most MAX_NPY_HEADER, so the cast is lossless.
        let header_len = header_len as usize;
        if self.read_row_bytes(header_len, None)? < header_len {
            return Err(self.fail(None, "truncated in the .npy header"));
        }
        let (rows, dim) = parse_npy_header(&self.row_buf).map_err(|m| self.fail(None, m))?;
        self.dim = check_dim(self.format, dim).map_err(|m| self.fail(None, m))?;
        self.open_flat(data_start, rows)
    }

    /// Checks that `rows` rows after `data_start` fill the file exactly.
    fn open_flat(&mut self, data_start: u64, rows: u64) -> Result<(), ImportError> {
        let record = (self.dim * self.format.bytes_per_component()) as u64;
        let promised = format!("the header promises {rows} rows of dimension {}", self.dim);
        match rows
            .checked_mul(record)
            .and_then(|b| b.checked_add(data_start))
        {
            None => return Err(self.fail(None, format!("{promised}, more than a file holds"))),
            Some(want) if want != self.total_bytes => {
                let what = if want > self.total_bytes {
                    "truncated"
                } else {
                    "trailing bytes"
                };
                let message = format!(
                    "{what}: {promised} ({want} bytes) but the file has {} bytes",
                    self.total_bytes
                );
                return Err(self.fail(None, message));
            }
            Some(_) => {}
        }
        self.data_start = data_start;
        self.record_bytes = record;
        self.layout = Layout::Flat { rows };
        Ok(())
    }

    fn open_jsonl(&mut self) -> Result<(), ImportError> {
        let mut first = Batch::default();
        if !self.read_json_row(&mut first)? {
            return Err(self.fail(None, "empty file: no row to take the dimension from"));
        }
        // Row 0 is handed out by the first next_batch or skip.
        self.position = 0;
        self.pending = Some(first);
        Ok(())
    }

    /// Appends the next row to `out`; `false` at the end of the file.
    fn read_row(&mut self, out: &mut Batch) -> Result<bool, ImportError> {
        let row = self.position;
        let prefix = match self.layout {
            Layout::Json => return self.read_json_row(out),
            Layout::Flat { rows } if row >= rows => return Ok(false),
            Layout::Flat { .. } => 0,
            Layout::Vecs => 4,
        };
        // record_bytes is at most 4 + 4 * MAX_DIM.
        let n = self.read_row_bytes(self.record_bytes as usize, Some(row))?;
        if n == 0 && prefix > 0 {
            return Ok(false);
        }
        if prefix > 0 && n >= 4 {
            let got = i32::from_le_bytes(word(&self.row_buf, 0));
            if usize::try_from(got) != Ok(self.dim) {
                let message = format!("dimension {got}, expected {}", self.dim);
                return Err(self.fail(Some(row), message));
            }
        }
        if n < self.row_buf.len() {
            return Err(self.truncated(row, n));
        }
        let body = self.row_buf.get(prefix..).unwrap_or_default();
        if self.format.bytes_per_component() == 1 {
            out.vectors.extend(body.iter().map(|&b| f32::from(b)));
        } else {
            for (c, b) in body.chunks_exact(4).enumerate() {
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if !v.is_finite() {
                    return Err(self.fail(Some(row), non_finite(c, v)));
                }
                out.vectors.push(v);
            }
        }
        out.ids.push(row);
        out.payloads.push(None);
        self.position += 1;
        Ok(true)
    }

    /// Reads the next non-blank line into `line`, without its line ending;
    /// `false` at the end of the file.
    fn next_line(&mut self) -> Result<bool, ImportError> {
        loop {
            self.line.clear();
            let read = (&mut self.src)
                .take(MAX_LINE_BYTES + 1)
                .read_until(b'\n', &mut self.line);
            let n = read.map_err(|e| self.read_failed(Some(self.position), &e))?;
            if n == 0 {
                return Ok(false);
            }
            self.bytes_read += n as u64;
            self.line_no += 1;
            if n as u64 > MAX_LINE_BYTES {
                let message = format!(
                    "line {} is longer than {MAX_LINE_BYTES} bytes",
                    self.line_no
                );
                return Err(self.fail(Some(self.position), message));
            }
            while matches!(self.line.last(), Some(b'\n' | b'\r')) {
                self.line.pop();
            }
            if self.line_no == 1 && self.line.starts_with(UTF8_BOM) {
                self.line.drain(..UTF8_BOM.len());
            }
            if !self.line.iter().all(u8::is_ascii_whitespace) {
                return Ok(true);
            }
        }
    }

    /// Parses the next JSON Lines row into `out`; `false` at the end of the
    /// file. Learns the dimension from the first row.
    fn read_json_row(&mut self, out: &mut Batch) -> Result<bool, ImportError> {
        if let Some(first) = self.pending.take() {
            out.ids.extend(first.ids);
            out.vectors.extend(first.vectors);
            out.payloads.extend(first.payloads);
            self.position += 1;
            return Ok(true);
        }
        if !self.next_line()? {
            return Ok(false);
        }
        let row = self.position;
        let at_line = |message: String| {
            let line = format!("line {}: {message}", self.line_no);
            ImportError::new(&self.path, Some(row), line)
        };
        // Fields as their raw text, so that a payload is stored exactly as
        // written: its keys in their order, its numbers with every digit.
        let object = match serde_json::from_slice::<HashMap<String, Box<RawValue>>>(&self.line) {
            Ok(object) => object,
            // Parsed again only to word the error.
            Err(e) => {
                return Err(at_line(match serde_json::from_slice::<Value>(&self.line) {
                    Ok(other) => format!("expected a JSON object, found {}", kind(&other)),
                    Err(_) => invalid_json(&e),
                }))
            }
        };
        let field = |name: &str| -> Result<Option<Value>, ImportError> {
            object
                .get(name)
                .map(|raw| serde_json::from_str(raw.get()))
                .transpose()
                .map_err(|e| at_line(invalid_json(&e)))
        };
        let id = match &self.ids_field {
            None => row,
            Some(name) => match field(name)? {
                Some(v) => v.as_u64().ok_or_else(|| {
                    let found = shorten(v.to_string());
                    at_line(format!(
                        "\"{name}\" must be a non-negative integer, found {found}"
                    ))
                })?,
                None => return Err(at_line(format!("no \"{name}\" field for the id"))),
            },
        };
        let components = match field("vector")? {
            Some(Value::Array(components)) => components,
            Some(other) => {
                let found = kind(&other);
                return Err(at_line(format!(
                    "\"vector\" must be an array of numbers, found {found}"
                )));
            }
            None => return Err(at_line("no \"vector\" field".to_owned())),
        };
        let dim = if self.dim == 0 {
            check_dim(self.format, components.len() as i64).map_err(at_line)?
        } else if components.len() != self.dim {
            let message = format!(
                "\"vector\" has {} components, expected {}",
                components.len(),
                self.dim
            );
            return Err(at_line(message));
        } else {
            self.dim
        };
        for (c, x) in components.iter().enumerate() {
            let Some(wide) = x.as_f64() else {
                return Err(at_line(format!(
                    "component {c} is not a number: found {}",
                    kind(x)
                )));
            };
            // serde_json yields only finite f64, but it may not fit in an f32.
            let v = wide as f32;
            if !v.is_finite() {
                return Err(at_line(format!(
                    "component {c} ({wide:e}) is outside the f32 range"
                )));
            }
            out.vectors.push(v);
        }
        // A string is stored as its text; anything else as its JSON, byte
        // for byte as the line has it.
        let payload = match object.get("payload").map(|raw| raw.get()) {
            None | Some("null") => None,
            Some(raw) if raw.starts_with('"') => {
                let text: String =
                    serde_json::from_str(raw).map_err(|e| at_line(invalid_json(&e)))?;
                Some(text.into_bytes())
            }
            Some(raw) => Some(raw.as_bytes().to_vec()),
        };
        self.dim = dim;
        out.ids.push(id);
        out.payloads.push(payload);
        self.position += 1;
        Ok(true)
    }
}

/// The error for `path`, a file of `file_dim`-d vectors, given to a database
/// of `db_dim`-d ones.
pub fn dim_mismatch(path: &Path, file_dim: usize, db_dim: usize) -> ImportError {
    let message = format!("holds {file_dim}-d vectors but the database stores {db_dim}-d ones");
    ImportError::new(path, None, message)
}

/// Reads an `.ivecs` file (ground truth): one `Vec<u32>` per row.
///
/// # Errors
/// An unreadable or truncated file, a row length outside `0..=2^20`, or a
/// negative id.
pub fn read_ivecs(path: &Path) -> Result<Vec<Vec<u32>>, ImportError> {
    let fail = |row: usize, message: String| ImportError::new(path, Some(row as u64), message);
    let file =
        File::open(path).map_err(|e| ImportError::new(path, None, format!("cannot open: {e}")))?;
    let mut src = BufReader::with_capacity(BUFFER_BYTES, file);
    let mut rows = Vec::new();
    let mut buf = Vec::new();
    loop {
        let row = rows.len();
        let mut head = [0u8; 4];
        let n =
            read_full(&mut src, &mut head).map_err(|e| fail(row, format!("read failed: {e}")))?;
        if n == 0 {
            return Ok(rows);
        }
        if n < 4 {
            return Err(fail(
                row,
                format!("truncated: the file ends {n} bytes into this row"),
            ));
        }
        let count = i32::from_le_bytes(head);
        let Some(len) = usize::try_from(count).ok().filter(|&l| l <= MAX_DIM) else {
            return Err(fail(
                row,
                format!("length {count} is not between 0 and {MAX_DIM}"),
            ));
        };
        buf.resize(len * 4, 0);
        let n =
            read_full(&mut src, &mut buf).map_err(|e| fail(row, format!("read failed: {e}")))?;
        if n < buf.len() {
            let message = format!(
                "truncated: the file ends {} bytes into this row of {} bytes",
                4 + n,
                4 + buf.len()
            );
            return Err(fail(row, message));
        }
        let ids = buf
            .chunks_exact(4)
            .enumerate()
            .map(|(c, b)| {
                let id = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                u32::try_from(id)
                    .map_err(|_| fail(row, format!("component {c} is a negative id ({id})")))
            })
            .collect::<Result<Vec<u32>, _>>()?;
        rows.push(ids);
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The four bytes at `at`, zeros where `bytes` is shorter (callers check the
/// length first; this only keeps a bad offset from panicking).
fn word(bytes: &[u8], at: usize) -> [u8; 4] {
    let mut w = [0; 4];
    if let Some(s) = at.checked_add(4).and_then(|end| bytes.get(at..end)) {
        w.copy_from_slice(s);
    }
    w
}

/// Checks a dimension read from a file.
fn check_dim(format: Format, dim: i64) -> Result<usize, String> {
    match usize::try_from(dim) {
        Ok(d) if (1..=MAX_DIM).contains(&d) => Ok(d),
        Ok(0) | Err(_) => Err(format!("dimension {dim}: must be at least 1")),
        Ok(_) => Err(format!(
            "dimension {dim} is larger than {MAX_DIM}: is this really a {format} file?"
        )),
    }
}

fn non_finite(component: usize, v: f32) -> String {
    let what = if v.is_nan() { "NaN" } else { "infinite" };
    format!("component {component} is {what} (Quiver stores only finite values)")
}

/// A JSON parse error as a message: the column, and serde's words without
/// its own "at line" (the caller names the line).
fn invalid_json(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let what = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    format!("invalid JSON at column {}: {what}", e.column())
}

/// A JSON value's kind, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Cuts text quoted from a file to a length fit for a one-line message.
fn shorten(text: String) -> String {
    const KEEP: usize = 60;
    if text.chars().count() <= KEEP {
        return text;
    }
    let mut short: String = text.chars().take(KEEP).collect();
    short.push_str("...");
    short
}

/// A Python literal from a `.npy` header. Dictionary entries keep the text
/// of their value, to quote in messages.
#[derive(Debug, PartialEq)]
enum Lit {
    Str(String),
    Int(i64),
    Bool(bool),
    /// A tuple or a list.
    Seq(Vec<Lit>),
    Dict(Vec<(Lit, Lit, String)>),
}

/// Parses the Python literals NumPy writes in `.npy` headers, with nesting
/// bounded so that a hostile header cannot exhaust the stack.
struct LitParser<'a> {
    text: &'a [u8],
    at: usize,
    depth: usize,
}

impl LitParser<'_> {
    const MAX_DEPTH: usize = 16;

    /// The next byte that is not whitespace, left unconsumed.
    fn peek(&mut self) -> Option<u8> {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn value(&mut self) -> Result<Lit, String> {
        if self.depth >= Self::MAX_DEPTH {
            return Err("nested too deeply".to_owned());
        }
        self.depth += 1;
        let value = match self.peek() {
            Some(open @ (b'{' | b'(' | b'[')) => self.seq(open),
            Some(quote @ (b'\'' | b'"')) => self.string(quote),
            Some(_) => self.atom(),
            None => Err("it ends early".to_owned()),
        };
        self.depth -= 1;
        value
    }

    /// A tuple, list or dictionary, from its opening bracket.
    fn seq(&mut self, open: u8) -> Result<Lit, String> {
        let close = match open {
            b'{' => b'}',
            b'(' => b')',
            _ => b']',
        };
        self.at += 1;
        let (mut items, mut entries) = (Vec::new(), Vec::new());
        while !self.eat(close) {
            let item = self.value()?;
            if open == b'{' {
                if !self.eat(b':') {
                    return Err(format!("expected ':' at byte {}", self.at));
                }
                self.peek();
                let start = self.at;
                let value = self.value()?;
                let text = self.text.get(start..self.at).unwrap_or_default();
                entries.push((item, value, String::from_utf8_lossy(text).into_owned()));
            } else {
                items.push(item);
            }
            if !self.eat(b',') && self.peek() != Some(close) {
                let close = char::from(close);
                return Err(format!("expected ',' or '{close}' at byte {}", self.at));
            }
        }
        Ok(if open == b'{' {
            Lit::Dict(entries)
        } else {
            Lit::Seq(items)
        })
    }

    fn string(&mut self, quote: u8) -> Result<Lit, String> {
        let mut bytes = Vec::new();
        loop {
            self.at += 1;
            match self.text.get(self.at) {
                None => return Err("unterminated string".to_owned()),
                Some(&b) if b == quote => break,
                Some(b'\\') => {
                    self.at += 1;
                    bytes.extend(self.text.get(self.at));
                }
                Some(&b) => bytes.push(b),
            }
        }
        self.at += 1;
        Ok(Lit::Str(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// `True`, `False` or an integer (Python 2 wrote shapes as `(1000L, 128L)`).
    fn atom(&mut self) -> Result<Lit, String> {
        let start = self.at;
        while self
            .text
            .get(self.at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-')
        {
            self.at += 1;
        }
        let token = self.text.get(start..self.at).unwrap_or_default();
        match token {
            b"True" => Ok(Lit::Bool(true)),
            b"False" => Ok(Lit::Bool(false)),
            _ => std::str::from_utf8(token)
                .ok()
                .and_then(|t| t.trim_end_matches(['L', 'l']).parse().ok())
                .map(Lit::Int)
                .ok_or_else(|| format!("unexpected text at byte {start}")),
        }
    }
}

/// Reads `(rows, dim)` from a `.npy` header dictionary, accepting only a
/// 2-D, C-order, little-endian float32 array.
fn parse_npy_header(text: &[u8]) -> Result<(u64, i64), String> {
    let malformed = |why: String| format!("malformed .npy header: {why}");
    let mut parser = LitParser {
        text,
        at: 0,
        depth: 0,
    };
    let Lit::Dict(entries) = parser.value().map_err(malformed)? else {
        return Err(malformed("not a dictionary".to_owned()));
    };
    if parser.peek().is_some() {
        return Err(malformed(format!(
            "text after the dictionary at byte {}",
            parser.at
        )));
    }
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, _, _)| matches!(k, Lit::Str(s) if s == key))
            .map(|(_, value, text)| (value, text))
            .ok_or_else(|| malformed(format!("no '{key}' key")))
    };
    let unsupported = |key: &str, text: &String| {
        let found = shorten(text.clone());
        format!("only 2-D little-endian float32 .npy is supported, found {key} {found}")
    };
    let (descr, text) = get("descr")?;
    if !matches!(descr, Lit::Str(s) if s == "<f4") {
        return Err(unsupported("descr", text));
    }
    let (fortran_order, text) = get("fortran_order")?;
    if *fortran_order != Lit::Bool(false) {
        return Err(unsupported("fortran_order", text));
    }
    let (shape, text) = get("shape")?;
    let Lit::Seq(dims) = shape else {
        return Err(unsupported("shape", text));
    };
    match dims.as_slice() {
        [Lit::Int(rows), Lit::Int(dim)] => u64::try_from(*rows)
            .map(|rows| (rows, *dim))
            .map_err(|_| malformed(format!("negative row count in shape {text}"))),
        _ => Err(unsupported("shape", text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    const FLOATS: [[f32; 3]; 5] = [
        [1.0, 2.0, 3.0],
        [4.0, 5.5, -6.0],
        [0.0, -0.25, 1e-3],
        [7.0, 8.0, 9.0],
        [1e30, -1e-30, 0.1],
    ];
    const BYTES: [[u8; 3]; 5] = [[1, 2, 3], [4, 5, 6], [0, 128, 255], [7, 8, 9], [10, 11, 12]];

    fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// `.fvecs` (or, with `byte_rows`, `.bvecs`) bytes: per row its length, then its components.
    fn vecs(float_rows: &[&[f32]], byte_rows: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for row in float_rows {
            out.extend((row.len() as i32).to_le_bytes());
            out.extend(f32_bytes(row));
        }
        for row in byte_rows {
            out.extend((row.len() as i32).to_le_bytes());
            out.extend(*row);
        }
        out
    }

    fn bin(rows: u32, dim: u32, body: &[u8]) -> Vec<u8> {
        [&rows.to_le_bytes()[..], &dim.to_le_bytes(), body].concat()
    }

    /// A version 1.0 `.npy` file with the header dictionary `dict`, padded as NumPy pads it.
    fn npy(dict: &str, body: &[u8]) -> Vec<u8> {
        let mut header = dict.to_owned();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let len = (header.len() as u16).to_le_bytes();
        [NPY_MAGIC, &[1, 0], &len, header.as_bytes(), body].concat()
    }

    fn npy_dict(descr: &str, shape: &str) -> String {
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
    }

    fn json_line(row: &[f32]) -> String {
        serde_json::json!({ "vector": row }).to_string()
    }

    /// One well-formed file per format, with the components it holds.
    fn good_files(dir: &TempDir) -> Vec<(PathBuf, Vec<f32>)> {
        let floats: Vec<f32> = FLOATS.concat();
        let bytes: Vec<u8> = BYTES.concat();
        let bytes_as_f32: Vec<f32> = bytes.iter().map(|&b| f32::from(b)).collect();
        let float_rows: Vec<&[f32]> = FLOATS.iter().map(|r| &r[..]).collect();
        let byte_rows: Vec<&[u8]> = BYTES.iter().map(|r| &r[..]).collect();
        let mut jsonl = String::from("\n");
        for row in &FLOATS {
            jsonl += &json_line(row);
            jsonl += "\r\n  \n";
        }
        vec![
            (
                write(dir, "a.fvecs", &vecs(&float_rows, &[])),
                floats.clone(),
            ),
            (
                write(dir, "a.bvecs", &vecs(&[], &byte_rows)),
                bytes_as_f32.clone(),
            ),
            (
                write(dir, "a.fbin", &bin(5, 3, &f32_bytes(&floats))),
                floats.clone(),
            ),
            (write(dir, "a.u8bin", &bin(5, 3, &bytes)), bytes_as_f32),
            (
                write(
                    dir,
                    "a.npy",
                    &npy(&npy_dict("<f4", "(5, 3)"), &f32_bytes(&floats)),
                ),
                floats.clone(),
            ),
            (write(dir, "a.jsonl", jsonl.as_bytes()), floats),
        ]
    }

    /// The error reading `path` to its end gives, at open or later.
    fn read_error(path: &Path, ids_field: Option<&str>) -> ImportError {
        match VectorReader::open(path, ids_field).and_then(|mut r| r.read_all()) {
            Ok(batch) => panic!("{path:?} read {} rows without an error", batch.ids.len()),
            Err(e) => e,
        }
    }

    #[test]
    fn every_format_round_trips_values_ids_and_dim() {
        let dir = TempDir::new().unwrap();
        for (path, want) in good_files(&dir) {
            let mut reader = VectorReader::open(&path, None).unwrap();
            assert_eq!(reader.dim(), 3, "{path:?}");
            let hint = (reader.format() != Format::Jsonl).then_some(5);
            assert_eq!(reader.rows_hint(), hint, "{path:?}");
            let all = reader.read_all().unwrap();
            assert_eq!(all.ids, [0, 1, 2, 3, 4], "{path:?}");
            assert_eq!(all.vectors, want, "{path:?}");
            assert_eq!(all.payloads, vec![None; 5], "{path:?}");
            assert_eq!(reader.bytes_read(), reader.total_bytes(), "{path:?}");
            assert_eq!(reader.next_batch(10, &mut Batch::default()).unwrap(), 0);
        }
    }

    #[test]
    fn next_batch_returns_at_most_max_rows_then_zero_at_the_end() {
        let dir = TempDir::new().unwrap();
        for (path, want) in good_files(&dir) {
            let mut reader = VectorReader::open(&path, None).unwrap();
            let mut batch = Batch::default();
            let mut ids: Vec<u64> = Vec::new();
            for expected in [2, 2, 1, 0] {
                assert_eq!(
                    reader.next_batch(2, &mut batch).unwrap(),
                    expected,
                    "{path:?}"
                );
                let first = ids.len() * 3;
                assert_eq!(batch.vectors, want[first..first + expected * 3], "{path:?}");
                ids.extend(&batch.ids);
            }
            assert_eq!(ids, [0, 1, 2, 3, 4], "{path:?}");
        }
    }

    #[test]
    fn skip_then_next_batch_gives_the_right_ids() {
        let dir = TempDir::new().unwrap();
        for (path, want) in good_files(&dir) {
            let mut reader = VectorReader::open(&path, None).unwrap();
            reader.skip(3).unwrap();
            assert_eq!(reader.position(), 3, "{path:?}");
            let rest = reader.read_all().unwrap();
            assert_eq!(rest.ids, [3, 4], "{path:?}");
            assert_eq!(rest.vectors, want[9..], "{path:?}");

            let mut reader = VectorReader::open(&path, None).unwrap();
            let mut batch = Batch::default();
            reader.next_batch(1, &mut batch).unwrap();
            reader.skip(2).unwrap();
            reader.next_batch(1, &mut batch).unwrap();
            assert_eq!((batch.ids[0], reader.position()), (3, 4), "{path:?}");
        }
    }

    #[test]
    fn skip_past_the_end_is_an_error() {
        let dir = TempDir::new().unwrap();
        for (path, _) in good_files(&dir) {
            let mut reader = VectorReader::open(&path, None).unwrap();
            let e = reader.skip(6).unwrap_err();
            assert!(e.message.contains("cannot skip 6 rows"), "{e}");
            let mut reader = VectorReader::open(&path, None).unwrap();
            reader.skip(5).unwrap();
            assert_eq!(reader.next_batch(10, &mut Batch::default()).unwrap(), 0);
        }
    }

    #[test]
    fn format_is_told_by_extension_in_any_case() {
        let cases = [
            ("a.FVECS", Format::Fvecs),
            ("b.u8bin", Format::U8bin),
            ("c.ndjson", Format::Jsonl),
        ];
        for (name, format) in cases {
            assert_eq!(Format::from_path(Path::new(name)).unwrap(), format);
        }
    }

    #[test]
    fn unknown_extension_lists_the_supported_ones() {
        for name in ["vectors.csv", "vectors"] {
            let e = VectorReader::open(Path::new(name), None).unwrap_err();
            assert!(
                e.message
                    .contains(".fvecs, .bvecs, .fbin, .u8bin, .npy, .jsonl, .ndjson"),
                "{e}"
            );
        }
    }

    #[test]
    fn ids_field_is_refused_outside_json_lines() {
        let dir = TempDir::new().unwrap();
        let path = write(&dir, "a.fvecs", &vecs(&[&[1.0]], &[]));
        let e = VectorReader::open(&path, Some("id")).unwrap_err();
        assert_eq!(e.message, "ids come from row numbers in .fvecs files");
    }

    #[test]
    fn jsonl_takes_ids_from_the_field_and_payloads_as_bytes() {
        let dir = TempDir::new().unwrap();
        let text = "\u{feff}{\"id\": 10, \"vector\": [1, 2], \"payload\": \"caf\u{e9}\"}\n\
                    {\"id\": 20, \"vector\": [3, 4], \"payload\": {\"a\": [1, true]}}\n\
                    {\"id\": 30, \"vector\": [5, 6], \"payload\": null}\n\
                    {\"vector\": [7, 8], \"id\": 40}";
        let path = write(&dir, "a.jsonl", text.as_bytes());
        let mut reader = VectorReader::open(&path, Some("id")).unwrap();
        let all = reader.read_all().unwrap();
        assert_eq!(all.ids, [10, 20, 30, 40]);
        assert_eq!(all.vectors, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        let payloads = [
            Some("caf\u{e9}".as_bytes().to_vec()),
            Some(br#"{"a": [1, true]}"#.to_vec()),
            None,
            None,
        ];
        assert_eq!(all.payloads, payloads);

        let mut reader = VectorReader::open(&path, None).unwrap();
        reader.skip(2).unwrap();
        assert_eq!(reader.read_all().unwrap().ids, [2, 3]);
    }

    #[test]
    fn jsonl_payload_is_kept_byte_for_byte() {
        let dir = TempDir::new().unwrap();
        let payloads = [
            r#"{"z": 1, "a": {"y": [], "b": null}}"#,
            r#"{"pi":3.14159265358979323846264338327950288,"big":123456789012345678901234567890}"#,
            r#"[1.0, 1e400, -0.0,  "é"]"#,
            "12345678901234567890123",
        ];
        let text: String = payloads
            .iter()
            .map(|p| format!("{{\"payload\":  {p} , \"vector\": [1]}}\n"))
            .collect();
        let path = write(&dir, "a.jsonl", text.as_bytes());
        let all = VectorReader::open(&path, None).unwrap().read_all().unwrap();
        let want: Vec<Option<Vec<u8>>> = payloads
            .iter()
            .map(|p| Some(p.as_bytes().to_vec()))
            .collect();
        assert_eq!(all.payloads, want);
    }

    #[test]
    fn empty_files_are_rejected() {
        let dir = TempDir::new().unwrap();
        for name in ["a.fvecs", "a.bvecs", "a.jsonl"] {
            let path = write(&dir, name, b"\n \n");
            let path = if name.ends_with("jsonl") {
                path
            } else {
                write(&dir, name, b"")
            };
            let e = VectorReader::open(&path, None).unwrap_err();
            assert!(e.message.starts_with("empty file"), "{e}");
        }
    }

    #[test]
    fn truncated_fvecs_names_the_row() {
        let dir = TempDir::new().unwrap();
        let rows: Vec<&[f32]> = FLOATS.iter().map(|r| &r[..]).collect();
        let bytes = vecs(&rows, &[]);
        let path = write(&dir, "a.fvecs", &bytes[..bytes.len() - 2]);
        let e = read_error(&path, None);
        assert_eq!(e.row, Some(4));
        assert_eq!(
            e.message,
            "truncated: the file ends 14 bytes into this row of 16 bytes"
        );
    }

    #[test]
    fn truncated_bvecs_names_the_row() {
        let dir = TempDir::new().unwrap();
        let rows: Vec<&[u8]> = BYTES.iter().map(|r| &r[..]).collect();
        let mut bytes = vecs(&[], &rows);
        bytes.extend([3, 0]);
        let e = read_error(&write(&dir, "a.bvecs", &bytes), None);
        assert_eq!(
            (e.row, e.message.starts_with("truncated")),
            (Some(5), true),
            "{e}"
        );
    }

    #[test]
    fn fbin_whose_size_disagrees_with_its_header_is_rejected_at_open() {
        let dir = TempDir::new().unwrap();
        let cases = [
            (
                "short.fbin",
                bin(5, 3, &[0; 56]),
                "truncated: the header promises 5 rows of dimension 3",
            ),
            ("long.fbin", bin(5, 3, &[0; 61]), "trailing bytes"),
            ("huge.u8bin", bin(u32::MAX, 1 << 20, &[]), "truncated"),
            ("header.fbin", vec![5, 0, 0, 0, 3], "truncated: 5 bytes"),
            (
                "zero.fbin",
                bin(5, 0, &[]),
                "dimension 0: must be at least 1",
            ),
        ];
        for (name, bytes, message) in cases {
            let e = VectorReader::open(&write(&dir, name, &bytes), None).unwrap_err();
            assert!(e.message.starts_with(message), "{e}");
        }
    }

    #[test]
    fn truncated_npy_is_rejected_at_open() {
        let dir = TempDir::new().unwrap();
        let bytes = npy(&npy_dict("<f4", "(5, 3)"), &[0; 59]);
        let e = VectorReader::open(&write(&dir, "a.npy", &bytes), None).unwrap_err();
        assert!(
            e.message
                .starts_with("truncated: the header promises 5 rows"),
            "{e}"
        );
        let e = VectorReader::open(&write(&dir, "b.npy", &bytes[..40]), None).unwrap_err();
        assert!(e.message.contains("longer than the file"), "{e}");
    }

    #[test]
    fn fvecs_row_with_another_dimension_names_the_row() {
        let dir = TempDir::new().unwrap();
        let path = write(
            &dir,
            "a.fvecs",
            &vecs(&[&[1.0, 2.0], &[3.0, 4.0], &[5.0]], &[]),
        );
        let e = read_error(&path, None);
        assert_eq!(
            e.to_string(),
            format!("{}: row 2: dimension 1, expected 2", path.display())
        );
    }

    #[test]
    fn fvecs_dimension_below_one_or_above_the_limit_is_rejected() {
        let dir = TempDir::new().unwrap();
        for dim in [0i32, -1, 1 << 21] {
            let e = read_error(&write(&dir, "a.fvecs", &dim.to_le_bytes()), None);
            assert!(e.message.starts_with(&format!("dimension {dim}")), "{e}");
        }
    }

    #[test]
    fn nan_in_fvecs_names_the_row_and_component() {
        let dir = TempDir::new().unwrap();
        let path = write(
            &dir,
            "a.fvecs",
            &vecs(&[&[1.0, 2.0, 3.0], &[1.0, 2.0, f32::NAN]], &[]),
        );
        let e = read_error(&path, None);
        let want = "row 1: component 2 is NaN (Quiver stores only finite values)";
        assert_eq!(e.to_string(), format!("{}: {want}", path.display()));
    }

    #[test]
    fn infinity_in_fbin_and_npy_is_rejected() {
        let dir = TempDir::new().unwrap();
        let body = f32_bytes(&[1.0, 2.0, 3.0, f32::NEG_INFINITY]);
        for path in [
            write(&dir, "a.fbin", &bin(2, 2, &body)),
            write(&dir, "a.npy", &npy(&npy_dict("<f4", "(2, 2)"), &body)),
        ] {
            let e = read_error(&path, None);
            assert_eq!(
                (e.row, e.message.as_str()),
                (
                    Some(1),
                    "component 1 is infinite (Quiver stores only finite values)"
                )
            );
        }
    }

    /// The error for a JSON Lines file whose second row is `line`.
    fn jsonl_error(line: &str, ids_field: Option<&str>) -> ImportError {
        let dir = TempDir::new().unwrap();
        let text = format!("{{\"id\": 1, \"vector\": [1, 2]}}\n\n{line}\n");
        let e = read_error(&write(&dir, "a.jsonl", text.as_bytes()), ids_field);
        assert_eq!(e.row, Some(1), "{e}");
        e
    }

    #[test]
    fn jsonl_bad_json_names_the_line() {
        let e = jsonl_error(r#"{"vector": [1, 2"#, None);
        assert!(
            e.message
                .starts_with("line 3: invalid JSON at column 16: EOF while parsing"),
            "{e}"
        );
        let e = jsonl_error("[1, 2]", None);
        assert_eq!(e.message, "line 3: expected a JSON object, found an array");
    }

    #[test]
    fn jsonl_vector_of_wrong_length_is_rejected() {
        let e = jsonl_error(r#"{"vector": [1, 2, 3]}"#, None);
        assert_eq!(e.message, "line 3: \"vector\" has 3 components, expected 2");
    }

    #[test]
    fn jsonl_non_number_component_is_rejected() {
        let e = jsonl_error(r#"{"vector": [1, "NaN"]}"#, None);
        assert_eq!(
            e.message,
            "line 3: component 1 is not a number: found a string"
        );
        let e = jsonl_error(r#"{"vector": [1, 1e39]}"#, None);
        assert_eq!(
            e.message,
            "line 3: component 1 (1e39) is outside the f32 range"
        );
    }

    #[test]
    fn jsonl_missing_vector_is_rejected() {
        let e = jsonl_error(r#"{"vectors": [1, 2]}"#, None);
        assert_eq!(e.message, "line 3: no \"vector\" field");
        let e = jsonl_error(r#"{"vector": "1, 2"}"#, None);
        assert_eq!(
            e.message,
            "line 3: \"vector\" must be an array of numbers, found a string"
        );
    }

    #[test]
    fn jsonl_ids_must_be_non_negative_integers() {
        for id in ["-1", "1.5", "\"7\""] {
            let e = jsonl_error(&format!(r#"{{"id": {id}, "vector": [1, 2]}}"#), Some("id"));
            assert_eq!(
                e.message,
                format!("line 3: \"id\" must be a non-negative integer, found {id}")
            );
        }
        let e = jsonl_error(r#"{"vector": [1, 2]}"#, Some("id"));
        assert_eq!(e.message, "line 3: no \"id\" field for the id");
    }

    #[test]
    fn npy_with_f8_dtype_is_rejected() {
        let dir = TempDir::new().unwrap();
        let path = write(&dir, "a.npy", &npy(&npy_dict("<f8", "(1, 2)"), &[0; 16]));
        let e = VectorReader::open(&path, None).unwrap_err();
        assert_eq!(
            e.message,
            "only 2-D little-endian float32 .npy is supported, found descr '<f8'"
        );
    }

    #[test]
    fn npy_other_than_2d_c_order_is_rejected() {
        let dir = TempDir::new().unwrap();
        let cases = [
            (npy_dict("<f4", "(8,)"), "found shape (8,)"),
            (npy_dict("<f4", "(2, 2, 2)"), "found shape (2, 2, 2)"),
            (npy_dict(">f4", "(2, 4)"), "found descr '>f4'"),
            (
                npy_dict("<f4", "(2, 4)").replace("False", "True"),
                "found fortran_order True",
            ),
        ];
        for (dict, found) in cases {
            let e =
                VectorReader::open(&write(&dir, "a.npy", &npy(&dict, &[0; 32])), None).unwrap_err();
            assert!(e.message.ends_with(found), "{e}");
        }
    }

    #[test]
    fn npy_version_2_and_python_2_headers_are_read() {
        let dir = TempDir::new().unwrap();
        let dict = "{\"shape\": (2L, 1L), 'fortran_order': False, 'descr': '<f4'}\n";
        let mut bytes = [NPY_MAGIC, &[2, 0], &(dict.len() as u32).to_le_bytes()].concat();
        bytes.extend(dict.as_bytes());
        bytes.extend(f32_bytes(&[0.5, -0.5]));
        let mut reader = VectorReader::open(&write(&dir, "a.npy", &bytes), None).unwrap();
        assert_eq!((reader.dim(), reader.rows_hint()), (1, Some(2)));
        assert_eq!(reader.read_all().unwrap().vectors, [0.5, -0.5]);
    }

    #[test]
    fn malformed_npy_headers_are_errors_not_panics() {
        let deep = "(".repeat(10_000);
        let headers = [
            "",
            "{",
            "{'descr': '<f4'",
            "{'descr' '<f4'}",
            "{'descr': '<f4' 'x': 1}",
            "[1, 2]",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 2)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 99999999999999999999)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2)} extra",
            "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1, 2)}",
            "{'descr': '\\",
            "{'descr': @}",
            &deep,
        ];
        for header in headers {
            assert!(parse_npy_header(header.as_bytes()).is_err(), "{header:?}");
        }
        assert_eq!(
            parse_npy_header(b"{'descr':'<f4','fortran_order':False,'shape':(3,4)}"),
            Ok((3, 4))
        );
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        let dir = TempDir::new().unwrap();
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (path, _) in good_files(&dir) {
            let good = std::fs::read(&path).unwrap();
            let name = path.file_name().unwrap().to_str().unwrap();
            let fixed_size = matches!(name, "a.fbin" | "a.u8bin" | "a.npy");
            for len in 0..good.len() {
                let outcome = VectorReader::open(&write(&dir, name, &good[..len]), None)
                    .and_then(|mut r| r.read_all());
                assert!(
                    !fixed_size || outcome.is_err(),
                    "{name} cut to {len} bytes was read"
                );
            }
            for _ in 0..300 {
                let mut bad = good.clone();
                let at = (next() % bad.len() as u64) as usize;
                bad[at] = next() as u8;
                let _ = VectorReader::open(&write(&dir, name, &bad), None)
                    .and_then(|mut r| r.read_all());
            }
        }
    }

    #[test]
    fn read_ivecs_reads_rows_of_any_length() {
        let dir = TempDir::new().unwrap();
        let ints = |v: &[i32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let path = write(&dir, "gt.ivecs", &ints(&[2, 7, 9, 0, 1, 4]));
        assert_eq!(read_ivecs(&path).unwrap(), [vec![7, 9], vec![], vec![4]]);
        let e = read_ivecs(&write(&dir, "gt.ivecs", &ints(&[1, 3, 2, 5, -1]))).unwrap_err();
        assert_eq!(
            (e.row, e.message.as_str()),
            (Some(1), "component 1 is a negative id (-1)")
        );
        let e = read_ivecs(&write(&dir, "gt.ivecs", &ints(&[1, 3, 2, 5]))).unwrap_err();
        assert_eq!(e.row, Some(1));
        assert!(e.message.starts_with("truncated"), "{e}");
        let e = read_ivecs(&write(&dir, "gt.ivecs", &ints(&[-2]))).unwrap_err();
        assert!(e.message.starts_with("length -2"), "{e}");
    }
}
