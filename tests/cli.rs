//! The `quiver` binary driven as a user drives it: real processes, real
//! directories, exit codes and one-line errors.

use std::path::Path;
use std::process::{Command, Output};

fn quiver(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("the quiver binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failure with `code` and a single-line `quiver: ...` message
/// containing `needle`, and no panic.
fn assert_fails(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    if code == 2 && err.starts_with("quiver:") {
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    }
}

/// Writes `rows` as an .fvecs file.
fn write_fvecs(path: &Path, rows: &[Vec<f32>]) {
    let mut bytes = Vec::new();
    for row in rows {
        bytes.extend_from_slice(&(row.len() as i32).to_le_bytes());
        for x in row {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// `n` seeded vectors of dimension `dim`.
fn vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = quiver::synth::SplitMix64::new(seed);
    (0..n)
        .map(|_| (0..dim).map(|_| rng.normal() as f32).collect())
        .collect()
}

#[test]
fn create_import_search_get_delete_stats_verify_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let data = tmp.path().join("base.fvecs");
    let rows = vectors(300, 8, 1);
    write_fvecs(&data, &rows);

    let o = quiver(&[&"create", &db, &"--dim", &"8", &"--metric", &"l2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = quiver(&[&"import", &db, &data, &"--batch", &"100"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("imported 300 rows"), "{}", stdout(&o));

    let query = tmp.path().join("q.fvecs");
    write_fvecs(&query, &rows[17..18]);
    let o = quiver(&[&"search", &db, &"--query", &query, &"-k", &"3", &"--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(line["hits"][0]["id"], 17);
    assert_eq!(line["hits"].as_array().unwrap().len(), 3);

    let o = quiver(&[&"get", &db, &"17", &"--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let record: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let got: Vec<f32> = record["vector"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got, rows[17]);

    let o = quiver(&[&"delete", &db, &"17", &"18"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_fails(&quiver(&[&"get", &db, &"17"]), 2, "id 17 is not in");
    // Deleting is idempotent: ids not there are named, not an error.
    let o = quiver(&[&"delete", &db, &"18", &"999999", &"18"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("deleted 0 ids"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("not present, nothing to delete: [18, 999999]"),
        "{}",
        stdout(&o)
    );

    let o = quiver(&[&"stats", &db, &"--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(stats["rows"], 298);
    assert_eq!(stats["dim"], 8);
    assert_eq!(stats["format_version"], quiver::FORMAT_VERSION);

    let o = quiver(&[&"verify", &db]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("ok"), "{}", stdout(&o));
}

#[test]
fn import_of_json_lines_keeps_ids_and_payloads() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let data = tmp.path().join("rows.jsonl");
    std::fs::write(
        &data,
        "{\"id\": 70, \"vector\": [1, 0, 0], \"payload\": \"seventy\"}\n\
         {\"id\": 71, \"vector\": [0, 1, 0]}\n",
    )
    .unwrap();
    assert!(
        quiver(&[&"create", &db, &"--dim", &"3", &"--metric", &"cosine"])
            .status
            .success()
    );
    let o = quiver(&[&"import", &db, &data, &"--ids-from-field", &"id"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = quiver(&[&"get", &db, &"70"]);
    assert!(stdout(&o).contains("payload seventy"), "{}", stdout(&o));
    let o = quiver(&[&"search", &db, &"--vector", &"0,1,0.1", &"-k", &"1"]);
    assert!(stdout(&o).starts_with("query 0: 71 "), "{}", stdout(&o));
}

#[test]
fn bad_arguments_and_files_are_one_line_errors_with_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    assert_fails(
        &quiver(&[&"stats", &tmp.path().join("missing")]),
        2,
        "quiver create",
    );
    assert!(
        quiver(&[&"create", &db, &"--dim", &"4", &"--metric", &"ip"])
            .status
            .success()
    );
    assert_fails(
        &quiver(&[&"create", &db, &"--dim", &"4", &"--metric", &"ip"]),
        2,
        "not empty",
    );
    // Wrong dimension.
    let wrong = tmp.path().join("wrong.fvecs");
    write_fvecs(&wrong, &vectors(5, 3, 2));
    assert_fails(&quiver(&[&"import", &db, &wrong]), 2, "3-d");
    // Truncated file: the error says which rows are committed.
    let good = tmp.path().join("good.fvecs");
    write_fvecs(&good, &vectors(10, 4, 3));
    let mut bytes = std::fs::read(&good).unwrap();
    bytes.truncate(bytes.len() - 6);
    let cut = tmp.path().join("cut.fvecs");
    std::fs::write(&cut, bytes).unwrap();
    let o = quiver(&[&"import", &db, &cut, &"--batch", &"4"]);
    assert_fails(&o, 2, "--start 8");
    // Unknown extension, missing file, and a bad metric (clap's own usage error).
    let txt = tmp.path().join("vectors.txt");
    std::fs::write(&txt, "1 2 3 4").unwrap();
    assert_fails(&quiver(&[&"import", &db, &txt]), 2, "vectors.txt");
    assert_fails(
        &quiver(&[&"import", &db, &tmp.path().join("none.fvecs")]),
        2,
        "none.fvecs",
    );
    let o = quiver(&[
        &"create",
        &tmp.path().join("x"),
        &"--dim",
        &"4",
        &"--metric",
        &"hamming",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn verify_names_a_damaged_file_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    assert!(
        quiver(&[&"create", &db, &"--dim", &"8", &"--metric", &"l2"])
            .status
            .success()
    );
    // Seal the rows into a column file: a small growing threshold, through
    // the library.
    {
        let options = quiver::Options::new(8, quiver::Metric::L2).growing_threshold(100);
        let d = quiver::Database::open(&db, options).unwrap();
        let mut w = d.writer().unwrap();
        w.upsert_batch(
            &(0..400).collect::<Vec<u64>>(),
            &vectors(400, 8, 4).concat(),
            None,
        )
        .unwrap();
        w.commit().unwrap();
    }
    let column = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "col"))
        .expect("a sealed segment");
    let mut bytes = std::fs::read(&column).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&column, bytes).unwrap();
    let o = quiver(&[&"verify", &db]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let name = column.file_name().unwrap().to_string_lossy().into_owned();
    assert!(stdout(&o).contains(&name), "{}", stdout(&o));
    assert!(!stderr(&o).contains("panicked"));
}

/// `quiver bench --json` over 2,000 random 16-d rows and 20 queries (seeds
/// `seed` and `seed + 1`) written in `dir`, with `extra` arguments; its
/// parsed output.
fn bench_json(
    dir: &std::path::Path,
    seed: u64,
    extra: &[&dyn AsRef<std::ffi::OsStr>],
) -> serde_json::Value {
    let base = dir.join("base.fvecs");
    let queries = dir.join("queries.fvecs");
    write_fvecs(&base, &vectors(2000, 16, seed));
    write_fvecs(&queries, &vectors(20, 16, seed + 1));
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"bench",
        &"--base",
        &base,
        &"--queries",
        &queries,
        &"--metric",
        &"l2",
        &"--json",
    ];
    args.extend_from_slice(extra);
    let o = quiver(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap()
}

#[test]
fn bench_json_has_the_documented_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let v = bench_json(tmp.path(), 5, &[&"--ef", &"16,64", &"--threads", &"1,2"]);
    for field in [
        "rows",
        "dim",
        "metric",
        "m",
        "ef_construction",
        "k",
        "queries",
        "isa",
        "reused",
        "build_s",
        "open_ms",
        "peak_rss_bytes",
        "bytes_on_disk",
        "bytes_per_vector",
        "results",
        "batch",
        "seed",
        "patterns",
    ] {
        assert!(v.get(field).is_some(), "missing {field} in {v}");
    }
    assert_eq!(v["patterns"][0]["pattern"], "one", "the default pattern");
    let results = v["results"].as_array().unwrap();
    assert_eq!(
        results.len(),
        6,
        "the default ef (0) and 2 efs, x 2 thread counts"
    );
    for r in results {
        for field in [
            "ef", "threads", "recall", "qps", "p50_ms", "p95_ms", "p99_ms",
        ] {
            assert!(r.get(field).is_some(), "missing {field} in {r}");
        }
    }
    assert_eq!(v["rows"], 2000);
    assert!(v["results"][1]["recall"].as_f64().unwrap() > 0.9, "{v}");
}

#[test]
fn bench_json_reports_each_build_pattern() {
    let tmp = tempfile::tempdir().unwrap();
    let map = tmp.path().join("churn.ivecs");
    let v = bench_json(
        tmp.path(),
        7,
        &[
            &"--ef",
            &"64",
            &"--threads",
            &"1",
            &"--pattern",
            &"one,100,churn",
            &"--churn-map",
            &map,
        ],
    );
    let patterns = v["patterns"].as_array().unwrap();
    let names: Vec<&str> = patterns
        .iter()
        .map(|p| p["pattern"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["one", "100", "churn"]);
    for p in patterns {
        for field in [
            "pattern",
            "rows",
            "reused",
            "build_s",
            "operations",
            "commits",
            "commit_rows",
            "ingest_rows_per_s",
            "commit_p50_ms",
            "commit_p99_ms",
            "commit_max_ms",
            "sealing_commits",
            "segments",
            "growing_rows",
            "deleted_rows",
            "generation",
            "merges",
            "merges_during_queries",
            "merge_settle_ms",
            "query_phase_ms",
            "merging_during_queries",
            "segments_settled",
            "deleted_rows_settled",
            "truth",
            "open_ms",
            "peak_rss_bytes",
            "bytes_on_disk",
            "bytes_per_vector",
            "results",
            "batch",
        ] {
            assert!(p.get(field).is_some(), "missing {field} in {p}");
        }
        assert!(p["results"][0]["recall"].as_f64().unwrap() > 0.9, "{p}");
        assert!(p["commit_max_ms"].as_f64() >= p["commit_p50_ms"].as_f64());
    }
    assert_eq!(patterns[0]["commits"], 1);
    assert_eq!(patterns[1]["commits"], 20);
    assert_eq!(
        patterns[1]["growing_rows"], 2000,
        "below the seal threshold"
    );
    let churn = &patterns[2];
    assert_eq!(churn["rows"], 1400, "30 % deleted");
    assert_eq!(churn["operations"], 2000 + 600 + 200);
    assert_eq!(churn["commits"], 20 + 8);
    assert_eq!(churn["truth"], "exact");
    assert_eq!(
        std::fs::read(&map).unwrap().len(),
        1400 * 12,
        "[2, id, source row] per live id"
    );
}
