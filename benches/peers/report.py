#!/usr/bin/env python3
"""Runs the side-by-side benchmark several times on each data set and writes
docs/BENCHMARKS.md (from benches/peers/BENCHMARKS.md.in) and its plots.

    python3 -m venv target/peers-venv
    target/peers-venv/bin/pip install -r benches/peers/requirements.txt
    target/peers-venv/bin/python benches/peers/report.py            # 3 runs per set, about 2 hours on 2 cores
    target/peers-venv/bin/python benches/peers/report.py --runs 1 --sets debian50k
    target/peers-venv/bin/python benches/peers/report.py --no-run    # rewrite the docs from saved runs

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


def run_set(name, runs, systems):
    spec = SETS[name]
    if not os.path.exists(os.path.join(ROOT, spec["base"])):
        if "generate" not in spec:
            sys.exit(f"{spec['base']} is missing")
        sh(spec["generate"])
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    for i in range(1, runs + 1):
        cmd = [sys.executable, "benches/peers/peers.py", "--base", spec["base"], "--queries", spec["queries"],
               "--metric", spec["metric"], "--quiver-cmd", "target/release/quiver bench",
               "--systems", systems, "--json", f"target/bench/{name}-run{i}.json"]
        if spec["gt"]:
            cmd += ["--gt", spec["gt"]]
        sh(cmd)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarise(runs):
    """Per system: median build, peak memory, and per ef median recall / QPS / p50 / p99."""
    out = {}
    for name in runs[0]["systems"]:
        per = [r["systems"][name] for r in runs]
        efs = sorted({int(ef) for p in per for ef in p["results"]})
        cell = {}
        for ef in efs:
            rs = [p["results"].get(str(ef)) or p["results"].get(ef) for p in per]
            cell[ef] = {k: med(r[k] for r in rs) for k in ("recall", "qps", "p50_ms", "p99_ms")}
        out[name] = {"build_s": med(p["build_s"] for p in per),
                     "peak_rss": med(p.get("peak_rss_bytes") for p in per), "ef": cell}
    return out


def at_target(cells, floor=0.95):
    """QPS at the lowest ef whose recall reaches `floor`, and that ef."""
    for ef in sorted(cells):
        if cells[ef]["recall"] >= floor:
            return cells[ef]["qps"], ef
    return None, None


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
        pts = [(sx(c["recall"]), sy(c["qps"])) for _, c in sorted(s["ef"].items())]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in pts]
        ly = top + 20 + 18 * i
        parts.append(f'<line x1="{w - right + 12}" y1="{ly}" x2="{w - right + 32}" y2="{ly}" stroke="{colour}" '
                     f'stroke-width="2"/><text x="{w - right + 38}" y="{ly + 4}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def section(name, runs):
    spec, summary = SETS[name], summarise(runs)
    quiver = [r["systems"]["quiver"]["quiver"] for r in runs if "quiver" in r["systems"].get("quiver", {})]
    svg = f"docs/img/{name}-recall-qps.svg"
    os.makedirs(os.path.join(ROOT, "docs/img"), exist_ok=True)
    with open(os.path.join(ROOT, svg), "w") as f:
        f.write(svg_plot(summary, spec["title"].split(":")[0] + f" (medians of {len(runs)} runs)"))
    efs = sorted({ef for s in summary.values() for ef in s["ef"]})
    lines = [f"### {spec['title']}", "",
             f"{runs[0]['rows']:,} vectors, {runs[0]['queries']} queries, M {runs[0]['m']}, "
             f"ef_construction {runs[0]['ef_construction']}; medians of {len(runs)} runs.", "",
             f"![recall against QPS]({svg.removeprefix('docs/')})", "",
             "Recall@10 / queries per second, one thread, one query per call:", "",
             "| system | " + " | ".join(f"ef {ef}" for ef in efs) + " |", "|---|" + "---|" * len(efs)]
    for sys_name, s in summary.items():
        lines.append(f"| {sys_name} | " + " | ".join(
            f"{s['ef'][ef]['recall']:.3f} / {s['ef'][ef]['qps']:,.0f}" if ef in s["ef"] else "" for ef in efs) + " |")
    lines += ["", "Latency p50 / p99 in ms:", "",
              "| system | " + " | ".join(f"ef {ef}" for ef in efs) + " |", "|---|" + "---|" * len(efs)]
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
            per = {n: at_target({int(k): v for k, v in s["results"].items()})[0] for n, s in r["systems"].items()}
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
                  f"Distance kernels: {quiver[0].get('isa')}.", "",
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
    args = p.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    if not args.no_run:
        sh(["cargo", "build", "--release", "--bin", "quiver"])
        for name in sets:
            run_set(name, args.runs, args.systems)
    blocks = {}
    for name in SETS:
        paths = sorted(glob.glob(os.path.join(ROOT, f"target/bench/{name}-run*.json")))
        runs = [json.load(open(x)) for x in paths]
        blocks[name] = section(name, runs) if runs else f"### {SETS[name]['title']}\n\nNot run yet.\n"
    template = open(os.path.join(ROOT, "benches/peers/BENCHMARKS.md.in")).read()
    page = template.replace("{{machine}}", machine())
    for name, block in blocks.items():
        page = page.replace("{{" + name + "}}", block)
    with open(os.path.join(ROOT, "docs/BENCHMARKS.md"), "w") as f:
        f.write(page)
    print("wrote docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
