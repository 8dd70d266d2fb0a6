#!/usr/bin/env python3
"""Side-by-side ANN benchmark: hnswlib, FAISS IndexHNSWFlat and usearch (and
Quiver, through `quiver bench --json`) on the same .fvecs data, in one run.

Every system is built with the same M and ef_construction using all cores, then
queried single-threaded, one query per call, for each ef. Prints recall@k, QPS
and p50/p99 latency per ef, build time and peak memory (each peer runs in its
own child process so that its peak is its own). `benches/peers/report.py` runs
this several times and writes docs/BENCHMARKS.md.

Setup (an ignored folder, never CI's test path):
    python3 -m venv target/peers-venv
    target/peers-venv/bin/pip install -r benches/peers/requirements.txt
Run:
    target/peers-venv/bin/python benches/peers/peers.py \
        --base ../shared/data/debian50k_base.fvecs \
        --queries ../shared/data/debian50k_query.fvecs \
        --gt ../shared/data/debian50k_groundtruth.ivecs --metric cosine \
        --quiver-cmd "target/release/quiver bench --threads 1,2"
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


def measure(search, queries, gt, k):
    """Single-thread, one query per call: recall@k, QPS, p50 and p99 in ms."""
    lat = np.empty(len(queries))
    hits = 0
    for i, q in enumerate(queries):
        t = time.perf_counter()
        ids = search(q)
        lat[i] = time.perf_counter() - t
        hits += len(set(int(x) for x in ids[:k]) & set(int(x) for x in gt[i, :k]))
    return {
        "recall": hits / (len(queries) * k),
        "qps": len(queries) / lat.sum(),
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
    }


def run_hnswlib(base, queries, gt, args):
    import hnswlib
    space = {"l2": "l2", "ip": "ip", "cosine": "ip"}[args.metric]
    index = hnswlib.Index(space=space, dim=base.shape[1])
    t = time.perf_counter()
    index.init_index(max_elements=len(base), M=args.m, ef_construction=args.ef_construction, random_seed=1)
    index.set_num_threads(os.cpu_count())
    index.add_items(base, np.arange(len(base)))
    build = time.perf_counter() - t
    index.set_num_threads(1)
    results = {}
    for ef in args.efs:
        index.set_ef(max(ef, args.k))
        results[ef] = measure(lambda q: index.knn_query(q, k=args.k)[0][0], queries, gt, args.k)
    return build, results


def run_faiss(base, queries, gt, args):
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
        results[ef] = measure(lambda q: index.search(q[None, :], args.k)[1][0], queries, gt, args.k)
    return build, results


def run_usearch(base, queries, gt, args):
    from usearch.index import Index
    metric = {"l2": "l2sq", "ip": "ip", "cosine": "ip"}[args.metric]
    index = Index(ndim=base.shape[1], metric=metric, dtype="f32", connectivity=args.m,
                  expansion_add=args.ef_construction)
    t = time.perf_counter()
    index.add(np.arange(len(base)), base, threads=os.cpu_count())
    build = time.perf_counter() - t
    results = {}
    for ef in args.efs:
        index.expansion_search = max(ef, args.k)
        results[ef] = measure(lambda q: index.search(q, args.k, threads=1).keys, queries, gt, args.k)
    return build, results


def run_quiver(args):
    """Runs `quiver bench --json` (args.quiver_cmd) and keeps its single-thread
    results; the whole object is kept too, for open time, memory and threads."""
    cmd = args.quiver_cmd.split() + [
        "--base", args.base, "--queries", args.queries, "--metric", args.metric,
        "--m", str(args.m), "--ef-construction", str(args.ef_construction),
        "--ef", ",".join(map(str, args.efs)), "-k", str(args.k),
        "--max-queries", str(args.max_queries), "--json"]
    if args.gt:
        cmd += ["--gt", args.gt]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    data = json.loads(out.strip().splitlines()[-1])
    results = {r["ef"]: r for r in data["results"] if r["threads"] == 1}
    return {"build_s": data["build_s"], "results": results, "peak_rss_bytes": data["peak_rss_bytes"],
            "quiver": data}


def run_peer_child(name, args):
    """Runs one peer in a child process of this script, so that its peak
    memory is its own."""
    cmd = [sys.executable, __file__, "--only", name, "--base", args.base, "--queries", args.queries,
           "--metric", args.metric, "--m", str(args.m), "--ef-construction", str(args.ef_construction),
           "--efs", ",".join(map(str, args.efs)), "-k", str(args.k), "--max-queries", str(args.max_queries)]
    if args.gt:
        cmd += ["--gt", args.gt]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    data = json.loads(out.strip().splitlines()[-1])
    data["results"] = {int(ef): r for ef, r in data["results"].items()}
    return data


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
    p.add_argument("--json", help="write all results to this file")
    p.add_argument("--only", help=argparse.SUPPRESS)  # child mode: run one peer, print JSON
    args = p.parse_args()
    args.efs = [int(x) for x in args.efs.split(",")]

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
        args.gt = (args.json or "peers") + ".gt.ivecs"
        write_ivecs(args.gt, gt)

    runners = {"hnswlib": run_hnswlib, "faiss": run_faiss, "usearch": run_usearch}
    if args.only:
        build, results = runners[args.only](base, queries, gt, args)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"build_s": build, "results": results, "peak_rss_bytes": peak}))
        return
    report = {"machine": os.uname().machine, "cpus": os.cpu_count(), "rows": len(base),
              "dim": base.shape[1], "queries": len(queries), "m": args.m,
              "ef_construction": args.ef_construction, "systems": {}}
    systems = [s for s in args.systems.split(",") if s]
    if args.quiver_cmd:
        systems.append("quiver")
    for name in systems:
        data = run_quiver(args) if name == "quiver" else run_peer_child(name, args)
        report["systems"][name] = data
        print(f"{name:8s} build {data['build_s']:7.2f} s  peak RSS {data['peak_rss_bytes'] / 2**20:.0f} MiB",
              flush=True)
        for ef, r in data["results"].items():
            print(f"{'':8s} ef {ef:4d}  recall@{args.k} {r['recall']:.4f}  QPS {r['qps']:9.1f}  "
                  f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
