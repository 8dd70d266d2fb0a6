#!/usr/bin/env python3
"""Runs the side-by-side benchmark several times on each data set and writes
docs/BENCHMARKS.md (from benches/peers/BENCHMARKS.md.in) and its plots.

    python3 -m venv target/peers-venv
    target/peers-venv/bin/pip install -r benches/peers/requirements.txt
    target/peers-venv/bin/python benches/peers/report.py            # 3 runs per set, about 2 hours on 2 cores
    target/peers-venv/bin/python benches/peers/report.py --runs 1 --sets debian50k
    target/peers-venv/bin/python benches/peers/report.py --no-run    # rewrite the docs from saved runs
    # a smoke run on small files, written away from docs/:
    target/peers-venv/bin/python benches/peers/report.py --runs 1 --sets debian50k \
        --data debian50k=/tmp/base5k.fvecs,/tmp/q100.fvecs --max-queries 100 --efs 16,64 \
        --bench-dir /tmp/bench --out /tmp/BENCHMARKS.md

Each run measures Quiver's build patterns (`--patterns`, default all four:
`one`, `10k`, `100`, `churn`; see `quiver bench --pattern`) beside the peers.
Runs are saved as target/bench/<set>-run<i>.json (peers.py's --json); every
figure in the generated page is a median over the saved runs of a set.
Plots are SVG, drawn here without plotting libraries.
"""
import argparse
import glob
import json
import math
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETS = {
    "debian50k": {
        "title": "debian50k: 50k x 384 real sentence embeddings, cosine",
        "base": "../shared/data/debian50k_base.fvecs",
        "queries": "../shared/data/debian50k_query.fvecs",
        "gt": "../shared/data/debian50k_groundtruth.ivecs",
        "metric": "cosine",
    },
    "synth200k": {
        "title": "synth200k: 200k x 128 clustered synthetic (seeded, `examples/gen_synth.rs`), L2",
        "base": "target/synth-200k/base.fvecs",
        "queries": "target/synth-200k/query.fvecs",
        "gt": None,
        "metric": "l2",
        "generate": ["cargo", "run", "--release", "--example", "gen_synth", "--",
                     "--rows", "200000", "--dim", "128", "--queries", "1000", "--out", "target/synth-200k"],
    },
    "synth1m": {
        "title": "synth1m: 1M x 128 clustered synthetic (seeded, `examples/gen_synth.rs`), L2",
        "base": "target/synth-1m/base.fvecs",
        "queries": "target/synth-1m/query.fvecs",
        "gt": None,
        "metric": "l2",
        "generate": ["cargo", "run", "--release", "--example", "gen_synth", "--",
                     "--rows", "1000000", "--dim", "128", "--queries", "1000", "--out", "target/synth-1m"],
    },
}
COLOURS = {"quiver": "#d62728", "hnswlib": "#1f77b4", "faiss": "#2ca02c", "usearch": "#9467bd"}


def sh(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


PATTERNS = ["one", "10k", "100", "churn"]
PATTERN_TITLES = {
    "one": "(a) `one`: one commit of all rows",
    "10k": "(b) `10k`: commits of 10,000 rows",
    "100": "(c) `100`: commits of 100 rows",
    "churn": "(d) `churn`: (c), then 30 % deleted and 10 % upserted in commits of 100",
}


def run_set(name, runs, args):
    spec = SETS[name]
    if not os.path.exists(os.path.join(ROOT, spec["base"])):
        if "generate" not in spec:
            sys.exit(f"{spec['base']} is missing")
        sh(spec["generate"])
    os.makedirs(os.path.join(ROOT, args.bench_dir), exist_ok=True)
    for i in range(1, runs + 1):
        cmd = [sys.executable, "benches/peers/peers.py", "--base", spec["base"], "--queries", spec["queries"],
               "--metric", spec["metric"], "--quiver-cmd", "target/release/quiver bench",
               "--systems", args.systems, "--patterns", args.patterns,
               "--json", os.path.join(args.bench_dir, f"{name}-run{i}.json")]
        if spec["gt"]:
            cmd += ["--gt", spec["gt"]]
        if args.max_queries:
            cmd += ["--max-queries", str(args.max_queries)]
        if args.efs:
            cmd += ["--efs", args.efs]
        sh(cmd)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def qps_of(r):
    """The QPS a comparison uses: a peer's single-thread C/C++ loop over the
    queries where the run has it (Quiver's own loop is in Rust), else the
    one-query-per-call figure."""
    return r.get("qps_c_loop", r["qps"])


def cells(results):
    """Per ef (int): recall, comparable QPS, p50, p99 of one run's results."""
    return {int(ef): {"recall": r["recall"], "qps": qps_of(r), "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]}
            for ef, r in results.items()}


def median_cells(per_run):
    """Per ef: the median over runs of each figure."""
    efs = sorted({ef for c in per_run for ef in c})
    return {ef: {k: med(c[ef][k] for c in per_run if ef in c) for k in ("recall", "qps", "p50_ms", "p99_ms")}
            for ef in efs}


def summarise(runs):
    """Per system: median build, peak memory, and per ef median recall / QPS / p50 / p99."""
    out = {}
    for name in runs[0]["systems"]:
        per = [r["systems"][name] for r in runs]
        out[name] = {"build_s": med(p["build_s"] for p in per),
                     "peak_rss": med(p.get("peak_rss_bytes") for p in per),
                     "ef": median_cells([cells(p["results"]) for p in per])}
    return out


def at_target(cells, floor=0.95):
    """The highest QPS among the efs whose recall reaches `floor`, and that
    ef (0: Quiver's default, each segment's calibrated ef)."""
    ok = [(c["qps"], ef) for ef, c in cells.items() if c["recall"] >= floor]
    return max(ok) if ok else (None, None)


def ef_name(ef):
    return "auto" if ef == 0 else str(ef)


def svg_plot(summary, title):
    """Recall@10 (x) against QPS (y, log scale), one line per system."""
    w, h, left, right, top, bottom = 640, 400, 70, 130, 30, 50
    points = [(c["recall"], c["qps"]) for s in summary.values() for c in s["ef"].values()]
    x0, x1 = min(p[0] for p in points) - 0.01, 1.0
    y0, y1 = math.log10(min(p[1] for p in points) * 0.8), math.log10(max(p[1] for p in points) * 1.25)
    sx = lambda x: left + (x - x0) / (x1 - x0) * (w - left - right)
    sy = lambda y: top + (1 - (math.log10(y) - y0) / (y1 - y0)) * (h - top - bottom)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>',
             f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
             f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">recall@10</text>',
             f'<text x="16" y="{(top + h - bottom) / 2}" transform="rotate(-90 16 {(top + h - bottom) / 2})" '
             f'text-anchor="middle">queries per second (1 thread, log)</text>']
    step = 0.01 if x1 - x0 <= 0.12 else 0.05
    x = math.ceil(x0 / step) * step
    while x <= x1 + 1e-9:
        parts.append(f'<line x1="{sx(x):.1f}" y1="{h - bottom}" x2="{sx(x):.1f}" y2="{h - bottom + 4}" stroke="black"/>'
                     f'<text x="{sx(x):.1f}" y="{h - bottom + 16}" text-anchor="middle">{x:.2f}</text>')
        x += step
    for e in range(int(math.floor(y0)), int(math.ceil(y1)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if y0 <= math.log10(v) <= y1:
                parts.append(f'<line x1="{left}" y1="{sy(v):.1f}" x2="{w - right}" y2="{sy(v):.1f}" stroke="#ddd"/>'
                             f'<text x="{left - 4}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:,}</text>')
    parts.append(f'<line x1="{sx(0.95):.1f}" y1="{top}" x2="{sx(0.95):.1f}" y2="{h - bottom}" '
                 f'stroke="#999" stroke-dasharray="4 3"/>')
    for i, (name, s) in enumerate(summary.items()):
        colour = COLOURS.get(name, "black")
        pts = [(sx(c["recall"]), sy(c["qps"])) for c in sorted(s["ef"].values(), key=lambda c: c["recall"])]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in pts]
        ly = top + 20 + 18 * i
        parts.append(f'<line x1="{w - right + 12}" y1="{ly}" x2="{w - right + 32}" y2="{ly}" stroke="{colour}" '
                     f'stroke-width="2"/><text x="{w - right + 38}" y="{ly + 4}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def per_call_overhead(runs):
    """Per peer: median over runs and efs of (mean time of a call through
    Python) - (mean time per query of the C/C++ loop), in microseconds: what
    separates the two QPS figures of a run."""
    out = {}
    for name in runs[0]["systems"]:
        if name == "quiver":
            continue
        xs = [1e6 / r["qps"] - 1e6 / r["qps_c_loop"] for run in runs
              for r in run["systems"].get(name, {}).get("results", {}).values() if "qps_c_loop" in r]
        if xs:
            out[name] = med(xs)
    return out


def one_go(data):
    """The pattern-(a) object of a `quiver bench --json` output (the whole
    output for runs from before `--pattern`)."""
    return next((p for p in data.get("patterns", []) if p["pattern"] == "one"), data)


def section(name, runs, out_dir):
    spec, summary = SETS[name], summarise(runs)
    quiver = [one_go(r["systems"]["quiver"]["quiver"]) for r in runs if "quiver" in r["systems"].get("quiver", {})]
    svg = f"img/{name}-recall-qps.svg"
    os.makedirs(os.path.join(out_dir, "img"), exist_ok=True)
    with open(os.path.join(out_dir, svg), "w") as f:
        f.write(svg_plot(summary, spec["title"].split(":")[0] + f" (medians of {len(runs)} runs)"))
    efs = sorted({ef for s in summary.values() for ef in s["ef"]})
    c_loop = any("qps_c_loop" in r for run in runs for n, s in run["systems"].items() if n != "quiver"
                 for r in s["results"].values())
    how = ("one thread; Quiver a Rust loop of one `search_with` call per query, each peer one batch call "
           "that its library loops over in C/C++ on one thread" if c_loop else "one thread, one query per call")
    lines = [f"### {spec['title']}", "",
             f"{runs[0]['rows']:,} vectors, {runs[0]['queries']} queries, M {runs[0]['m']}, "
             f"ef_construction {runs[0]['ef_construction']}; medians of {len(runs)} runs.", "",
             f"![recall against QPS]({svg})", "",
             f"Recall@10 / queries per second ({how}):", "",
             "| system | " + " | ".join(f"ef {ef_name(ef)}" for ef in efs) + " |", "|---|" + "---|" * len(efs)]
    for sys_name, s in summary.items():
        lines.append(f"| {sys_name} | " + " | ".join(
            f"{s['ef'][ef]['recall']:.3f} / {s['ef'][ef]['qps']:,.0f}" if ef in s["ef"] else "" for ef in efs) + " |")
    overhead = per_call_overhead(runs)
    noop = med(r.get("python_overhead", {}).get("p50_ms") for r in runs)
    lines += ["", "Latency p50 / p99 in ms, one query per call (the peers' calls timed in Python"
              + (f": the timing loop around a no-op costs {noop * 1e3:.2f} us at p50, and a call through the "
                 "binding takes longer on average than a query of the library's C/C++ loop by "
                 + ", ".join(f"{n} {v:.1f} us" for n, v in overhead.items()) + " (medians over efs and runs)" if noop is not None
                 and overhead else "") + "):", "",
              "| system | " + " | ".join(f"ef {ef_name(ef)}" for ef in efs) + " |", "|---|" + "---|" * len(efs)]
    for sys_name, s in summary.items():
        lines.append(f"| {sys_name} | " + " | ".join(
            f"{s['ef'][ef]['p50_ms']:.3f} / {s['ef'][ef]['p99_ms']:.3f}" if ef in s["ef"] else "" for ef in efs) + " |")
    q_qps, q_ef = at_target(summary["quiver"]["ef"]) if "quiver" in summary else (None, None)
    lines += ["", "| system | QPS at recall >= 0.95 (ef) | as a ratio to Quiver | build (s) | peak memory (MiB) |",
              "|---|---|---|---|---|"]
    for sys_name, s in summary.items():
        qps, ef = at_target(s["ef"])
        ratio = f"{qps / q_qps:.2f}" if qps and q_qps else "n/a"
        rss = f"{s['peak_rss'] / 2**20:,.0f}" if s["peak_rss"] else "n/a"
        lines.append(f"| {sys_name} | {qps:,.0f} ({ef}) | {ratio} | {s['build_s']:.1f} | {rss} |"
                     if qps else f"| {sys_name} | not reached | n/a | {s['build_s']:.1f} | {rss} |")
    peers = {n: at_target(s["ef"])[0] for n, s in summary.items() if n != "quiver"}
    peers = {n: q for n, q in peers.items() if q}
    if q_qps and peers:
        best = max(peers, key=peers.get)
        ratios = []
        for r in runs:
            per = {n: at_target(cells(s["results"]))[0] for n, s in r["systems"].items()}
            top = max((q for n, q in per.items() if n != "quiver" and q), default=None)
            if top and per.get("quiver"):
                ratios.append(per["quiver"] / top)
        lines += ["", f"Quiver against the best peer ({best}) at recall >= 0.95: **{q_qps / peers[best]:.2f}x** "
                  f"(medians); run by run: " + ", ".join(f"{x:.2f}x" for x in ratios) + "."]
    if quiver:
        open_ms = med(q.get("open_ms") for q in quiver)
        bpv = med(q.get("bytes_per_vector") for q in quiver)
        lines += ["", f"Quiver's database: open {open_ms:.2f} ms (mapping, nothing rebuilt), "
                  f"{bpv:,.0f} bytes on disk per vector ({4 * runs[0]['dim']:,} of them the vector itself). "
                  f"Distance kernels: {runs[0]['systems']['quiver']['quiver'].get('isa')}.", "",
                  "Thread scaling of Quiver (QPS; N threads each calling `search`, and `search_batch`):", "",
                  "| ef | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}"
                                         for t in sorted({x['threads'] for x in quiver[0]['results']}))
                  + " | search_batch | scaling |", "|---|" + "---|" * (len({x['threads'] for x in quiver[0]['results']}) + 2)]
        threads = sorted({x["threads"] for x in quiver[0]["results"]})
        for ef in efs:
            qps = [med(x["qps"] for q in quiver for x in q["results"] if x["ef"] == ef and x["threads"] == t)
                   for t in threads]
            batch = med(x["qps"] for q in quiver for x in q.get("batch", []) if x["ef"] == ef)
            if None in qps:
                continue
            lines.append(f"| {ef} | " + " | ".join(f"{x:,.0f}" for x in qps)
                         + f" | {batch:,.0f} | {max(qps[-1], batch) / qps[0]:.2f}x |")
    return "\n".join(lines) + "\n"


def steady_section(name, runs):
    """The build patterns of a set: what each build left, how fast it ingested
    and committed, and its queries at recall >= 0.95 against the peers and
    against pattern (a)."""
    spec = SETS[name]
    runs = [r for r in runs if r["systems"].get("quiver", {}).get("quiver", {}).get("patterns")]
    if not runs:
        return f"### {spec['title']}\n\nNot run yet.\n"
    per_pattern = {}
    for r in runs:
        for pat in r["systems"]["quiver"]["quiver"]["patterns"]:
            per_pattern.setdefault(pat["pattern"], []).append(pat)
    order = [p for p in PATTERNS if p in per_pattern]
    peers = [n for n in runs[0]["systems"] if n != "quiver"]

    def quiver_cells(pats):
        return median_cells([cells({x["ef"]: x for x in p["results"] if x["threads"] == 1}) for p in pats])

    def peer_cells(peer, final):
        per = []
        for r in runs:
            s = r["systems"].get(peer, {})
            s = s.get("final") if final else s
            if s:
                per.append(cells(s["results"]))
        return median_cells(per) if per else {}

    def best_peer(final):
        best = None
        for peer in peers:
            qps, ef = at_target(peer_cells(peer, final))
            if qps and (best is None or qps > best[1]):
                best = (peer, qps, ef)
        return best

    def run_ratio(run, pat, final):
        """One run's Quiver QPS at the target over its best peer's, or None."""
        mine = at_target(cells({x["ef"]: x for x in pat["results"] if x["threads"] == 1}))[0]
        tops = []
        for peer in peers:
            s = run["systems"].get(peer, {})
            s = s.get("final") if final else s
            if s:
                tops.append(at_target(cells(s["results"]))[0])
        top = max((t for t in tops if t), default=None)
        return mine / top if mine and top else None

    qc = {p: quiver_cells(per_pattern[p]) for p in order}
    at = {p: at_target(qc[p]) for p in order}
    base_qps = at.get("one", (None, None))[0]
    best = {False: best_peer(False), True: best_peer(True)}
    final_rows = med(r.get("final_rows") for r in runs)
    lines = [f"### {spec['title']}", "",
             f"{runs[0]['rows']:,} rows, {runs[0]['queries']} queries, default options (growing threshold, "
             f"background merges), M {runs[0]['m']}, ef_construction {runs[0]['ef_construction']}; "
             f"medians of {len(runs)} runs. Queries start right after the last commit, on the handle that "
             "built the database; one thread, one `search_with` call per query, after one untimed pass.", "",
             "| pattern | commits | segments | growing rows | ingest rows/s | commit p50 / p99 / max (ms) "
             "| merger under the queries | ef at recall >= 0.95 | recall@10 | QPS | p50 / p99 (ms) "
             "| vs best peer | vs (a) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ratio_notes = []
    for p in order:
        pats = per_pattern[p]
        f = lambda key: med(x.get(key) for x in pats)
        qps, ef = at[p]
        b = best[p == "churn"]
        vs_peer = f"{qps / b[1]:.2f}x ({b[0]})" if qps and b else "n/a"
        vs_one = f"{qps / base_qps:.2f}x" if qps and base_qps else "n/a"
        commit = (f"{f('commit_p50_ms'):,.1f} / {f('commit_p99_ms'):,.1f} / {f('commit_max_ms'):,.1f}"
                  if f("commit_p50_ms") is not None else "n/a")
        ingest = f"{f('ingest_rows_per_s'):,.0f}" if f("ingest_rows_per_s") else "n/a"
        busy = sum(bool(x.get("merging_during_queries")) for x in pats)
        merger = (f"busy in {busy} of {len(pats)} runs; idle {f('merge_settle_ms'):,.0f} ms in (queries: "
                  f"{f('query_phase_ms'):,.0f} ms)" if f("merge_settle_ms") is not None
                  else f"changed under {busy} of {len(pats)} runs")
        head = (f"| {PATTERN_TITLES.get(p, p)} | {f('commits') or 0:,.0f} | {f('segments'):.0f} | "
                f"{f('growing_rows'):,.0f} | {ingest} | {commit} | {merger} | ")
        if qps:
            c = qc[p][ef]
            lines.append(head + f"{ef_name(ef)} | {c['recall']:.3f} | {qps:,.0f} | {c['p50_ms']:.3f} / {c['p99_ms']:.3f} "
                         f"| {vs_peer} | {vs_one} |")
        else:
            lines.append(head + "not reached | | | | n/a | n/a |")
        ratios = [run_ratio(r, x, p == "churn") for r in runs
                  for x in r["systems"]["quiver"]["quiver"]["patterns"] if x["pattern"] == p]
        ratios = [x for x in ratios if x]
        if ratios:
            ratio_notes.append(f"`{p}` " + ", ".join(f"{x:.2f}x" for x in ratios))
    lines += ["", "Ingest rows/s counts every upserted row and every deleted id over the wall time of the whole "
              "build (staging and commits, the file read excluded); commit latency is each `Writer::commit` "
              "call. Segments and growing rows are `Database::stats()` right after the last commit. The queries "
              "start right after it too; a thread beside them waits for the background merger to go idle "
              "(`Database::wait_for_merges`): the merger column says in how many runs it was still busy when "
              "they began (over 10 ms to go idle, or the state changed under them) and, as medians, how long "
              "after they began it went idle, against how long all of the queries took. "
              f"The peers are built in one go (all cores, M {runs[0]['m']} / ef_construction "
              f"{runs[0]['ef_construction']}) and their QPS is the "
              "single-thread loop of their C/C++ batch call. For (a) to (c) the best peer is the one with the "
              "highest QPS at recall >= 0.95 on the same rows and ground truth."
              + (f" For (d) the peers are built in one go on the final {final_rows:,.0f} rows that the churn "
                 "left (the map `quiver bench --churn-map` writes: each live id and the base row whose vector "
                 "it holds), and every system is scored against the exact search of those rows: the same data "
                 "and truth, but the peers never see the deletes and upserts, which is the point of (d)."
                 if final_rows else " The peers were not built on the churn's final rows in these runs, so (d) "
                 "has no peer ratio."),
              ""]
    if ratio_notes:
        lines += ["Against the best peer, run by run: " + "; ".join(ratio_notes) + ".", ""]
    settled_rows = []
    for p in order:
        pats = [x for x in per_pattern[p] if x.get("settled_results")]
        if not pats:
            continue
        sc = median_cells([cells({x["ef"]: x for x in q["settled_results"] if x["threads"] == 1})
                           for q in pats])
        qps, ef = at_target(sc)
        b = best[p == "churn"]
        segs = med(x.get("segments_settled") for x in pats)
        if qps:
            settled_rows.append(f"| {PATTERN_TITLES.get(p, p)} | {segs:.0f} | {ef_name(ef)} | "
                                f"{sc[ef]['recall']:.3f} | {qps:,.0f} | "
                                + (f"{qps / b[1]:.2f}x ({b[0]})" if b else "n/a") + " | "
                                + (f"{qps / base_qps:.2f}x" if base_qps else "n/a") + " |")
    if settled_rows:
        lines += ["Once the merger went idle (`Database::wait_for_merges`), the same queries again:", "",
                  "| pattern | segments | ef at recall >= 0.95 | recall@10 | QPS | vs best peer | vs (a) |",
                  "|---|---|---|---|---|---|---|"] + settled_rows + [""]
    hn = [(r["rows"], r["systems"]["hnswlib"]) for r in runs if "hnswlib" in r["systems"]]
    one_go = med(rows / h["build_s"] for rows, h in hn)
    batches = med(h.get("ingest_batch_rows_per_s") for _, h in hn)
    q_one = med(x.get("ingest_rows_per_s") for x in per_pattern.get("one", []))
    q_100 = med(x.get("ingest_rows_per_s") for x in per_pattern.get("100", []))
    ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "n/a"
    num = lambda x: f"{x:,.0f}" if x else "n/a"
    lines += ["Ingest against hnswlib (rows/s; hnswlib on all cores):", "",
              "| build | Quiver | hnswlib | Quiver / hnswlib |", "|---|---|---|---|",
              f"| in one go: Quiver (a) one commit, hnswlib one `add_items` | {num(q_one)} | {num(one_go)} "
              f"| {ratio(q_one, one_go)} |",
              f"| 100 rows at a time: Quiver (c) commits of 100, hnswlib `add_items` of 100 | {num(q_100)} "
              f"| {num(batches)} | {ratio(q_100, batches)} |", ""]
    efs = sorted({ef for p in order for ef in qc[p]})
    lines += ["Recall@10 / QPS per ef, one thread:", "",
              "| build | " + " | ".join(f"ef {ef_name(ef)}" for ef in efs) + " |", "|---|" + "---|" * len(efs)]
    rows = [(f"Quiver {PATTERN_TITLES.get(p, p).split(':')[0]}", qc[p]) for p in order]
    rows += [(f"{peer}, one go", peer_cells(peer, False)) for peer in peers]
    if final_rows:
        rows += [(f"{peer}, one go on (d)'s final rows", peer_cells(peer, True)) for peer in peers]
    for label, c in rows:
        lines.append(f"| {label} | " + " | ".join(
            f"{c[ef]['recall']:.3f} / {c[ef]['qps']:,.0f}" if ef in c else "" for ef in efs) + " |")
    return "\n".join(lines) + "\n"


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--sets", default="debian50k,synth1m")
    p.add_argument("--no-run", action="store_true", help="only rewrite the docs from saved runs")
    p.add_argument("--systems", default="hnswlib,faiss,usearch", help="peers to run beside Quiver")
    p.add_argument("--patterns", default=",".join(PATTERNS), help="Quiver's build patterns to run")
    p.add_argument("--bench-dir", default="target/bench", help="where runs are saved and read")
    p.add_argument("--out", default="docs/BENCHMARKS.md", help="the page to write (plots go to img/ beside it)")
    p.add_argument("--data", action="append", default=[], metavar="SET=BASE,QUERIES[,GT]",
                   help="run a set on other files (a smoke run on a subset)")
    p.add_argument("--max-queries", type=int, help="passed to peers.py")
    p.add_argument("--efs", help="passed to peers.py")
    args = p.parse_args()
    for spec in args.data:
        name, _, files = spec.partition("=")
        files = files.split(",")
        if name not in SETS or len(files) not in (2, 3):
            sys.exit(f"--data {spec}: expected one of {', '.join(SETS)}=BASE,QUERIES[,GT]")
        SETS[name].update(base=files[0], queries=files[1], gt=files[2] if len(files) == 3 else None)
        SETS[name].pop("generate", None)
    sets = [s for s in args.sets.split(",") if s]
    if not args.no_run:
        sh(["cargo", "build", "--release", "--bin", "quiver"])
        for name in sets:
            run_set(name, args.runs, args)
    out = os.path.join(ROOT, args.out)
    out_dir = os.path.dirname(out)
    blocks = {}
    for name in SETS:
        paths = sorted(glob.glob(os.path.join(ROOT, args.bench_dir, f"{name}-run*.json")))
        runs = [json.load(open(x)) for x in paths]
        not_yet = f"### {SETS[name]['title']}\n\nNot run yet.\n"
        blocks[name] = section(name, runs, out_dir) if runs else not_yet
        blocks[name + "_steady"] = steady_section(name, runs) if runs else not_yet
    template = open(os.path.join(ROOT, "benches/peers/BENCHMARKS.md.in")).read()
    page = template.replace("{{machine}}", machine())
    for name, block in blocks.items():
        page = page.replace("{{" + name + "}}", block)
    with open(out, "w") as f:
        f.write(page)
    print(f"wrote {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main()
