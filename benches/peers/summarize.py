#!/usr/bin/env python3
"""Medians over several peers.py --json runs, as a Markdown table.

    python3 benches/peers/summarize.py target/peers-debian50k-run*.json
"""
import json
import statistics
import sys


def main(paths):
    runs = [json.load(open(p)) for p in paths]
    systems = list(runs[0]["systems"])
    efs = sorted({int(ef) for r in runs for s in r["systems"].values() for ef in s["results"]})
    print(f"Medians of {len(runs)} runs; cells are recall@10 / QPS (single thread, one query per call).\n")
    print("| system | build (s) | " + " | ".join(f"ef {ef}" for ef in efs) + " |")
    print("|---|---|" + "---|" * len(efs))
    best = {}
    for name in systems:
        build = statistics.median(r["systems"][name]["build_s"] for r in runs)
        cells = []
        for ef in efs:
            res = [r["systems"][name]["results"].get(str(ef)) or r["systems"][name]["results"].get(ef)
                   for r in runs]
            recall = statistics.median(x["recall"] for x in res)
            qps = statistics.median(x["qps"] for x in res)
            cells.append(f"{recall:.3f} / {qps:,.0f}")
            if recall >= 0.95:
                best.setdefault(name, qps)
        print(f"| {name} | {build:.1f} | " + " | ".join(cells) + " |")
    if "quiver" in best:
        peers = {n: q for n, q in best.items() if n != "quiver"}
        if peers:
            top = max(peers, key=peers.get)
            print(f"\nAt the lowest ef reaching recall >= 0.95: Quiver {best['quiver']:,.0f} QPS, "
                  f"best peer {top} {peers[top]:,.0f} QPS: {best['quiver'] / peers[top]:.2f}x.")


if __name__ == "__main__":
    main(sys.argv[1:])
