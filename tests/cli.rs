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
    if err.starts_with("quiver:") {
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
    assert_fails(&quiver(&[&"get", &db, &"17"]), 1, "id 17 is not in");
    // Deleting is idempotent: the ids not there are named, and exit 1 says
    // some were not found; the others are deleted all the same.
    let o = quiver(&[&"delete", &db, &"18", &"999999", &"18"]);
    assert!(stdout(&o).contains("deleted 0 ids"), "{}", stdout(&o));
    assert_fails(&o, 1, "not present, nothing to delete: [18, 999999]");

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
        "already holds a Quiver database (4-d, ip, 0 rows); pick a new directory",
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
fn verify_names_a_damaged_file_and_exits_3() {
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
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    let name = column.file_name().unwrap().to_string_lossy().into_owned();
    assert!(stdout(&o).contains(&name), "{}", stdout(&o));
    assert_fails(&o, 3, "restore the directory from a backup");
    // Any other command that meets the damage exits 3 too, and says what to do.
    let o = quiver(&[&"search", &db, &"--vector", &"1,1,1,1,1,1,1,1", &"--exact"]);
    assert_fails(&o, 3, &format!("run `quiver verify {}`", db.display()));
    assert_fails(&o, 3, "restore the directory from a backup");
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

/// A new database in `dir` of `dim`-d vectors under `metric`.
fn create(dir: &Path, dim: usize, metric: &str) {
    let o = quiver(&[
        &"create",
        &dir,
        &"--dim",
        &dim.to_string(),
        &"--metric",
        &metric,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Runs a command line that `quiver` printed as advice (`quiver import ...`
/// between backticks, plain words), as a user would paste it.
fn run_advice(advice: &str) -> Output {
    let words: Vec<&str> = advice.split_whitespace().collect();
    assert_eq!(words[0], "quiver", "{advice}");
    let args: Vec<&dyn AsRef<std::ffi::OsStr>> = words[1..]
        .iter()
        .map(|w| w as &dyn AsRef<std::ffi::OsStr>)
        .collect();
    quiver(&args)
}

/// The `n`-th command between backticks in `text`.
fn backticked(text: &str, n: usize) -> &str {
    text.split('`')
        .nth(2 * n + 1)
        .unwrap_or_else(|| panic!("no command {n} in {text:?}"))
}

/// Live rows, from `quiver stats --json`.
fn live_rows(db: &Path) -> u64 {
    let o = quiver(&[&"stats", &db, &"--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    stats["rows"].as_u64().unwrap()
}

#[test]
fn query_inputs_of_another_dimension_are_refused_like_imports() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    create(&db, 16, "l2");
    let base16 = tmp.path().join("base16.fvecs");
    write_fvecs(&base16, &vectors(50, 16, 8));
    let q32 = tmp.path().join("q32.fvecs");
    write_fvecs(&q32, &vectors(4, 32, 9));
    let want = format!(
        "{}: holds 32-d vectors but the database stores 16-d ones",
        q32.display()
    );
    assert_fails(&quiver(&[&"import", &db, &q32]), 2, &want);
    assert_fails(&quiver(&[&"search", &db, &"--query", &q32]), 2, &want);
    let o = quiver(&[
        &"bench",
        &"--base",
        &base16,
        &"--queries",
        &q32,
        &"--metric",
        &"l2",
    ]);
    assert_fails(&o, 2, &want);
    let v32 = vec!["0.5"; 32].join(",");
    assert_fails(
        &quiver(&[&"search", &db, &"--vector", &v32]),
        2,
        "--vector has 32 values but the database stores 16-d vectors",
    );
    // A query file whose rows change dimension part way is refused too.
    let mixed = tmp.path().join("mixed.fvecs");
    let mut rows = vectors(2, 16, 10);
    rows.push(vec![1.0; 32]);
    write_fvecs(&mixed, &rows);
    assert_fails(
        &quiver(&[&"search", &db, &"--query", &mixed]),
        2,
        "row 2: dimension 32, expected 16",
    );
}

#[test]
fn import_of_json_lines_keeps_the_payload_text_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    create(&db, 2, "l2");
    let payload = r#"{"z": 1, "a": 3.14159265358979323846264338327950288, "n": 123456789012345678901234567890}"#;
    let data = tmp.path().join("rows.jsonl");
    std::fs::write(
        &data,
        format!("{{\"vector\": [1, 2], \"payload\": {payload}}}\n"),
    )
    .unwrap();
    let o = quiver(&[&"import", &db, &data]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = quiver(&[&"get", &db, &"0", &"--json"]);
    let record: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(record["payload"], payload);
}

#[test]
fn out_of_range_values_are_refused_with_their_range() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let cases: [(&[&dyn AsRef<std::ffi::OsStr>], &str); 4] = [
        (
            &[&"--dim", &"4", &"--m", &"1"],
            "m is 1: it must be between 2 and 1024",
        ),
        (
            &[&"--dim", &"4", &"--m", &"4096"],
            "m is 4096: it must be between 2 and 1024",
        ),
        (
            &[&"--dim", &"4", &"--ef-construction", &"8"],
            "ef_construction is 8: it must be between m (16) and 65536",
        ),
        (
            &[&"--dim", &"0"],
            "dimension is 0: it must be between 1 and 65536",
        ),
    ];
    for (extra, message) in cases {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"create", &db, &"--metric", &"l2"];
        args.extend_from_slice(extra);
        assert_fails(&quiver(&args), 2, message);
        assert!(!db.exists(), "{message}: nothing was created");
    }
    let o = quiver(&[
        &"create",
        &db,
        &"--dim",
        &"4",
        &"--metric",
        &"l2",
        &"--m",
        &"8",
        &"--ef-construction",
        &"40",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = quiver(&[&"stats", &db]);
    assert!(
        stdout(&o).contains("m 8, ef_construction 40"),
        "{}",
        stdout(&o)
    );
    let o = quiver(&[&"stats", &db, &"--json"]);
    let stats: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (stats["m"].as_u64(), stats["ef_construction"].as_u64()),
        (Some(8), Some(40))
    );

    let data = tmp.path().join("base.fvecs");
    write_fvecs(&data, &vectors(20, 4, 11));
    let cases: [(&[&dyn AsRef<std::ffi::OsStr>], &str); 9] = [
        (
            &[
                &"bench",
                &"--base",
                &data,
                &"--queries",
                &data,
                &"--max-queries",
                &"0",
            ],
            "--max-queries is 0: it must be at least 1",
        ),
        (
            &[&"search", &db, &"--vector", &"1,2,3,4", &"-k", &"0"],
            "k is 0: it must be between 1 and 65536",
        ),
        (
            &[&"search", &db, &"--vector", &"1,2,3,4", &"--ef", &"5"],
            "ef is 5: it must be between k (10) and 65536",
        ),
        (
            &[&"import", &db, &data, &"--batch", &"0"],
            "--batch is 0: it must be between 1 and 4294967294",
        ),
        (
            &[&"compact", &db, &"--target-segment-rows", &"0"],
            "target_segment_rows is 0: it must be between 1 and 4294967294",
        ),
        (
            &[&"compact", &db, &"--m", &"2000", &"--dry-run"],
            "m is 2000: it must be between 2 and 1024",
        ),
        (
            &[&"compact", &db, &"--ef-construction", &"4", &"--dry-run"],
            "ef_construction is 4: it must be between m (8) and 65536",
        ),
        (
            &[
                &"bench",
                &"--base",
                &data,
                &"--queries",
                &data,
                &"--threads",
                &"0",
            ],
            "--threads is 0: it must be between 1 and 1024",
        ),
        (
            &[
                &"bench",
                &"--base",
                &data,
                &"--queries",
                &data,
                &"--ef",
                &"4",
            ],
            "ef is 4: it must be between k (10) and 65536",
        ),
    ];
    for (args, message) in cases {
        assert_fails(&quiver(args), 2, message);
    }
}

#[test]
fn a_second_import_replaces_no_row_and_says_how_to_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    create(&db, 4, "l2");
    let data = tmp.path().join("base.fvecs");
    let rows = vectors(10, 4, 12);
    write_fvecs(&data, &rows);
    assert!(quiver(&[&"import", &db, &data]).status.success());

    let o = quiver(&[&"import", &db, &data]);
    assert_fails(
        &o,
        2,
        &format!("row 0: id 0 is already in {}", db.display()),
    );
    assert_eq!(live_rows(&db), 10, "nothing was replaced");
    let err = stderr(&o);
    let after = backticked(&err, 0);
    assert!(after.ends_with("--id-offset 10"), "{err}");
    let o = run_advice(after);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(live_rows(&db), 20);
    let o = quiver(&[&"get", &db, &"13", &"--json"]);
    let record: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let got: Vec<f32> = record["vector"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got, rows[3], "id 13 holds row 3");

    let replace = backticked(&err, 1);
    assert!(replace.ends_with("--replace"), "{err}");
    assert!(run_advice(replace).status.success());
    assert_eq!(live_rows(&db), 20);
}

#[test]
fn a_duplicate_id_in_a_file_stops_the_import_at_its_row() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    create(&db, 2, "l2");
    let data = tmp.path().join("rows.jsonl");
    let ids = [5, 6, 7, 8, 6, 9];
    let text: String = ids
        .iter()
        .map(|id| format!("{{\"id\": {id}, \"vector\": [{id}, 1]}}\n"))
        .collect();
    std::fs::write(&data, text).unwrap();
    let o = quiver(&[
        &"import",
        &db,
        &data,
        &"--ids-from-field",
        &"id",
        &"--batch",
        &"3",
    ]);
    assert_fails(&o, 2, "row 4: id 6 is already in");
    let err = stderr(&o);
    assert!(err.contains("rows before 3 are committed"), "{err}");
    let go_on = backticked(&err, 0);
    assert!(
        go_on.ends_with("--ids-from-field id --batch 3 --replace --start 3"),
        "{err}"
    );
    assert!(run_advice(go_on).status.success());
    assert_eq!(live_rows(&db), 5);
}

#[test]
fn a_bad_row_is_named_and_the_resume_works_once_it_is_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    create(&db, 2, "cosine");
    let data = tmp.path().join("rows.jsonl");
    let line = |v: &str| format!("{{\"vector\": {v}}}\n");
    let mut rows: Vec<String> = (1..=6).map(|i| line(&format!("[{i}, 1]"))).collect();
    rows[5] = line("[0, 0]");
    std::fs::write(&data, rows.concat()).unwrap();
    let o = quiver(&[&"import", &db, &data, &"--batch", &"4"]);
    assert_fails(&o, 2, "row 5: zero vector");
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "rows before 4 are committed: fix row 5 of {}",
            data.display()
        )),
        "{err}"
    );
    rows[5] = line("[6, 1]");
    std::fs::write(&data, rows.concat()).unwrap();
    let o = run_advice(backticked(&err, 0));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(live_rows(&db), 6);
}

#[test]
fn sigterm_stops_an_import_with_the_row_that_resumes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    create(&db, 8, "l2");
    let data = tmp.path().join("base.fvecs");
    let total = 20_000;
    write_fvecs(&data, &vectors(total, 8, 13));
    let child = Command::new(env!("CARGO_BIN_EXE_quiver"))
        .arg("import")
        .args([db.as_os_str(), data.as_os_str()])
        .args(["--batch", "20"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first commits grow the manifest: the import is under way, past
    // the point where it catches the signal.
    let manifest = db.join("quiver.redb");
    let empty = std::fs::metadata(&manifest).unwrap().len();
    let began = std::time::Instant::now();
    while std::fs::metadata(&manifest).unwrap().len() == empty {
        assert!(began.elapsed().as_secs() < 30, "the import never committed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: kill(2) on the pid of a child this test spawned and has not
    // waited for.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_fails(&o, 130, "interrupted; rows before ");
    let resume = backticked(&err, 0);
    let start: u64 = resume.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(start > 0 && start.is_multiple_of(20), "{err}");
    assert_eq!(live_rows(&db), start, "every row before it is committed");
    let o = run_advice(resume);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(live_rows(&db), total as u64);
}

#[test]
fn a_directory_left_by_an_interrupted_create_can_be_created_again() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    std::fs::create_dir(&db).unwrap();
    std::fs::write(db.join("LOCK"), b"").unwrap();
    std::fs::write(db.join("quiver.redb.tmp"), b"half a manifest").unwrap();
    let o = quiver(&[&"stats", &db]);
    assert_fails(
        &o,
        2,
        &format!("create one with `quiver create {}", db.display()),
    );
    create(&db, 4, "l2");
    assert_eq!(live_rows(&db), 0);
}

#[test]
fn advice_never_suggests_a_command_that_cannot_work() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"not a database").unwrap();
    let o = quiver(&[&"stats", &file]);
    assert_fails(&o, 2, "it is a file");
    let suggestion = format!("quiver create {}", file.display());
    assert!(!stderr(&o).contains(&suggestion), "{}", stderr(&o));
    let o = quiver(&[&"create", &file, &"--dim", &"4", &"--metric", &"l2"]);
    assert_fails(&o, 2, "needs a new or empty directory");
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"x").unwrap();
    let o = quiver(&[&"stats", &other]);
    assert_fails(&o, 2, "give the directory `quiver create` made");
    assert!(!stderr(&o).contains(&format!("quiver create {}", other.display())));
}

#[test]
fn help_documents_the_exit_codes() {
    let o = quiver(&[&"--help"]);
    assert!(o.status.success());
    for code in [
        "1 not found",
        "2 bad input",
        "3 the database is damaged",
        "130 interrupted",
    ] {
        assert!(stdout(&o).contains(code), "{code}: {}", stdout(&o));
    }
}
