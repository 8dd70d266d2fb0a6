#!/usr/bin/env python3
"""Side-by-side ANN benchmark: hnswlib, FAISS IndexHNSWFlat and usearch (and
Quiver, through `quiver bench --json`) on the same .fvecs data, in one run.

Every system is built in one go with the same M and ef_construction using all
cores, then queried single-threaded for each ef: one untimed warm-up pass of
one query per call (as `quiver bench` does), a timed pass of one query per
call (recall@k, QPS, p50/p99 latency: through Python, so each call carries the
interpreter's and the binding's cost; the cost of the timing loop itself around
a no-op is measured and saved as `python_overhead`), and one batch call that
loops over the queries in C/C++ on one thread (`qps_c_loop`: the throughput
comparable with Quiver's loop of `search_with` calls in Rust). Also build time
and peak memory (each peer runs in its own child process so that its peak is
its own).

`--patterns one,10k,100,churn` runs Quiver's build patterns (`quiver bench
--pattern`); with `100`, hnswlib's `add_items` in batches of 100 rows is timed
as the ingest reference; with `churn`, every peer is also built in one go on
the churn's final rows (the map `quiver bench --churn-map` writes) and
measured against the exact ground truth of those rows.
`benches/peers/report.py` runs this several times and writes docs/BENCHMARKS.md.

Setup (an ignored folder, never CI's test path):
    python3 -m venv target/peers-venv
    target/peers-venv/bin/pip install -r benches/peers/requirements.txt
Run:
    target/peers-venv/bin/python benches/peers/peers.py \
        --base ../shared/data/debian50k_base.fvecs \
        --queries ../shared/data/debian50k_query.fvecs \
        --gt ../shared/data/debian50k_groundtruth.ivecs --metric cosine \
        --quiver-cmd "target/release/quiver bench --threads 1,2" --patterns one,10k,100,churn
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        sys.exit(f"{path}: empty file")
    dim = int(raw[0])
    if dim <= 0 or raw.size % (dim + 1) != 0:
        sys.exit(f"{path}: not a .fvecs/.ivecs file (dimension {dim}, {raw.size} words)")
    rows = raw.reshape(-1, dim + 1)
    if not np.all(rows[:, 0] == dim):
        sys.exit(f"{path}: rows of different dimensions")
    return rows[:, 1:].copy().view(dtype)


def exact_ground_truth(base, queries, metric, k):
    gt = np.empty((len(queries), k), dtype=np.int32)
    norms = (base * base).sum(1)[None, :]
    for start in range(0, len(queries), 64):
        q = queries[start:start + 64]
        d = norms - 2 * (q @ base.T) if metric == "l2" else -(q @ base.T)
        part = np.argpartition(d, k, axis=1)[:, :k]
        order = np.take_along_axis(d, part, axis=1).argsort(axis=1)
        gt[start:start + len(q)] = np.take_along_axis(part, order, axis=1)
    return gt


def write_ivecs(path, rows):
    rows = np.asarray(rows, dtype=np.int32)
    out = np.empty((len(rows), rows.shape[1] + 1), dtype=np.int32)
    out[:, 0] = rows.shape[1]
    out[:, 1:] = rows
    out.tofile(path)


def measure(search, batch_search, queries, gt, k, labels=None):
    """Single thread. One untimed pass of one query per call (the warm-up
    `quiver bench` does too), then a timed pass of one query per call through
    Python (recall@k, QPS over the summed call times, p50 and p99 in ms: these
    include the per-call cost of Python and the binding), then one batch call
    that loops over the queries in C/C++ on one thread (`qps_c_loop`, the
    figure comparable with Quiver's loop in Rust). `labels` maps what the
    index returns to ids (FAISS returns positions)."""
    to_id = (lambda x: int(x)) if labels is None else (lambda x: int(labels[x]) if x >= 0 else -1)
    for q in queries:
        search(q)
    lat = np.empty(len(queries))
    hits = 0
    for i, q in enumerate(queries):
        t = time.perf_counter()
        ids = search(q)
        lat[i] = time.perf_counter() - t
        hits += len(set(to_id(x) for x in ids[:k]) & set(int(x) for x in gt[i, :k]))
    out = {
        "recall": hits / (len(queries) * k),
        "qps": len(queries) / lat.sum(),
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
    }
    if batch_search is not None:
        t = time.perf_counter()
        found = batch_search(queries)
        wall = time.perf_counter() - t
        hits = sum(len(set(to_id(x) for x in found[i][:k]) & set(int(x) for x in gt[i, :k]))
                   for i in range(len(queries)))
        out["qps_c_loop"] = len(queries) / wall
        out["recall_c_loop"] = hits / (len(queries) * k)
    return out


def python_overhead(queries, k):
    """What the per-call timing adds by itself: `measure`'s loop around a
    Python function that returns a prepared array at once."""
    ready = np.arange(k)
    r = measure(lambda q: ready, None, queries, np.zeros((len(queries), k), dtype=np.int32), k)
    return {"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "mean_ms": 1e3 / r["qps"]}


def run_hnswlib(base, labels, queries, gt, args):
    import hnswlib
    space = {"l2": "l2", "ip": "ip", "cosine": "ip"}[args.metric]
    index = hnswlib.Index(space=space, dim=base.shape[1])
    t = time.perf_counter()
    index.init_index(max_elements=len(base), M=args.m, ef_construction=args.ef_construction, random_seed=1)
    index.set_num_threads(os.cpu_count())
    index.add_items(base, labels)
    build = time.perf_counter() - t
    index.set_num_threads(1)
    results = {}
    for ef in args.efs:
        index.set_ef(max(ef, args.k))
        results[ef] = measure(lambda q: index.knn_query(q, k=args.k)[0][0],
                              lambda qs: index.knn_query(qs, k=args.k, num_threads=1)[0], queries, gt, args.k)
    return build, results


def hnswlib_ingest(base, labels, args, batch=100):
    """hnswlib's answer to Quiver's 100-row commits: `add_items` of 100 rows at
    a time (all cores, as the one-go build), timed as a whole."""
    import hnswlib
    space = {"l2": "l2", "ip": "ip", "cosine": "ip"}[args.metric]
    index = hnswlib.Index(space=space, dim=base.shape[1])
    t = time.perf_counter()
    index.init_index(max_elements=len(base), M=args.m, ef_construction=args.ef_construction, random_seed=1)
    index.set_num_threads(os.cpu_count())
    for at in range(0, len(base), batch):
        index.add_items(base[at:at + batch], labels[at:at + batch])
    secs = time.perf_counter() - t
    return {"ingest_batch_rows": batch, "ingest_batch_s": secs, "ingest_batch_rows_per_s": len(base) / secs}


def run_faiss(base, labels, queries, gt, args):
    import faiss
    metric = faiss.METRIC_L2 if args.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    index = faiss.IndexHNSWFlat(base.shape[1], args.m, metric)
    index.hnsw.efConstruction = args.ef_construction
    faiss.omp_set_num_threads(os.cpu_count())
    t = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - t
    faiss.omp_set_num_threads(1)
    results = {}
    for ef in args.efs:
        index.hnsw.efSearch = max(ef, args.k)
        results[ef] = measure(lambda q: index.search(q[None, :], args.k)[1][0],
                              lambda qs: index.search(qs, args.k)[1], queries, gt, args.k, labels)
    return build, results


def run_usearch(base, labels, queries, gt, args):
    from usearch.index import Index
    metric = {"l2": "l2sq", "ip": "ip", "cosine": "ip"}[args.metric]
    index = Index(ndim=base.shape[1], metric=metric, dtype="f32", connectivity=args.m,
                  expansion_add=args.ef_construction)
    t = time.perf_counter()
    index.add(labels, base, threads=os.cpu_count())
    build = time.perf_counter() - t
    results = {}
    for ef in args.efs:
        index.expansion_search = max(ef, args.k)
        results[ef] = measure(lambda q: index.search(q, args.k, threads=1).keys,
                              lambda qs: index.search(qs, args.k, threads=1).keys, queries, gt, args.k)
    return build, results


def run_quiver(args):
    """Runs `quiver bench --json` (args.quiver_cmd) for every pattern and keeps
    the single-thread results of pattern `one` (or the first) for the one-go
    comparison; the whole object is kept too, for the patterns, open time,
    memory and threads."""
    cmd = args.quiver_cmd.split() + [
        "--base", args.base, "--queries", args.queries, "--metric", args.metric,
        "--m", str(args.m), "--ef-construction", str(args.ef_construction),
        "--ef", ",".join(map(str, args.efs)), "-k", str(args.k),
        "--max-queries", str(args.max_queries), "--pattern", ",".join(args.patterns),
        "--seed", str(args.seed), "--json"]
    if args.gt:
        cmd += ["--gt", args.gt]
    if "churn" in args.patterns:
        cmd += ["--churn-map", args.churn_map]
    print("+", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    data = json.loads(out.strip().splitlines()[-1])
    patterns = {p["pattern"]: p for p in data.get("patterns", [])}
    first = patterns.get("one") or data
    results = {r["ef"]: r for r in first["results"] if r["threads"] == 1}
    return {"build_s": first["build_s"], "results": results, "peak_rss_bytes": first["peak_rss_bytes"],
            "pattern": first.get("pattern", "one"), "quiver": data}


def run_peer_child(name, args, final=None):
    """Runs one peer in a child process of this script, so that its peak
    memory is its own (taken after its one-go build and queries, before the
    extra builds)."""
    cmd = [sys.executable, __file__, "--only", name, "--base", args.base, "--queries", args.queries,
           "--metric", args.metric, "--m", str(args.m), "--ef-construction", str(args.ef_construction),
           "--efs", ",".join(map(str, args.efs)), "-k", str(args.k), "--max-queries", str(args.max_queries)]
    if args.gt:
        cmd += ["--gt", args.gt]
    if "100" in args.patterns:
        cmd += ["--ingest"]
    if final:
        cmd += ["--final-map", final[0], "--final-gt", final[1]]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    data = json.loads(out.strip().splitlines()[-1])
    data["results"] = {int(ef): r for ef, r in data["results"].items()}
    if "final" in data:
        data["final"]["results"] = {int(ef): r for ef, r in data["final"]["results"].items()}
    return data


def read_final(path, base):
    """The churn build's final rows: ids and the base rows whose vectors they hold."""
    m = read_vecs(path, np.int32)
    return m[:, 0].astype(np.int64), np.ascontiguousarray(base[m[:, 1]])


def print_results(results, k):
    for ef, r in results.items():
        loop = f"  C loop {r['qps_c_loop']:9.1f} QPS" if "qps_c_loop" in r else ""
        print(f"{'':8s} ef {ef:4d}  recall@{k} {r['recall']:.4f}  QPS {r['qps']:9.1f}{loop}  "
              f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--gt", help=".ivecs ground truth; computed exactly when missing")
    p.add_argument("--metric", choices=["l2", "ip", "cosine"], default="cosine")
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--efs", default="16,32,64,128,256")
    p.add_argument("-k", "--k", type=int, default=10)
    p.add_argument("--max-queries", type=int, default=1000)
    p.add_argument("--systems", default="hnswlib,faiss,usearch")
    p.add_argument("--quiver-cmd", help="command that runs Quiver's side and prints JSON")
    p.add_argument("--patterns", default="one",
                   help="Quiver's build patterns (one,10k,100,churn); with 100, hnswlib's add_items in "
                        "batches of 100 is timed too; with churn, the peers are also built on its final rows")
    p.add_argument("--seed", type=int, default=11, help="seed of the churn pattern's choice of ids")
    p.add_argument("--json", help="write all results to this file")
    p.add_argument("--only", help=argparse.SUPPRESS)  # child mode: run one peer, print JSON
    p.add_argument("--ingest", action="store_true", help=argparse.SUPPRESS)  # child: time batches of 100
    p.add_argument("--final-map", help=argparse.SUPPRESS)  # child: also build on the churn's final rows
    p.add_argument("--final-gt", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.efs = [int(x) for x in args.efs.split(",")]
    args.patterns = [x for x in args.patterns.split(",") if x]
    stem = args.json or "peers"
    args.churn_map = stem + ".churn.ivecs"

    base = read_vecs(args.base, np.float32)
    queries = read_vecs(args.queries, np.float32)[:args.max_queries]
    if args.metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if args.gt:
        gt = read_vecs(args.gt, np.int32)[:len(queries)]
    elif args.only:
        sys.exit("--only needs --gt")
    else:
        gt = exact_ground_truth(base, queries, args.metric, args.k)
        # Quiver's side reads the same ground truth instead of computing it again.
        args.gt = stem + ".gt.ivecs"
        write_ivecs(args.gt, gt)

    runners = {"hnswlib": run_hnswlib, "faiss": run_faiss, "usearch": run_usearch}
    if args.only:
        run = runners[args.only]
        build, results = run(base, np.arange(len(base)), queries, gt, args)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out = {"build_s": build, "results": results, "peak_rss_bytes": peak}
        if args.ingest and args.only == "hnswlib":
            out.update(hnswlib_ingest(base, np.arange(len(base)), args))
        if args.final_map:
            ids, rows = read_final(args.final_map, base)
            fbuild, fresults = run(rows, ids, queries, read_vecs(args.final_gt, np.int32), args)
            out["final"] = {"rows": len(ids), "build_s": fbuild, "results": fresults}
        print(json.dumps(out))
        return
    report = {"machine": os.uname().machine, "cpus": os.cpu_count(), "rows": len(base),
              "dim": base.shape[1], "queries": len(queries), "m": args.m,
              "ef_construction": args.ef_construction, "patterns": args.patterns, "seed": args.seed,
              "python_overhead": python_overhead(queries, args.k), "systems": {}}
    print(f"Python per-call overhead (a no-op through the same timing loop): "
          f"p50 {report['python_overhead']['p50_ms'] * 1e3:.2f} us", flush=True)
    final = None
    if args.quiver_cmd:
        # Quiver first: its churn build writes the final rows the peers are built on too.
        data = run_quiver(args)
        report["systems"]["quiver"] = data
        print(f"quiver   build {data['build_s']:7.2f} s  peak RSS {data['peak_rss_bytes'] / 2**20:.0f} MiB"
              f"  (pattern {data['pattern']})", flush=True)
        print_results(data["results"], args.k)
        for pat in data["quiver"].get("patterns", []):
            one = {r["ef"]: r for r in pat["results"] if r["threads"] == 1}
            print(f"  pattern {pat['pattern']:5s}: {pat['segments']} segments, {pat['growing_rows']} growing, "
                  f"{pat['ingest_rows_per_s'] or 0:,.0f} rows/s, commit p50/p99/max {pat['commit_p50_ms'] or 0:.2f}/"
                  f"{pat['commit_p99_ms'] or 0:.2f}/{pat['commit_max_ms'] or 0:.2f} ms", flush=True)
            print_results(one, args.k)
        if "churn" in args.patterns and os.path.exists(args.churn_map):
            ids, rows = read_final(args.churn_map, base)
            fgt = ids[exact_ground_truth(rows, queries, args.metric, args.k)]
            write_ivecs(stem + ".churn-gt.ivecs", fgt)
            final = (args.churn_map, stem + ".churn-gt.ivecs")
            report["final_rows"] = len(ids)
    for name in [s for s in args.systems.split(",") if s]:
        data = run_peer_child(name, args, final)
        report["systems"][name] = data
        print(f"{name:8s} build {data['build_s']:7.2f} s  peak RSS {data['peak_rss_bytes'] / 2**20:.0f} MiB",
              flush=True)
        print_results(data["results"], args.k)
        if "ingest_batch_rows_per_s" in data:
            print(f"{'':8s} add_items in batches of {data['ingest_batch_rows']}: "
                  f"{data['ingest_batch_rows_per_s']:,.0f} rows/s", flush=True)
        if "final" in data:
            print(f"{'':8s} on the churn's final {data['final']['rows']} rows: build {data['final']['build_s']:.2f} s",
                  flush=True)
            print_results(data["final"]["results"], args.k)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
