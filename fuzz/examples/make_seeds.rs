//! Writes valid inputs into `corpus/<target>/` for the fuzzers to start from:
//! `cargo run --example make_seeds` (from `fuzz/`).
//!
//! Without them the fuzzers would first have to discover a valid links-file
//! layout or a `.npy` header byte by byte. `column_header` starts from its own
//! valid file and `ops_with_failures` from any bytes, so they need none.

use quiver::graph::{build, GraphParams, Rows};
use std::path::Path;

struct Plane(Vec<[f32; 2]>);

impl Rows for Plane {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn row(&self, i: u32) -> &[f32] {
        &self.0[i as usize]
    }
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");

    // Links files; `links_file` reads the last 16 bytes as search knobs.
    for (name, rows, m) in [("empty", 0u32, 2), ("three", 3, 16), ("upper", 60, 4)] {
        let plane = Plane((0..rows).map(|i| [i as f32, (i % 7) as f32]).collect());
        let params = GraphParams {
            m,
            ef_construction: 16,
            ..GraphParams::default()
        };
        let mut bytes = build(&plane, &l2, &params).encode();
        bytes.extend((1..=16u8).map(|k| k * 7));
        write(&corpus, "links_file", name, &bytes);
    }

    // One small valid file per import format.
    let rows = [[1.0f32, 2.0, 3.0], [-0.5, 0.25, 8.0]];
    let mut fvecs = Vec::new();
    let mut bvecs = Vec::new();
    for row in &rows {
        fvecs.extend(3i32.to_le_bytes());
        fvecs.extend(f32s(row));
        bvecs.extend(3i32.to_le_bytes());
        bvecs.extend(row.iter().map(|v| v.abs() as u8));
    }
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let mut fbin = [2u32.to_le_bytes(), 3u32.to_le_bytes()].concat();
    fbin.extend(f32s(&flat));
    let mut u8bin = [2u32.to_le_bytes(), 3u32.to_le_bytes()].concat();
    u8bin.extend([1, 2, 3, 4, 5, 6]);
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    let header = format!("{dict:<117}\n");
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    npy.extend(f32s(&flat));
    let jsonl = "{\"id\": 7, \"vector\": [1, 2.5, -3], \"payload\": \"x\"}\n\
                 \n{\"id\": 9, \"vector\": [0, 0, 1e-3], \"payload\": {\"a\": [1]}}\n";
    let ivecs: Vec<u8> = [2i32, 7, 9, 0, 1, 4]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    for (name, bytes) in [
        ("fvecs", fvecs),
        ("bvecs", bvecs),
        ("fbin", fbin),
        ("u8bin", u8bin),
        ("npy", npy),
        ("jsonl", jsonl.as_bytes().to_vec()),
        ("ivecs", ivecs),
    ] {
        write(&corpus, "import_parsers", name, &bytes);
    }
    println!("seeds written under {}", corpus.display());
}
