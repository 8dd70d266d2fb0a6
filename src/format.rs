//! On-disk constants and the column-file header.
//!
//! `docs/FORMAT.md` is the full description; the byte map of the header is
//! repeated here above the constants that encode it. Every integer is
//! little-endian. A header is decoded field by field from bytes and validated
//! before any region of the file is cast to `f32` or `u64`.
//!
//! ```text
//! column file  seg-<id:016x>.col
//! offset  size  field
//!      0     8  magic            b"\x89QVRCOL\n"
//!      8     4  format_version   u32 = 1
//!     12     4  dim              u32, > 0
//!     16     4  stride           u32, bytes per row = dim*4 rounded up to 64
//!     20     4  metric           u32, 0 = L2, 1 = inner product, 2 = cosine
//!     24     8  rows             u64
//!     32     8  segment_id       u64, the manifest key of this file
//!     40     8  ids_offset       u64 = 64 + rows*stride
//!     48     4  vectors_crc      u32, crc32 of bytes [64, ids_offset)
//!     52     4  ids_crc          u32, crc32 of bytes [ids_offset, ids_offset + rows*8)
//!     56     4  reserved         u32 = 0
//!     60     4  header_crc       u32, crc32 of bytes [0, 60)
//!     64        vectors: rows x stride bytes, row r at 64 + r*stride,
//!               dim f32 values then zero padding
//! ids_offset    ids: rows x u64, the user id of row r at ids_offset + r*8
//! ```

use crate::options::Metric;

#[cfg(not(target_endian = "little"))]
compile_error!("Quiver reads its files in place and supports little-endian targets only");

/// Version of the column-file format written by this build (links files
/// have their own, [`LINKS_VERSION`](crate::graph::LINKS_VERSION)).
pub const FORMAT_VERSION: u32 = 1;

/// Version of the manifest (`config["format_version"]` in `quiver.redb`)
/// written by this build. Version 2 added a checksum to every entry, and
/// version 3 the `aliases` table (a merge keeps its largest input's rows
/// where the `ids` table points at them). This build reads versions 1 and 2
/// too, and a writer upgrades them when it opens them.
pub const MANIFEST_VERSION: u64 = 3;

/// Magic bytes at the start of a column file. The high byte and the newline
/// catch files mangled by 7-bit or text-mode transfers, as PNG's magic does.
pub const COLUMN_MAGIC: [u8; 8] = *b"\x89QVRCOL\n";

/// Size of the column-file header; also where the vectors begin.
pub const HEADER_LEN: usize = 64;

/// Rows are padded to a multiple of this many bytes.
pub const ROW_ALIGN: usize = 64;

const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 8;
const DIM_AT: usize = VERSION_AT + 4;
const STRIDE_AT: usize = DIM_AT + 4;
const METRIC_AT: usize = STRIDE_AT + 4;
const ROWS_AT: usize = METRIC_AT + 4;
const SEGMENT_AT: usize = ROWS_AT + 8;
const IDS_OFFSET_AT: usize = SEGMENT_AT + 8;
const VECTORS_CRC_AT: usize = IDS_OFFSET_AT + 8;
const IDS_CRC_AT: usize = VECTORS_CRC_AT + 4;
const RESERVED_AT: usize = IDS_CRC_AT + 4;
const HEADER_CRC_AT: usize = RESERVED_AT + 4;
const _: () = assert!(HEADER_CRC_AT + 4 == HEADER_LEN);

/// Bytes per stored row for vectors of `dim` values.
pub fn row_stride(dim: usize) -> usize {
    (dim * 4).div_ceil(ROW_ALIGN) * ROW_ALIGN
}

/// The decoded, validated header of a column file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnHeader {
    /// Values per vector.
    pub dim: u32,
    /// Bytes per row.
    pub stride: u32,
    /// Metric the rows were prepared for (cosine rows are unit length).
    pub metric: Metric,
    /// Number of rows.
    pub rows: u64,
    /// The segment this file belongs to.
    pub segment_id: u64,
    /// crc32 of the vector region.
    pub vectors_crc: u32,
    /// crc32 of the id region.
    pub ids_crc: u32,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The version is newer than this build reads.
    NewerVersion(u32),
    /// Anything else: the file is damaged or is not a column file.
    Invalid(String),
}

impl ColumnHeader {
    /// Offset of the id region.
    pub fn ids_offset(&self) -> u64 {
        HEADER_LEN as u64 + self.rows * u64::from(self.stride)
    }

    /// Total file length implied by the header.
    pub fn file_len(&self) -> u64 {
        self.ids_offset() + self.rows * 8
    }

    /// Encodes the header, computing its own checksum.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[MAGIC_AT..VERSION_AT].copy_from_slice(&COLUMN_MAGIC);
        b[VERSION_AT..DIM_AT].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[DIM_AT..STRIDE_AT].copy_from_slice(&self.dim.to_le_bytes());
        b[STRIDE_AT..METRIC_AT].copy_from_slice(&self.stride.to_le_bytes());
        b[METRIC_AT..ROWS_AT].copy_from_slice(&self.metric.code().to_le_bytes());
        b[ROWS_AT..SEGMENT_AT].copy_from_slice(&self.rows.to_le_bytes());
        b[SEGMENT_AT..IDS_OFFSET_AT].copy_from_slice(&self.segment_id.to_le_bytes());
        b[IDS_OFFSET_AT..VECTORS_CRC_AT].copy_from_slice(&self.ids_offset().to_le_bytes());
        b[VECTORS_CRC_AT..IDS_CRC_AT].copy_from_slice(&self.vectors_crc.to_le_bytes());
        b[IDS_CRC_AT..RESERVED_AT].copy_from_slice(&self.ids_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..HEADER_CRC_AT]);
        b[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates the header at the start of `file`, and checks that
    /// the file is exactly as long as the header says. Does not read the regions.
    pub fn decode(file: &[u8]) -> Result<ColumnHeader, HeaderError> {
        let bad = |what: String| Err(HeaderError::Invalid(what));
        let Some(b) = file.get(..HEADER_LEN) else {
            return bad(format!(
                "file is {} bytes, shorter than the {HEADER_LEN}-byte header",
                file.len()
            ));
        };
        if b[MAGIC_AT..VERSION_AT] != COLUMN_MAGIC {
            return bad("bad magic: not a Quiver column file".into());
        }
        let version = u32_at(b, VERSION_AT);
        let stored_crc = u32_at(b, HEADER_CRC_AT);
        if crc32fast::hash(&b[..HEADER_CRC_AT]) != stored_crc {
            return bad("header checksum mismatch".into());
        }
        if version > FORMAT_VERSION {
            return Err(HeaderError::NewerVersion(version));
        }
        if version == 0 {
            return bad("format version 0".into());
        }
        let dim = u32_at(b, DIM_AT);
        let stride = u32_at(b, STRIDE_AT);
        let Some(metric) = Metric::from_code(u32_at(b, METRIC_AT)) else {
            return bad(format!("unknown metric code {}", u32_at(b, METRIC_AT)));
        };
        if dim == 0 || stride as usize != row_stride(dim as usize) {
            return bad(format!("dimension {dim} and row stride {stride} disagree"));
        }
        if u32_at(b, RESERVED_AT) != 0 {
            return bad("reserved field is not zero".into());
        }
        let header = ColumnHeader {
            dim,
            stride,
            metric,
            rows: u64_at(b, ROWS_AT),
            segment_id: u64_at(b, SEGMENT_AT),
            vectors_crc: u32_at(b, VECTORS_CRC_AT),
            ids_crc: u32_at(b, IDS_CRC_AT),
        };
        let ids_offset = u64_at(b, IDS_OFFSET_AT);
        let expected_len = header
            .rows
            .checked_mul(u64::from(stride) + 8)
            .and_then(|n| n.checked_add(HEADER_LEN as u64));
        if expected_len.is_none() || ids_offset != header.ids_offset() {
            return bad(format!(
                "row count {} does not fit the id offset {ids_offset}",
                header.rows
            ));
        }
        if file.len() as u64 != header.file_len() {
            return bad(format!(
                "file is {} bytes, header says {}",
                file.len(),
                header.file_len()
            ));
        }
        Ok(header)
    }
}

/// The little-endian `u32` at `at` (the caller checked the bounds).
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// The little-endian `u64` at `at` (the caller checked the bounds).
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// File name of a segment's column file.
pub fn column_file_name(segment_id: u64) -> String {
    format!("seg-{segment_id:016x}.col")
}

/// File name of a segment's links (HNSW graph) file.
pub fn links_file_name(segment_id: u64) -> String {
    format!("seg-{segment_id:016x}.hnsw")
}

/// The segment id named by a column or links file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_prefix("seg-")?;
    let hex = stem
        .strip_suffix(".col")
        .or_else(|| stem.strip_suffix(".hnsw"))?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Suffix of files being written that are not yet published.
pub const TMP_SUFFIX: &str = ".tmp";

/// Name of the manifest file.
pub const MANIFEST_FILE: &str = "quiver.redb";

/// Name of the lock file.
pub const LOCK_FILE: &str = "LOCK";

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rows: u64) -> (ColumnHeader, Vec<u8>) {
        let h = ColumnHeader {
            dim: 3,
            stride: row_stride(3) as u32,
            metric: Metric::L2,
            rows,
            segment_id: 9,
            vectors_crc: 1,
            ids_crc: 2,
        };
        let mut file = h.encode().to_vec();
        file.resize(h.file_len() as usize, 0);
        (h, file)
    }

    #[test]
    fn header_round_trips() {
        let (h, file) = sample(5);
        assert_eq!(ColumnHeader::decode(&file), Ok(h));
    }

    #[test]
    fn every_flipped_header_byte_is_refused() {
        let (_, file) = sample(2);
        for i in 0..HEADER_LEN {
            let mut bad = file.clone();
            bad[i] ^= 0x10;
            assert!(
                ColumnHeader::decode(&bad).is_err(),
                "flip at byte {i} accepted"
            );
        }
    }

    #[test]
    fn truncated_and_extended_files_are_refused() {
        let (_, file) = sample(2);
        assert!(ColumnHeader::decode(&file[..file.len() - 1]).is_err());
        assert!(ColumnHeader::decode(&file[..10]).is_err());
        let mut longer = file.clone();
        longer.push(0);
        assert!(ColumnHeader::decode(&longer).is_err());
    }

    #[test]
    fn newer_version_is_reported_as_such() {
        let (_, mut file) = sample(1);
        file[VERSION_AT..VERSION_AT + 4].copy_from_slice(&7u32.to_le_bytes());
        let crc = crc32fast::hash(&file[..HEADER_CRC_AT]);
        file[HEADER_CRC_AT..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            ColumnHeader::decode(&file),
            Err(HeaderError::NewerVersion(7))
        );
    }

    #[test]
    fn stride_is_64_byte_aligned() {
        assert_eq!(row_stride(1), 64);
        assert_eq!(row_stride(16), 64);
        assert_eq!(row_stride(17), 128);
        assert_eq!(row_stride(384), 1536);
    }

    #[test]
    fn segment_file_names_round_trip() {
        assert_eq!(
            parse_segment_file_name(&column_file_name(0xabc)),
            Some(0xabc)
        );
        assert_eq!(
            parse_segment_file_name(&links_file_name(0xabc)),
            Some(0xabc)
        );
        assert_eq!(parse_segment_file_name("seg-12.col"), None);
        assert_eq!(parse_segment_file_name("quiver.redb"), None);
        assert_eq!(parse_segment_file_name("seg-+000000000000002.col"), None);
        assert_eq!(parse_segment_file_name("seg-000000000000000A.col"), None);
    }
}
