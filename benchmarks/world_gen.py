"""Synthetic world generation: impressions per second and peak memory per scale.

Each scale runs in its own subprocess so peak memory is measured separately. The
figure we claim: ``small`` generates within the 60 s limit of issue 2 (the printed
ratio ``seconds / limit`` must stay below 1), and impressions stream day by day
(peak memory does not grow with the number of days).

Usage:
    python benchmarks/world_gen.py                      # small and medium
    python benchmarks/world_gen.py --scales small --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMITS_S = {"small": 60.0}  # issue 2: "at most 60 s to generate here"


def peak_rss_mb() -> float:
    """Peak RSS of this process in MB; same formula as ``_common.peak_rss_mb``, which we do not
    import because ``_common`` imports torch at module level and would add ~300 MB to a
    process that never uses torch."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(scale: str, seed: int, out: str) -> dict:
    from fluidrec.data.world import WorldConfig, generate_world_summary

    t0 = time.perf_counter()
    s = generate_world_summary(WorldConfig.for_scale(scale, seed=seed), out, progress=False)
    total = time.perf_counter() - t0
    n_imp = s.rows["impressions"]
    size_mb = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file()) / 1e6
    return {
        "scale": scale,
        "impressions": n_imp,
        "slices": s.rows["slices"],
        "seconds": round(total, 2),
        "phase_seconds": s.timings,
        "impressions_per_s": round(n_imp / max(s.timings["impressions"], 1e-9)),
        "impressions_per_s_end_to_end": round(n_imp / total),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "disk_mb": round(size_mb, 1),
        "ctr": round(s.ctr, 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="small,medium", help="comma-separated scales (default small,medium)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--child", nargs=2, metavar=("SCALE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.seed, args.child[1])))
        return 0
    results = []
    for scale in [s.strip() for s in args.scales.split(",") if s.strip()]:
        with tempfile.TemporaryDirectory(prefix=f"world_{scale}_") as tmp:
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            proc = subprocess.run([sys.executable, __file__, "--seed", str(args.seed), "--child", scale, tmp],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"{scale}: failed", file=sys.stderr)
                return 1
            r = json.loads(proc.stdout.strip().splitlines()[-1])
        if scale in LIMITS_S:
            r["limit_s"] = LIMITS_S[scale]
            r["seconds_over_limit"] = round(r["seconds"] / LIMITS_S[scale], 3)
        results.append(r)
        if not args.json:
            ratio = f"  ({r['seconds_over_limit']:.2f} of the {r['limit_s']:.0f} s limit)" if "limit_s" in r else ""
            print(f"{scale:>7}: {r['impressions']:>11,} impressions in {r['seconds']:7.1f} s{ratio}; "
                  f"{r['impressions_per_s']:>9,} impressions/s (impressions phase), "
                  f"{r['impressions_per_s_end_to_end']:>9,}/s end to end; peak RSS {r['peak_rss_mb']:,.0f} MB; "
                  f"disk {r['disk_mb']:,.0f} MB; CTR {r['ctr']:.3f}")
    if args.json:
        print(json.dumps({"world_gen": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
