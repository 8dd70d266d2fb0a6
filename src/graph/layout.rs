//! The persisted links file: [`Graph::encode`], and [`GraphView::decode`],
//! which validates every byte that matters and then reads the links in place.
//!
//! Level 0 is what a search spends its time in, so every node gets one
//! fixed-size slot there, found by multiplication and read in one contiguous
//! load. The few nodes (about one in `m`) with upper levels are listed apart:
//! an index sorted by node, each entry pointing into a packed region of
//! fixed-size per-level lists.
//!
//! Every integer is little-endian. The header is decoded field by field; the
//! regions are cast (through bytemuck, which checks size and alignment) only
//! after every offset, length and checksum has been checked, and the links are
//! then checked too, so a search over a decoded view never indexes out of
//! bounds whatever the file held.
//!
//! ```text
//! links file
//! offset  size  field
//!      0     8  magic              b"\x89QVRLNK\n"
//!      8     4  format_version     u32 = 1
//!     12     4  m                  u32, 2..=MAX_M; level 0 holds up to 2m links, upper levels m
//!     16     4  nodes              u32, rows the graph indexes
//!     20     4  entry_point        u32, < nodes; u32::MAX iff nodes = 0
//!     24     4  max_level          u32, ≤ MAX_LEVEL, the entry point's level; 0 iff no upper nodes
//!     28     4  slot_len           u32 = (1 + 2m)·4 rounded up to 64
//!     32     4  upper_nodes        u32, nodes with a level above 0
//!     36     4  reserved           u32 = 0
//!     40     8  level0_offset      u64 = 128
//!     48     8  level0_len         u64 = nodes·slot_len
//!     56     8  upper_index_offset u64 = level0_offset + level0_len rounded up to 64
//!     64     8  upper_index_len    u64 = upper_nodes·16
//!     72     8  upper_links_offset u64 = upper_index_offset + upper_index_len rounded up to 64
//!     80     8  upper_links_len    u64 = 4·Σ levels·(m + 1) over the upper nodes
//!     88     4  level0_crc         u32, crc32 of the level-0 region
//!     92     4  upper_index_crc    u32, crc32 of the upper index region
//!     96     4  upper_links_crc    u32, crc32 of the upper links region
//!    100    24  reserved           zero
//!    124     4  header_crc         u32, crc32 of bytes [0, 124)
//!    128        level-0 region: node r's slot at 128 + r·slot_len, holding
//!               count: u32 (≤ 2m), then 2m u32 neighbour rows (the first
//!               `count` used), then zero padding to slot_len
//!               zero padding to a multiple of 64
//! upper_index_offset
//!               upper index: upper_nodes entries of 16 bytes, sorted by node:
//!               node: u32, levels: u32 (1..=max_level), start: u64 (in u32
//!               units into the upper links region; entries are packed back to
//!               back, so start is the running sum of levels·(m + 1))
//!               zero padding to a multiple of 64
//! upper_links_offset
//!               upper links: for each upper node, for level 1..=levels:
//!               count: u32 (≤ m), then m u32 neighbour rows (the first
//!               `count` used); a neighbour at level l has a level ≥ l
//! end of file = upper_links_offset + upper_links_len
//! ```
//!
//! The regions start at multiples of 64 from the start of the file; the file
//! is read in place from a buffer aligned to at least 8 bytes (a mapping is
//! page aligned), which `decode` checks rather than assumes.

use super::build::Graph;
use crate::format::{u32_at, u64_at};
use bytemuck::{Pod, Zeroable};

/// Magic bytes at the start of a links file (PNG-style: the high byte and the
/// newline catch files mangled by 7-bit or text-mode transfers).
pub const LINKS_MAGIC: [u8; 8] = *b"\x89QVRLNK\n";

/// Version of the links format written by this build.
pub const LINKS_VERSION: u32 = 1;

/// Size of the links-file header; also where the level-0 region begins.
pub const LINKS_HEADER_LEN: usize = 128;

/// Regions (and level-0 slots) start at multiples of this many bytes.
pub const REGION_ALIGN: usize = 64;

/// Largest `m` a links file may hold (level 0 then holds up to 2048 links).
pub const MAX_M: usize = 1024;

/// Highest level a node may have.
pub const MAX_LEVEL: u8 = 31;

/// The entry point stored for an empty graph.
const NO_ENTRY: u32 = u32::MAX;

const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 8;
const M_AT: usize = VERSION_AT + 4;
const NODES_AT: usize = M_AT + 4;
const ENTRY_AT: usize = NODES_AT + 4;
const MAX_LEVEL_AT: usize = ENTRY_AT + 4;
const SLOT_LEN_AT: usize = MAX_LEVEL_AT + 4;
const UPPER_NODES_AT: usize = SLOT_LEN_AT + 4;
const RESERVED0_AT: usize = UPPER_NODES_AT + 4;
const LEVEL0_OFFSET_AT: usize = RESERVED0_AT + 4;
const LEVEL0_LEN_AT: usize = LEVEL0_OFFSET_AT + 8;
const UPPER_INDEX_OFFSET_AT: usize = LEVEL0_LEN_AT + 8;
const UPPER_INDEX_LEN_AT: usize = UPPER_INDEX_OFFSET_AT + 8;
const UPPER_LINKS_OFFSET_AT: usize = UPPER_INDEX_LEN_AT + 8;
const UPPER_LINKS_LEN_AT: usize = UPPER_LINKS_OFFSET_AT + 8;
const LEVEL0_CRC_AT: usize = UPPER_LINKS_LEN_AT + 8;
const UPPER_INDEX_CRC_AT: usize = LEVEL0_CRC_AT + 4;
const UPPER_LINKS_CRC_AT: usize = UPPER_INDEX_CRC_AT + 4;
const RESERVED1_AT: usize = UPPER_LINKS_CRC_AT + 4;
const HEADER_CRC_AT: usize = RESERVED1_AT + 24;
const _: () = assert!(HEADER_CRC_AT + 4 == LINKS_HEADER_LEN);
const _: () = assert!(LINKS_HEADER_LEN.is_multiple_of(REGION_ALIGN));
const _: () = assert!(std::mem::size_of::<UpperEntry>() == UPPER_ENTRY_LEN);

/// Bytes per upper-index entry.
const UPPER_ENTRY_LEN: usize = 16;

/// Why a links file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinksError {
    /// The file is in a newer format than this build reads; upgrade Quiver.
    #[error("links file format version {0} is newer than this build reads")]
    NewerVersion(u32),
    /// The file is damaged or is not a links file; rebuild the graph.
    #[error("invalid links file: {0}")]
    Invalid(String),
}

/// One entry of the upper index, as stored.
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct UpperEntry {
    /// The node (row).
    node: u32,
    /// Its level, ≥ 1: it has lists for levels `1..=levels`.
    levels: u32,
    /// Where its level-1 list starts, in `u32` units into the upper links.
    start: u64,
}

/// Bytes of one level-0 slot for `m`.
pub(crate) fn slot_len(m: usize) -> usize {
    ((1 + 2 * m) * 4).div_ceil(REGION_ALIGN) * REGION_ALIGN
}

fn align_up(x: u64) -> Option<u64> {
    x.checked_next_multiple_of(REGION_ALIGN as u64)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_at(out: &mut [u8], at: usize, v: &[u8]) {
    out[at..at + v.len()].copy_from_slice(v);
}

fn pad_to(out: &mut Vec<u8>, len: usize) {
    out.resize(len, 0);
}

fn to_u32(x: usize) -> u32 {
    u32::try_from(x).expect("graph sizes fit u32 (checked by build)")
}

impl Graph {
    /// Encodes the graph as a links file (see the byte map in this module).
    ///
    /// Read it back with [`GraphView::decode`] from a buffer aligned to at
    /// least 8 bytes, e.g. a memory map of the file.
    pub fn encode(&self) -> Vec<u8> {
        let m = self.m;
        let nodes = self.links.len();
        let slot = slot_len(m);
        let upper: Vec<u32> = (0..nodes)
            .filter(|&r| self.links[r].len() > 1)
            .map(to_u32)
            .collect();
        let upper_u32s: usize = upper
            .iter()
            .map(|&r| (self.links[r as usize].len() - 1) * (m + 1))
            .sum();

        let level0_off = LINKS_HEADER_LEN;
        let level0_len = nodes * slot;
        let index_off = (level0_off + level0_len).next_multiple_of(REGION_ALIGN);
        let index_len = upper.len() * UPPER_ENTRY_LEN;
        let links_off = (index_off + index_len).next_multiple_of(REGION_ALIGN);
        let links_len = upper_u32s * 4;
        let total = links_off + links_len;

        let mut out = Vec::with_capacity(total);
        pad_to(&mut out, LINKS_HEADER_LEN);
        for lists in &self.links {
            let start = out.len();
            let list = lists.first().map_or(&[][..], Vec::as_slice);
            debug_assert!(list.len() <= 2 * m);
            put_u32(&mut out, to_u32(list.len()));
            list.iter().for_each(|&n| put_u32(&mut out, n));
            pad_to(&mut out, start + slot);
        }
        pad_to(&mut out, index_off);
        let mut start = 0u64;
        for &r in &upper {
            let levels = self.links[r as usize].len() - 1;
            put_u32(&mut out, r);
            put_u32(&mut out, to_u32(levels));
            out.extend_from_slice(&start.to_le_bytes());
            start += (levels * (m + 1)) as u64;
        }
        pad_to(&mut out, links_off);
        for &r in &upper {
            for list in &self.links[r as usize][1..] {
                let at = out.len();
                debug_assert!(list.len() <= m);
                put_u32(&mut out, to_u32(list.len()));
                list.iter().for_each(|&n| put_u32(&mut out, n));
                pad_to(&mut out, at + (m + 1) * 4);
            }
        }
        debug_assert_eq!(out.len(), total);

        let crc = |off: usize, len: usize| crc32fast::hash(&out[off..off + len]);
        let (level0_crc, index_crc, links_crc) = (
            crc(level0_off, level0_len),
            crc(index_off, index_len),
            crc(links_off, links_len),
        );
        let h = &mut out[..LINKS_HEADER_LEN];
        put_at(h, MAGIC_AT, &LINKS_MAGIC);
        put_at(h, VERSION_AT, &LINKS_VERSION.to_le_bytes());
        put_at(h, M_AT, &to_u32(m).to_le_bytes());
        put_at(h, NODES_AT, &to_u32(nodes).to_le_bytes());
        put_at(h, ENTRY_AT, &self.entry.unwrap_or(NO_ENTRY).to_le_bytes());
        put_at(h, MAX_LEVEL_AT, &u32::from(self.max_level).to_le_bytes());
        put_at(h, SLOT_LEN_AT, &to_u32(slot).to_le_bytes());
        put_at(h, UPPER_NODES_AT, &to_u32(upper.len()).to_le_bytes());
        for (at, v) in [
            (LEVEL0_OFFSET_AT, level0_off),
            (LEVEL0_LEN_AT, level0_len),
            (UPPER_INDEX_OFFSET_AT, index_off),
            (UPPER_INDEX_LEN_AT, index_len),
            (UPPER_LINKS_OFFSET_AT, links_off),
            (UPPER_LINKS_LEN_AT, links_len),
        ] {
            put_at(h, at, &(v as u64).to_le_bytes());
        }
        put_at(h, LEVEL0_CRC_AT, &level0_crc.to_le_bytes());
        put_at(h, UPPER_INDEX_CRC_AT, &index_crc.to_le_bytes());
        put_at(h, UPPER_LINKS_CRC_AT, &links_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&h[..HEADER_CRC_AT]);
        put_at(h, HEADER_CRC_AT, &header_crc.to_le_bytes());
        out
    }
}

/// A links file's decoded header, kept to make views of the same bytes
/// again cheaply (see [`GraphView::reopen`]).
#[derive(Debug, Clone, Copy)]
pub struct LinksLayout(LinksHeader);

/// The decoded, validated header.
#[derive(Debug, Clone, Copy)]
struct LinksHeader {
    m: usize,
    nodes: usize,
    entry: Option<u32>,
    max_level: u8,
    slot_len: usize,
    upper_nodes: usize,
    level0: (usize, usize),
    upper_index: (usize, usize),
    upper_links: (usize, usize),
    level0_crc: u32,
    upper_index_crc: u32,
    upper_links_crc: u32,
}

fn invalid<T>(what: impl Into<String>) -> Result<T, LinksError> {
    Err(LinksError::Invalid(what.into()))
}

impl LinksHeader {
    /// Decodes the header and checks it against itself and the buffer length.
    /// Reads nothing past the header.
    fn decode(file: &[u8]) -> Result<LinksHeader, LinksError> {
        let Some(b) = file.get(..LINKS_HEADER_LEN) else {
            return invalid(format!(
                "file is {} bytes, shorter than the {LINKS_HEADER_LEN}-byte header",
                file.len()
            ));
        };
        if b[MAGIC_AT..VERSION_AT] != LINKS_MAGIC {
            return invalid("bad magic: not a Quiver links file");
        }
        // The version comes before the checksum: a newer format may lay its
        // header out differently, and deserves "upgrade", not "corrupt".
        let version = u32_at(b, VERSION_AT);
        if version > LINKS_VERSION {
            return Err(LinksError::NewerVersion(version));
        }
        if crc32fast::hash(&b[..HEADER_CRC_AT]) != u32_at(b, HEADER_CRC_AT) {
            return invalid("header checksum mismatch");
        }
        if version == 0 {
            return invalid("format version 0");
        }
        if u32_at(b, RESERVED0_AT) != 0 || b[RESERVED1_AT..HEADER_CRC_AT].iter().any(|&x| x != 0) {
            return invalid("reserved header bytes are not zero");
        }

        let m = u32_at(b, M_AT) as usize;
        if !(2..=MAX_M).contains(&m) {
            return invalid(format!("m = {m} is outside 2..={MAX_M}"));
        }
        let slot = u32_at(b, SLOT_LEN_AT) as usize;
        if slot != slot_len(m) {
            return invalid(format!("slot length {slot} does not match m = {m}"));
        }
        let nodes = u32_at(b, NODES_AT) as usize;
        let entry = u32_at(b, ENTRY_AT);
        let max_level = u32_at(b, MAX_LEVEL_AT);
        let upper_nodes = u32_at(b, UPPER_NODES_AT) as usize;
        let Some(max_level) = u8::try_from(max_level).ok().filter(|&l| l <= MAX_LEVEL) else {
            return invalid(format!("max level {max_level} is above {MAX_LEVEL}"));
        };
        let entry = if nodes == 0 {
            if entry != NO_ENTRY || max_level != 0 || upper_nodes != 0 {
                return invalid("an empty graph names an entry point or levels");
            }
            None
        } else {
            if entry as usize >= nodes {
                return invalid(format!("entry point {entry} is not below {nodes} nodes"));
            }
            Some(entry)
        };
        if upper_nodes > nodes || (max_level == 0) != (upper_nodes == 0) {
            return invalid(format!(
                "{upper_nodes} upper nodes of {nodes} disagree with max level {max_level}"
            ));
        }

        // Every offset and length is implied by the fields above (except the
        // upper links length, bounded by the file); demand exactly those.
        let field = |at: usize| u64_at(b, at);
        let level0_off = LINKS_HEADER_LEN as u64;
        let level0_len = nodes as u64 * slot as u64;
        let index_off = align_up(level0_off + level0_len);
        let index_len = upper_nodes as u64 * UPPER_ENTRY_LEN as u64;
        let links_off = index_off.and_then(|o| align_up(o.checked_add(index_len)?));
        let links_len = field(UPPER_LINKS_LEN_AT);
        let (Some(index_off), Some(links_off)) = (index_off, links_off) else {
            return invalid("region offsets overflow");
        };
        let expected = [
            (LEVEL0_OFFSET_AT, level0_off, "level-0 offset"),
            (LEVEL0_LEN_AT, level0_len, "level-0 length"),
            (UPPER_INDEX_OFFSET_AT, index_off, "upper index offset"),
            (UPPER_INDEX_LEN_AT, index_len, "upper index length"),
            (UPPER_LINKS_OFFSET_AT, links_off, "upper links offset"),
        ];
        for (at, want, what) in expected {
            if field(at) != want {
                return invalid(format!("{what} is {}, expected {want}", field(at)));
            }
        }
        if !links_len.is_multiple_of(4) {
            return invalid(format!("upper links length {links_len} is not whole u32s"));
        }
        let end = links_off.checked_add(links_len);
        if end != Some(file.len() as u64) {
            return invalid(format!(
                "file is {} bytes, header says {}",
                file.len(),
                end.map_or_else(|| "more than 2^64".to_string(), |e| e.to_string())
            ));
        }
        // Everything is now inside the buffer, so every offset fits usize.
        let us = |x: u64| x as usize;
        Ok(LinksHeader {
            m,
            nodes,
            entry,
            max_level,
            slot_len: slot,
            upper_nodes,
            level0: (us(level0_off), us(level0_len)),
            upper_index: (us(index_off), us(index_len)),
            upper_links: (us(links_off), us(links_len)),
            level0_crc: u32_at(b, LEVEL0_CRC_AT),
            upper_index_crc: u32_at(b, UPPER_INDEX_CRC_AT),
            upper_links_crc: u32_at(b, UPPER_LINKS_CRC_AT),
        })
    }
}

/// A graph read in place from its encoded bytes (a mapped links file).
///
/// Obtained through [`GraphView::decode`], or [`GraphView::open`] followed by
/// [`GraphView::verify`] before searching, so that every link in it is known
/// to name a node of the graph and every list to fit its slot.
#[derive(Debug, Clone, Copy)]
pub struct GraphView<'a> {
    m: usize,
    nodes: usize,
    entry: Option<u32>,
    max_level: u8,
    /// `u32`s per level-0 slot.
    slot_u32: usize,
    level0: &'a [u32],
    upper_index: &'a [UpperEntry],
    upper_links: &'a [u32],
    /// The whole file and its header, for [`GraphView::verify`].
    bytes: &'a [u8],
    header: LinksHeader,
}

/// Returns `bytes[off..off + len]` as a region named `what`.
fn region<'a>(
    bytes: &'a [u8],
    (off, len): (usize, usize),
    what: &str,
) -> Result<&'a [u8], LinksError> {
    match off.checked_add(len).and_then(|end| bytes.get(off..end)) {
        Some(r) => Ok(r),
        None => invalid(format!("{what} region lies outside the file")),
    }
}

fn cast<'a, T: Pod>(bytes: &'a [u8], what: &str) -> Result<&'a [T], LinksError> {
    bytemuck::try_cast_slice(bytes).or_else(|e| {
        invalid(format!(
            "{what} region cannot be read in place ({e:?}); the buffer must be {}-byte aligned",
            std::mem::align_of::<T>()
        ))
    })
}

impl<'a> GraphView<'a> {
    /// Validates `bytes` as a links file and returns a view reading it in place:
    /// [`GraphView::open`] followed by [`GraphView::verify`].
    ///
    /// # Errors
    ///
    /// [`LinksError::NewerVersion`] if the file is in a newer format;
    /// [`LinksError::Invalid`] for anything else wrong, including a buffer not
    /// aligned to 8 bytes. Never panics.
    pub fn decode(bytes: &'a [u8]) -> Result<GraphView<'a>, LinksError> {
        let view = GraphView::open(bytes)?;
        view.verify()?;
        Ok(view)
    }

    /// Checks the header and the file's shape (magic, version, header
    /// checksum, that every offset and length agrees with the header's counts,
    /// the exact length, alignment) and returns a view; reads nothing past the
    /// header. Costs the same for any graph size.
    ///
    /// The links themselves are not checked: call [`GraphView::verify`] before
    /// the first search of a view whose bytes came from outside this process.
    ///
    /// # Errors
    ///
    /// As [`GraphView::decode`].
    pub fn open(bytes: &'a [u8]) -> Result<GraphView<'a>, LinksError> {
        GraphView::with_header(bytes, LinksHeader::decode(bytes)?)
    }

    /// The decoded header of this view, from which [`GraphView::reopen`]
    /// makes views of the same bytes without decoding it again.
    pub fn layout(&self) -> LinksLayout {
        LinksLayout(self.header)
    }

    /// A view of `bytes` through `layout`, which [`GraphView::layout`] gave
    /// for a view of these same bytes: what a search does per query,
    /// without the header's decoding and checksum (it only slices and casts
    /// the regions, which cannot fail for those bytes).
    ///
    /// # Errors
    /// [`LinksError::Invalid`] if `bytes` is not what `layout` describes.
    pub fn reopen(bytes: &'a [u8], layout: &LinksLayout) -> Result<GraphView<'a>, LinksError> {
        GraphView::with_header(bytes, layout.0)
    }

    fn with_header(bytes: &'a [u8], h: LinksHeader) -> Result<GraphView<'a>, LinksError> {
        let level0 = region(bytes, h.level0, "level-0")?;
        let index = region(bytes, h.upper_index, "upper index")?;
        let links = region(bytes, h.upper_links, "upper links")?;
        Ok(GraphView {
            m: h.m,
            nodes: h.nodes,
            entry: h.entry,
            max_level: h.max_level,
            slot_u32: h.slot_len / 4,
            level0: cast(level0, "level-0")?,
            upper_index: cast(index, "upper index")?,
            upper_links: cast(links, "upper links")?,
            bytes,
            header: h,
        })
    }

    /// Checks everything [`GraphView::open`] does not: zero padding, the region
    /// checksums, that every list fits its capacity, every neighbour is a node
    /// of the graph, every upper-level neighbour exists on that level, and the
    /// entry point is on the top level. Reads the whole file.
    ///
    /// # Errors
    ///
    /// [`LinksError::Invalid`] naming the first check that failed.
    pub fn verify(&self) -> Result<(), LinksError> {
        let h = &self.header;
        let gaps = [
            (h.level0.0 + h.level0.1, h.upper_index.0),
            (h.upper_index.0 + h.upper_index.1, h.upper_links.0),
        ];
        for (from, to) in gaps {
            if self
                .bytes
                .get(from..to)
                .is_none_or(|p| p.iter().any(|&x| x != 0))
            {
                return invalid("padding between regions is not zero");
            }
        }
        for (r, want, what) in [
            (
                bytemuck::cast_slice::<u32, u8>(self.level0),
                h.level0_crc,
                "level-0",
            ),
            (
                bytemuck::cast_slice(self.upper_index),
                h.upper_index_crc,
                "upper index",
            ),
            (
                bytemuck::cast_slice(self.upper_links),
                h.upper_links_crc,
                "upper links",
            ),
        ] {
            if crc32fast::hash(r) != want {
                return invalid(format!("{what} region checksum mismatch"));
            }
        }
        self.check_level0()?;
        self.check_upper(h.upper_nodes)
    }

    fn check_level0(&self) -> Result<(), LinksError> {
        let cap = 2 * self.m;
        for (node, slot) in self.level0.chunks_exact(self.slot_u32).enumerate() {
            let count = slot[0] as usize;
            let Some(list) = slot
                .get(1..)
                .and_then(|s| s.get(..count))
                .filter(|_| count <= cap)
            else {
                return invalid(format!(
                    "node {node} has {count} level-0 links, more than {cap}"
                ));
            };
            if let Some(&bad) = list.iter().find(|&&n| n as usize >= self.nodes) {
                return invalid(format!(
                    "node {node} links to {bad}, not below {} nodes",
                    self.nodes
                ));
            }
        }
        Ok(())
    }

    fn check_upper(&self, upper_nodes: usize) -> Result<(), LinksError> {
        if self.upper_index.len() != upper_nodes {
            return invalid("upper index length disagrees with the header");
        }
        let stride = self.m as u64 + 1;
        let mut next_start = 0u64;
        let mut prev: Option<u32> = None;
        for e in self.upper_index {
            if prev.is_some_and(|p| e.node <= p) || e.node as usize >= self.nodes {
                return invalid(format!(
                    "upper index entry for node {} is out of order or range",
                    e.node
                ));
            }
            prev = Some(e.node);
            if e.levels == 0 || e.levels > u32::from(self.max_level) {
                return invalid(format!("node {} has level {}", e.node, e.levels));
            }
            if e.start != next_start {
                return invalid(format!(
                    "node {} upper lists start at {}, expected {next_start}",
                    e.node, e.start
                ));
            }
            next_start += u64::from(e.levels) * stride;
        }
        if next_start != self.upper_links.len() as u64 {
            return invalid("upper index does not cover the upper links region exactly");
        }
        if let Some(entry) = self.entry {
            if self.max_level > 0 && self.level_of(entry) != self.max_level {
                return invalid(format!(
                    "entry point {entry} is not on the top level {}",
                    self.max_level
                ));
            }
        }
        for e in self.upper_index {
            for level in 1..=e.levels as u8 {
                let list = self.upper_list(e, level);
                let Some(list) = list else {
                    return invalid(format!(
                        "node {} has more than {} links at level {level}",
                        e.node, self.m
                    ));
                };
                for &n in list {
                    if n as usize >= self.nodes || self.level_of(n) < level {
                        return invalid(format!(
                            "node {} links at level {level} to {n}, which is not on that level",
                            e.node
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The list of `e` at `level` (1..=e.levels), or `None` if its count
    /// exceeds `m` (only before validation) or it lies outside the region.
    fn upper_list(&self, e: &UpperEntry, level: u8) -> Option<&'a [u32]> {
        let at = usize::try_from(e.start).ok()? + (usize::from(level) - 1) * (self.m + 1);
        let count = *self.upper_links.get(at)? as usize;
        if count > self.m {
            return None;
        }
        self.upper_links.get(at + 1..at + 1 + count)
    }

    /// The level of `node` (0 if it has no upper lists).
    fn level_of(&self, node: u32) -> u8 {
        match self.upper_index.binary_search_by_key(&node, |e| e.node) {
            Ok(i) => self.upper_index[i].levels as u8,
            Err(_) => 0,
        }
    }

    /// Number of nodes (rows) in the graph.
    pub fn len(&self) -> usize {
        self.nodes
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes == 0
    }

    /// The node searches start from; `None` for an empty graph.
    pub fn entry_point(&self) -> Option<u32> {
        self.entry
    }

    /// The entry point's level, the highest in the graph.
    pub fn max_level(&self) -> u8 {
        self.max_level
    }

    /// The `m` the graph was built with.
    pub fn m(&self) -> usize {
        self.m
    }

    /// The level-0 neighbours of `node` (`node` < `len()`).
    #[inline]
    pub(crate) fn level0_neighbours(&self, node: u32) -> &'a [u32] {
        let at = node as usize * self.slot_u32;
        let count = self.level0[at] as usize;
        &self.level0[at + 1..at + 1 + count]
    }

    /// Address of `node`'s level-0 slot, for prefetching (never dereferenced
    /// here; an out-of-range node gives a harmless dangling address).
    #[inline]
    pub(crate) fn slot_ptr(&self, node: u32) -> *const u32 {
        self.level0
            .as_ptr()
            .wrapping_add(node as usize * self.slot_u32)
    }

    /// Every node with a level above 0, with its level, in node order.
    pub(crate) fn upper_nodes(&self) -> impl Iterator<Item = (u32, u8)> + 'a {
        // `verify` checked every level against `max_level` ≤ MAX_LEVEL.
        let level = |e: &UpperEntry| e.levels.min(u32::from(MAX_LEVEL)) as u8;
        self.upper_index.iter().map(move |e| (e.node, level(e)))
    }

    /// The neighbours of `node` at `level` ≥ 1; empty if it is not on that level.
    #[inline]
    pub(crate) fn upper_neighbours(&self, node: u32, level: u8) -> &'a [u32] {
        match self.upper_index.binary_search_by_key(&node, |e| e.node) {
            Ok(i) if u32::from(level) <= self.upper_index[i].levels => {
                self.upper_list(&self.upper_index[i], level).unwrap_or(&[])
            }
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::search::test_support::{Aligned, Packed};
    use crate::graph::{build, GraphParams};
    use crate::synth::clustered;

    fn l2(a: &[f32], b: &[f32]) -> f32 {
        crate::kernels::select().l2_squared(a, b)
    }

    /// A small graph with several upper levels (m = 4 makes them common).
    fn sample() -> Graph {
        let rows = Packed {
            data: clustered(600, 8, 4, 0.3, 3),
            dim: 8,
        };
        let params = GraphParams {
            m: 4,
            ef_construction: 40,
            seed: 9,
        };
        let g = build(&rows, &l2, &params);
        assert!(g.max_level() >= 2, "sample should have upper levels");
        g
    }

    fn decode(bytes: &[u8]) -> Result<GraphView<'_>, LinksError> {
        GraphView::decode(bytes)
    }

    /// Rewrites the region checksums and the header checksum, so only the
    /// structural checks can catch an edit.
    fn reseal(b: &mut [u8]) {
        for (off_at, len_at, crc_at) in [
            (LEVEL0_OFFSET_AT, LEVEL0_LEN_AT, LEVEL0_CRC_AT),
            (
                UPPER_INDEX_OFFSET_AT,
                UPPER_INDEX_LEN_AT,
                UPPER_INDEX_CRC_AT,
            ),
            (
                UPPER_LINKS_OFFSET_AT,
                UPPER_LINKS_LEN_AT,
                UPPER_LINKS_CRC_AT,
            ),
        ] {
            let (off, len) = (u64_at(b, off_at) as usize, u64_at(b, len_at) as usize);
            let crc = crc32fast::hash(&b[off..off + len]);
            put_at(b, crc_at, &crc.to_le_bytes());
        }
        let crc = crc32fast::hash(&b[..HEADER_CRC_AT]);
        put_at(b, HEADER_CRC_AT, &crc.to_le_bytes());
    }

    /// Asserts that an 8-byte-aligned copy of `bytes` is refused as invalid
    /// with a message containing `why`.
    fn assert_refused(bytes: &[u8], why: &str) {
        let copy = Aligned::new(bytes);
        match decode(copy.bytes()) {
            Err(LinksError::Invalid(msg)) if msg.contains(why) => {}
            other => panic!("expected Invalid(..{why}..), got {other:?}"),
        }
    }

    fn assert_invalid(bytes: &[u8], what: &str) {
        let copy = Aligned::new(bytes);
        match decode(copy.bytes()) {
            Err(LinksError::Invalid(_)) => {}
            other => panic!("{what}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn encode_then_decode_gives_back_every_list() {
        let g = sample();
        let bytes = Aligned::new(&g.encode());
        let v = decode(bytes.bytes()).unwrap();
        assert_eq!(
            (v.len(), v.m(), v.entry_point(), v.max_level()),
            (g.len(), 4, g.entry_point(), g.max_level())
        );
        for (r, lists) in g.links.iter().enumerate() {
            let r = r as u32;
            assert_eq!(v.level0_neighbours(r), &lists[0][..], "node {r} level 0");
            for level in 1..=MAX_LEVEL {
                let want = lists.get(usize::from(level)).map_or(&[][..], Vec::as_slice);
                assert_eq!(v.upper_neighbours(r, level), want, "node {r} level {level}");
            }
        }
    }

    #[test]
    fn encoding_is_deterministic_and_slots_are_64_byte_aligned() {
        let g = sample();
        let bytes = g.encode();
        assert_eq!(bytes, g.encode());
        assert_eq!(slot_len(4), 64);
        assert_eq!(slot_len(16), 192);
        for at in [
            LEVEL0_OFFSET_AT,
            UPPER_INDEX_OFFSET_AT,
            UPPER_LINKS_OFFSET_AT,
        ] {
            assert_eq!(u64_at(&bytes, at) % REGION_ALIGN as u64, 0);
        }
    }

    #[test]
    fn every_flipped_header_byte_is_refused() {
        let bytes = sample().encode();
        for i in 0..LINKS_HEADER_LEN {
            for flip in [0x01, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let copy = Aligned::new(&b);
                assert!(
                    decode(copy.bytes()).is_err(),
                    "flip {flip:#x} at byte {i} accepted"
                );
            }
        }
    }

    #[test]
    fn every_flipped_region_byte_is_refused() {
        let bytes = sample().encode();
        for i in (LINKS_HEADER_LEN..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert_invalid(&b, &format!("byte {i}"));
        }
    }

    #[test]
    fn truncated_or_extended_buffer_is_refused() {
        let bytes = sample().encode();
        for len in [
            0,
            7,
            LINKS_HEADER_LEN - 1,
            LINKS_HEADER_LEN,
            bytes.len() / 2,
            bytes.len() - 4,
            bytes.len() - 1,
        ] {
            assert_invalid(&bytes[..len], &format!("truncated to {len}"));
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 4]);
        assert_invalid(&longer, "4 bytes appended");
    }

    #[test]
    fn level0_neighbour_out_of_range_is_refused_even_with_valid_checksums() {
        let g = sample();
        let mut b = g.encode();
        // Node 5's first neighbour becomes `nodes`, one past the last node.
        let at = LINKS_HEADER_LEN + 5 * slot_len(4) + 4;
        assert!(!g.links[5][0].is_empty());
        put_at(&mut b, at, &(g.len() as u32).to_le_bytes());
        reseal(&mut b);
        assert_refused(&b, "links to");
    }

    #[test]
    fn level0_count_above_capacity_is_refused_even_with_valid_checksums() {
        let mut b = sample().encode();
        put_at(&mut b, LINKS_HEADER_LEN, &9u32.to_le_bytes()); // 2m = 8
        reseal(&mut b);
        assert_refused(&b, "level-0 links, more than 8");
    }

    #[test]
    fn upper_link_to_a_node_below_that_level_is_refused() {
        let g = sample();
        let mut b = g.encode();
        let low = (0..g.len()).find(|&r| g.links[r].len() == 1).unwrap() as u32;
        let (node, _) = g
            .links
            .iter()
            .enumerate()
            .find(|(_, l)| l.len() > 1 && !l[1].is_empty())
            .unwrap();
        let v = Aligned::new(&b);
        let view = decode(v.bytes()).unwrap();
        let e = view
            .upper_index
            .iter()
            .find(|e| e.node as usize == node)
            .copied()
            .unwrap();
        let links_off = u64_at(&b, UPPER_LINKS_OFFSET_AT) as usize;
        put_at(
            &mut b,
            links_off + (e.start as usize + 1) * 4,
            &low.to_le_bytes(),
        );
        reseal(&mut b);
        assert_refused(&b, "which is not on that level");
    }

    #[test]
    fn entry_point_out_of_range_is_refused() {
        let g = sample();
        let mut b = g.encode();
        put_at(&mut b, ENTRY_AT, &(g.len() as u32).to_le_bytes());
        reseal(&mut b);
        assert_refused(&b, "is not below");
    }

    #[test]
    fn entry_point_below_the_top_level_is_refused() {
        let g = sample();
        let mut b = g.encode();
        let low = (0..g.len()).find(|&r| g.links[r].len() == 1).unwrap() as u32;
        put_at(&mut b, ENTRY_AT, &low.to_le_bytes());
        reseal(&mut b);
        assert_refused(&b, "is not on the top level");
    }

    #[test]
    fn newer_version_is_reported_as_newer() {
        let mut b = sample().encode();
        put_at(&mut b, VERSION_AT, &2u32.to_le_bytes());
        reseal(&mut b);
        let copy = Aligned::new(&b);
        assert_eq!(
            decode(copy.bytes()).err(),
            Some(LinksError::NewerVersion(2))
        );
    }

    #[test]
    fn misaligned_buffer_is_refused_not_misread() {
        let bytes = sample().encode();
        let mut padded = vec![0u8; 4];
        padded.extend_from_slice(&bytes);
        let copy = Aligned::new(&padded);
        // Starts 4 bytes past an 8-byte boundary: the upper index cannot be cast.
        match decode(&copy.bytes()[4..]) {
            Err(LinksError::Invalid(msg)) if msg.contains("aligned") => {}
            other => panic!("expected a misalignment error, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let mut rng = crate::synth::SplitMix64::new(1);
        for len in [0usize, 1, 64, 127, 128, 129, 256, 1000] {
            let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            assert_invalid(&b, "random bytes");
            if len >= 8 {
                b[..8].copy_from_slice(&LINKS_MAGIC);
                let copy = Aligned::new(&b);
                assert!(decode(copy.bytes()).is_err());
            }
        }
    }
}
