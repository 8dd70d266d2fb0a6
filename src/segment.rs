//! A sealed segment: an immutable column file and the HNSW links file beside
//! it, both mapped read-only and read in place.
//!
//! A segment is written once by the writer ([`write_segment`]): each file is
//! streamed through the I/O seam to a temporary name, synced and renamed to its
//! final name, the directory is synced, and only then does a manifest commit
//! name the segment. After that nobody writes to it. Its vector rows are read
//! as `&[f32]` and its links as `&[u32]` straight from the mappings.
//!
//! The data checksums are checked once, lazily, before the first read of the
//! segment's rows (or at open with [`Options::verify_on_open`](crate::Options::verify_on_open)),
//! so opening a database costs a header check per file, not a read of every
//! byte, and a damaged region is still never served.

use crate::error::{Error, Result};
use crate::format::{self, ColumnHeader, HeaderError, HEADER_LEN};
use crate::fs::{Mapping, Vfs};
use crate::graph::{self, Graph, GraphView, LinksError, LinksLayout, Rows};
use crate::manifest::{GraphMeta, SegmentMeta};
use crate::options::Metric;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// One sealed, mapped column file.
#[derive(Debug)]
pub struct Segment {
    id: u64,
    path: PathBuf,
    header: ColumnHeader,
    map: Arc<dyn Mapping>,
    links_path: PathBuf,
    /// The links file and its header, decoded once at open; or what was
    /// wrong with it. A damaged graph does not make the rows unreadable: `get`
    /// and exact search still read them, and compaction or a merge builds
    /// the graph again from them.
    links: std::result::Result<(Arc<dyn Mapping>, LinksLayout), String>,
    /// The damaged regions (file and what failed) once the data checksums
    /// and links were checked; empty if all matched.
    verified: OnceLock<Vec<(PathBuf, String)>>,
    /// (id, row) of every row, sorted: built on the first lookup by id.
    by_id: OnceLock<Vec<(u64, u32)>>,
    /// Set when a commit removed the segment from the manifest: the file goes
    /// when the last snapshot holding the segment lets go of it.
    retired: AtomicBool,
    vfs: Arc<dyn Vfs>,
}

impl Segment {
    /// Maps the column file of segment `id` in `dir` and checks its header
    /// against the manifest record and the database's options; the same for
    /// the links file.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        id: u64,
        meta: &SegmentMeta,
        dim: usize,
        metric: Metric,
    ) -> Result<Segment> {
        let path = dir.join(format::column_file_name(id));
        let (header, map) = open_column(&*vfs, &path, id, meta, dim, metric)?;
        let links_path = dir.join(format::links_file_name(id));
        let links = match open_links(&*vfs, &links_path, meta) {
            Ok(links) => Ok(links),
            Err(Error::Corrupted { what, .. }) => Err(what),
            Err(e) => return Err(e),
        };
        Ok(Segment {
            id,
            path,
            header,
            map,
            links_path,
            links,
            verified: OnceLock::new(),
            by_id: OnceLock::new(),
            retired: AtomicBool::new(false),
            vfs,
        })
    }

    /// Every check of both files of segment `id`, as [`Segment::open`] and
    /// [`Segment::check`] make them, going on after a failure: a damaged
    /// column header still lets the links file be checked, and the other way
    /// round. Empty when both files are sound.
    pub fn check_files(
        vfs: &dyn Vfs,
        dir: &Path,
        id: u64,
        meta: &SegmentMeta,
        dim: usize,
        metric: Metric,
    ) -> Vec<Error> {
        let path = dir.join(format::column_file_name(id));
        let links_path = dir.join(format::links_file_name(id));
        let column = open_column(vfs, &path, id, meta, dim, metric)
            .map(|(header, map)| column_damage(&path, &header, map.bytes()));
        let links = open_links(vfs, &links_path, meta)
            .map(|(map, _)| links_damage(&links_path, map.bytes()).into_iter().collect())
            .map(|damage: Vec<_>| {
                damage
                    .into_iter()
                    .map(|(file, what)| (file, graph_damage(&what)))
                    .collect()
            })
            .map_err(|e| match e {
                Error::Corrupted { file, what } => Error::corrupted(file, graph_damage(&what)),
                e => e,
            });
        [column, links]
            .into_iter()
            .flat_map(|checked| match checked {
                Ok(damage) => damage
                    .into_iter()
                    .map(|(file, what)| Error::corrupted(file, what))
                    .collect(),
                Err(e) => vec![e],
            })
            .collect()
    }

    /// The segment's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.header.rows as usize
    }

    /// Bytes the column file takes.
    pub fn column_len(&self) -> u64 {
        self.header.file_len()
    }

    /// Bytes the links file takes.
    pub fn links_len(&self) -> u64 {
        self.links
            .as_ref()
            .map_or(0, |(map, _)| map.bytes().len() as u64)
    }

    /// Checks the data checksums of both files and every link (once; later
    /// calls return the first answer). The error names the first damaged file.
    pub fn verify(&self) -> Result<()> {
        match self.damage().first() {
            Some((file, what)) => Err(Error::corrupted(file, what.clone())),
            None => Ok(()),
        }
    }

    /// Checks the column file's data checksums only (once, with the links,
    /// as [`Segment::verify`]): what reading the rows and ids needs, whatever
    /// state the graph is in.
    pub fn verify_rows(&self) -> Result<()> {
        match self.damage().iter().find(|(file, _)| *file == self.path) {
            Some((file, what)) => Err(Error::corrupted(file, what.clone())),
            None => Ok(()),
        }
    }

    /// Whether the links file passed its checks: a graph to search and to
    /// extend.
    pub fn graph_sound(&self) -> bool {
        !self
            .damage()
            .iter()
            .any(|(file, _)| *file == self.links_path)
    }

    /// As [`Segment::verify`], but one error per damaged region: the vector
    /// rows, the id column, the links file.
    pub fn check(&self) -> Vec<Error> {
        self.damage()
            .iter()
            .map(|(file, what)| Error::corrupted(file, what.clone()))
            .collect()
    }

    /// The damaged regions, found on the first call.
    fn damage(&self) -> &[(PathBuf, String)] {
        self.verified.get_or_init(|| {
            let mut damage = column_damage(&self.path, &self.header, self.map.bytes());
            let links = match &self.links {
                Ok((map, _)) => links_damage(&self.links_path, map.bytes()),
                Err(what) => Some((self.links_path.clone(), what.clone())),
            };
            damage.extend(links.map(|(file, what)| (file, graph_damage(&what))));
            damage
        })
    }

    /// The segment's graph, read in place, from the header decoded at open
    /// (nothing is decoded per query). Call [`Segment::verify`] first.
    pub fn graph(&self) -> Result<GraphView<'_>> {
        match &self.links {
            Ok((map, layout)) => {
                GraphView::reopen(map.bytes(), layout).map_err(|e| links_error(&self.links_path, e))
            }
            Err(what) => Err(Error::corrupted(&self.links_path, graph_damage(what))),
        }
    }

    /// The rows as the graph search reads them.
    #[inline]
    pub fn rows_view(&self) -> SegmentRows<'_> {
        SegmentRows {
            vectors: self.vectors(),
            stride: self.stride_floats(),
            dim: self.header.dim as usize,
        }
    }

    /// Marks checksums as known good: the writer just computed them from the
    /// bytes it wrote and synced.
    pub fn mark_verified(&self) {
        let _ = self.verified.set(Vec::new());
    }

    /// All vector rows, `stride / 4` floats apart. Call [`Segment::verify`] first.
    #[inline]
    pub fn vectors(&self) -> &[f32] {
        let ids_at = self.header.ids_offset() as usize;
        // Cannot panic: `open` checked that the file is exactly as long as the
        // header says, that the mapping is 64-byte aligned, and the region starts
        // at 64 and is a whole number of 64-byte rows.
        bytemuck::cast_slice(&self.map.bytes()[HEADER_LEN..ids_at])
    }

    /// Floats from one row to the next.
    #[inline]
    pub fn stride_floats(&self) -> usize {
        self.header.stride as usize / 4
    }

    /// The vector of `row`.
    #[inline]
    pub fn row(&self, row: usize) -> &[f32] {
        let start = row * self.stride_floats();
        &self.vectors()[start..start + self.header.dim as usize]
    }

    /// The user id of every row.
    #[inline]
    pub fn ids(&self) -> &[u64] {
        let ids_at = self.header.ids_offset() as usize;
        // Cannot panic: the id region starts at a multiple of 64 from a 64-byte
        // aligned mapping and holds exactly `rows` u64 (checked in `open`).
        bytemuck::cast_slice(&self.map.bytes()[ids_at..])
    }

    /// The rows whose id column holds `id`, in row order. The first call
    /// sorts the id column once (12 bytes per row, kept with the segment).
    /// Call [`Segment::verify`] first.
    pub fn rows_of(&self, id: u64) -> impl Iterator<Item = usize> + '_ {
        let by_id = self.by_id.get_or_init(|| {
            let mut by_id: Vec<(u64, u32)> = self
                .ids()
                .iter()
                .enumerate()
                .map(|(row, &id)| (id, row as u32))
                .collect();
            by_id.sort_unstable();
            by_id
        });
        let from = by_id.partition_point(|&(i, _)| i < id);
        by_id[from..]
            .iter()
            .take_while(move |&&(i, _)| i == id)
            .map(|&(_, row)| row as usize)
    }

    /// From now on, remove the file once the last holder drops this segment.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            // A file left behind by a failed removal is named by no manifest and is
            // removed at the next open.
            let _ = self.vfs.remove(&self.path);
            let _ = self.vfs.remove(&self.links_path);
        }
    }
}

/// A segment's rows, read in place from its column file.
#[derive(Debug, Clone, Copy)]
pub struct SegmentRows<'a> {
    vectors: &'a [f32],
    stride: usize,
    dim: usize,
}

impl Rows for SegmentRows<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.vectors.len() / self.stride
    }
    #[inline]
    fn row(&self, i: u32) -> &[f32] {
        let start = i as usize * self.stride;
        &self.vectors[start..start + self.dim]
    }
}

/// Maps the column file of segment `id` at `path` and checks its header
/// against the manifest record and the database's options.
fn open_column(
    vfs: &dyn Vfs,
    path: &Path,
    id: u64,
    meta: &SegmentMeta,
    dim: usize,
    metric: Metric,
) -> Result<(ColumnHeader, Arc<dyn Mapping>)> {
    let map = map_named(vfs, path)?;
    let bytes = map.bytes();
    let header = match ColumnHeader::decode(bytes) {
        Ok(h) => h,
        Err(HeaderError::NewerVersion(found)) => {
            return Err(Error::UnsupportedVersion {
                file: path.to_path_buf(),
                found: u64::from(found),
                supported: u64::from(format::FORMAT_VERSION),
            })
        }
        Err(HeaderError::Invalid(what)) => return Err(Error::corrupted(path, what)),
    };
    let mismatch = if header.segment_id != id {
        Some(format!("header names segment {}", header.segment_id))
    } else if header.dim as usize != dim || header.metric != metric {
        Some(format!(
            "holds {}-dimensional {} rows, the database {dim}-dimensional {metric}",
            header.dim, header.metric
        ))
    } else if header.rows != meta.rows
        || header.vectors_crc != meta.vectors_crc
        || header.ids_crc != meta.ids_crc
    {
        Some("header does not match the manifest's record of the segment".into())
    } else if !(bytes.as_ptr() as usize).is_multiple_of(format::ROW_ALIGN) {
        Some("mapping is not 64-byte aligned".into())
    } else {
        None
    };
    match mismatch {
        Some(what) => Err(Error::corrupted(path, what)),
        None => Ok((header, map)),
    }
}

/// Maps the links file at `path` and checks its header against the manifest
/// record (which `open_column` checks the column file's row count against).
fn open_links(
    vfs: &dyn Vfs,
    path: &Path,
    meta: &SegmentMeta,
) -> Result<(Arc<dyn Mapping>, LinksLayout)> {
    let links = map_named(vfs, path)?;
    let view = GraphView::open(links.bytes()).map_err(|e| links_error(path, e))?;
    let found = GraphMeta {
        header_crc: links_header_crc(links.bytes()),
        entry_point: view.entry_point().unwrap_or(u32::MAX),
        max_level: u32::from(view.max_level()),
        m: view.m() as u32,
        ef_construction: meta.graph.ef_construction,
    };
    if found != meta.graph || view.len() as u64 != meta.rows {
        return Err(Error::corrupted(
            path,
            "header does not match the manifest's record of the segment",
        ));
    }
    let layout = view.layout();
    Ok((links, layout))
}

/// What to do about a damaged links file, appended to its errors.
const GRAPH_ADVICE: &str = "; the vectors are intact: `get` and exact search still work, \
     and `quiver compact` builds the graph again from them";

/// What a damaged links file's error says: the damage, then what still works.
fn graph_damage(what: &str) -> String {
    format!("{what}{GRAPH_ADVICE}")
}

/// The regions of a column file (checked by `open_column`) whose checksums fail.
fn column_damage(path: &Path, header: &ColumnHeader, bytes: &[u8]) -> Vec<(PathBuf, String)> {
    let ids_at = header.ids_offset() as usize;
    let mut damage = Vec::new();
    if crc32fast::hash(&bytes[HEADER_LEN..ids_at]) != header.vectors_crc {
        damage.push((path.to_path_buf(), "vector data checksum mismatch".into()));
    }
    if crc32fast::hash(&bytes[ids_at..]) != header.ids_crc {
        damage.push((path.to_path_buf(), "id column checksum mismatch".into()));
    }
    damage
}

/// The first failure of the full check of a links file, if any.
fn links_damage(path: &Path, bytes: &[u8]) -> Option<(PathBuf, String)> {
    GraphView::open(bytes)
        .and_then(|v| v.verify())
        .err()
        .map(|e| (path.to_path_buf(), e.to_string()))
}

/// Maps a file the manifest names; a missing one is damage, not an I/O error.
fn map_named(vfs: &dyn Vfs, path: &Path) -> Result<Arc<dyn Mapping>> {
    vfs.map(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::corrupted(path, "the manifest names this file but it is missing")
        } else {
            Error::io(path, e)
        }
    })
}

/// crc32 of the links header before its own checksum field: what the
/// manifest record keeps to tie the file to the segment.
fn links_header_crc(links: &[u8]) -> u32 {
    crc32fast::hash(links.get(..graph::LINKS_HEADER_LEN - 4).unwrap_or_default())
}

fn links_error(path: &Path, e: LinksError) -> Error {
    match e {
        LinksError::NewerVersion(found) => Error::UnsupportedVersion {
            file: path.to_path_buf(),
            found: u64::from(found),
            supported: u64::from(graph::LINKS_VERSION),
        },
        LinksError::Invalid(what) => Error::corrupted(path, what),
    }
}

/// Writes the files of a new segment through the durable path: the column
/// file, then `graph` (built over the same rows, in the same order) as a
/// links file, each to a temporary name, synced and renamed into place; then
/// the directory is synced. Returns the manifest record. The caller commits
/// the manifest.
///
/// `rows` holds each row's id and vector (already normalised for cosine);
/// `ef_construction` is recorded as the graph's build parameter.
#[allow(clippy::too_many_arguments)]
pub fn write_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    id: u64,
    dim: usize,
    metric: Metric,
    rows: &[(u64, &[f32])],
    graph: &Graph,
    ef_construction: usize,
) -> Result<SegmentMeta> {
    if rows.len() >= u32::MAX as usize {
        return Err(Error::SegmentTooLarge {
            rows: rows.len(),
            limit: u32::MAX as usize - 1,
        });
    }
    let (vectors_crc, ids_crc) = write_column_file(vfs, dir, id, dim, metric, rows)?;
    let links = graph.encode();
    let links_path = dir.join(format::links_file_name(id));
    publish_file(vfs, &links_path, &[&links])?;
    vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(SegmentMeta {
        rows: rows.len() as u64,
        vectors_crc,
        ids_crc,
        graph: GraphMeta {
            header_crc: links_header_crc(&links),
            entry_point: graph.entry_point().unwrap_or(u32::MAX),
            max_level: u32::from(graph.max_level()),
            m: graph.m() as u32,
            ef_construction: ef_construction.max(graph.m()) as u32,
        },
    })
}

/// Writes `parts` to `<path>.tmp`, syncs it and renames it to `path`. The
/// caller syncs the directory.
fn publish_file(vfs: &dyn Vfs, path: &Path, parts: &[&[u8]]) -> Result<()> {
    let tmp = tmp_path(path);
    let file = vfs.open(&tmp, true).map_err(|e| Error::io(&tmp, e))?;
    file.set_len(0).map_err(|e| Error::io(&tmp, e))?;
    let mut offset = 0u64;
    for part in parts {
        file.write_at(offset, part)
            .map_err(|e| Error::io(&tmp, e))?;
        offset += part.len() as u64;
    }
    file.sync().map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    vfs.rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format::TMP_SUFFIX);
    PathBuf::from(name)
}

/// Streams the column file of segment `id` to a temporary name, syncs it and
/// renames it into place. Returns the vector and id checksums.
fn write_column_file(
    vfs: &dyn Vfs,
    dir: &Path,
    id: u64,
    dim: usize,
    metric: Metric,
    rows: &[(u64, &[f32])],
) -> Result<(u32, u32)> {
    let stride = format::row_stride(dim);
    let final_path = dir.join(format::column_file_name(id));
    let tmp_path = tmp_path(&final_path);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e| Error::io(path, e)
    };
    let file = vfs.open(&tmp_path, true).map_err(io(&tmp_path))?;
    file.set_len(0).map_err(io(&tmp_path))?;

    // Stream the rows in ~1 MiB pieces, checksumming as they go.
    const PIECE: usize = 1 << 20;
    let mut buf: Vec<u8> = Vec::with_capacity(PIECE + stride);
    let mut offset = HEADER_LEN as u64;
    let mut vectors_crc = crc32fast::Hasher::new();
    let flush = |buf: &mut Vec<u8>, offset: &mut u64, crc: &mut crc32fast::Hasher| {
        crc.update(buf);
        file.write_at(*offset, buf).map_err(io(&tmp_path))?;
        *offset += buf.len() as u64;
        buf.clear();
        Ok::<(), Error>(())
    };
    for (_, vector) in rows {
        buf.extend(vector.iter().flat_map(|x| x.to_le_bytes()));
        buf.resize(buf.len() + stride - dim * 4, 0);
        if buf.len() >= PIECE {
            flush(&mut buf, &mut offset, &mut vectors_crc)?;
        }
    }
    flush(&mut buf, &mut offset, &mut vectors_crc)?;
    let mut ids_crc = crc32fast::Hasher::new();
    for chunk in rows.chunks(PIECE / 8) {
        buf.extend(chunk.iter().flat_map(|(id, _)| id.to_le_bytes()));
        flush(&mut buf, &mut offset, &mut ids_crc)?;
    }
    let header = ColumnHeader {
        dim: dim as u32,
        stride: stride as u32,
        metric,
        rows: rows.len() as u64,
        segment_id: id,
        vectors_crc: vectors_crc.finalize(),
        ids_crc: ids_crc.finalize(),
    };
    file.write_at(0, &header.encode()).map_err(io(&tmp_path))?;
    file.sync().map_err(io(&tmp_path))?;
    drop(file);
    vfs.rename(&tmp_path, &final_path)
        .map_err(io(&final_path))?;
    Ok((header.vectors_crc, header.ids_crc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::MemFs;

    fn write_two_rows(fs: &MemFs) -> SegmentMeta {
        fs.create_dir_all(Path::new("/db")).unwrap();
        let a = [1.0f32, 2.0, 3.0];
        let b = [4.0f32, 5.0, 6.0];
        let rows: [(u64, &[f32]); 2] = [(10, &a), (20, &b)];
        let k = crate::kernels::select();
        struct Two<'a>(&'a [(u64, &'a [f32])]);
        impl Rows for Two<'_> {
            fn len(&self) -> usize {
                self.0.len()
            }
            fn row(&self, i: u32) -> &[f32] {
                self.0[i as usize].1
            }
        }
        let graph = graph::build(
            &Two(&rows),
            &|x: &[f32], y: &[f32]| k.l2_squared(x, y),
            &graph::GraphParams::default(),
        );
        write_segment(fs, Path::new("/db"), 1, 3, Metric::L2, &rows, &graph, 200).unwrap()
    }

    #[test]
    fn written_segment_reads_back_in_place() {
        let fs = MemFs::new();
        let meta = write_two_rows(&fs);
        let seg = Segment::open(Arc::new(fs), Path::new("/db"), 1, &meta, 3, Metric::L2).unwrap();
        seg.verify().unwrap();
        assert_eq!(seg.rows(), 2);
        assert_eq!(seg.row(1), &[4.0, 5.0, 6.0]);
        assert_eq!(seg.ids(), &[10, 20]);
    }

    #[test]
    fn flipped_data_byte_fails_verification_naming_the_file() {
        let fs = MemFs::new();
        let meta = write_two_rows(&fs);
        let path = Path::new("/db").join(format::column_file_name(1));
        let f = fs.open(&path, false).unwrap();
        let mut byte = [0u8];
        f.read_at(70, &mut byte).unwrap();
        f.write_at(70, &[byte[0] ^ 1]).unwrap();
        let seg = Segment::open(Arc::new(fs), Path::new("/db"), 1, &meta, 3, Metric::L2).unwrap();
        match seg.verify() {
            Err(Error::Corrupted { file, .. }) => assert_eq!(file, path),
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn segment_with_other_dimension_is_refused() {
        let fs = MemFs::new();
        let meta = write_two_rows(&fs);
        let err =
            Segment::open(Arc::new(fs), Path::new("/db"), 1, &meta, 4, Metric::L2).unwrap_err();
        assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    }
}
