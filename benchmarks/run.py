"""`make bench`: run every benchmarks/bench_*.py there is (each as ``python -m benchmarks.bench_<name>``
from the repository root), then rebuild docs/RESULTS.md from the Markdown tables they wrote to
benchmarks/results/*.md.

    .venv/bin/python -m benchmarks.run                 # all benchmarks
    .venv/bin/python -m benchmarks.run foundation      # only bench_foundation.py
    .venv/bin/python -m benchmarks.run --collect-only  # rebuild docs/RESULTS.md
"""

import argparse
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The order of the sections in docs/RESULTS.md (and of the runs); a benchmark not listed runs and
# appears after these.
ORDER = ["foundation", "toolbox", "lowbit", "binary", "budget", "global", "channels", "merge", "depth", "tasks",
         "realistic", "realistic_optimize", "export", "tuner", "trial_overhead", "applications", "memory",
         "fit_memory", "precision", "faults"]


def _name(path):
    return os.path.basename(path)[len("bench_"):-len(".py")]


def collect():
    # Only the tables of benchmarks that exist (bench_<name>.py -> results/<name>.md);
    # scratch runs written under other names stay out of docs/RESULTS.md.
    names = {_name(s) for s in glob.glob(os.path.join(HERE, "bench_*.py"))}
    parts = sorted((p for p in glob.glob(os.path.join(HERE, "results", "*.md"))
                    if os.path.basename(p)[:-3] in names),
                   key=lambda p: (ORDER.index(os.path.basename(p)[:-3])
                                  if os.path.basename(p)[:-3] in ORDER else 99, p))
    head = [
        "# Results", "",
        "Every figure here was produced by `make bench` (which runs `benchmarks/run.py`, one "
        "script per section) on this project's development machines: 2 x86-64 cores (AMD EPYC or Intel "
        "Xeon, some sittings with AVX-512 VNNI and some without: sections that depend on it record the "
        "flags they saw), no GPU. Each section "
        "names its command; the raw numbers are in "
        "`benchmarks/results/*.json`. Ratios are measured side by side in one run.", "",
    ]
    body = []
    for p in parts:
        with open(p, encoding="utf-8") as f:
            body.append(f.read().strip() + "\n")
    text = "\n".join(head + body)
    os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
    tmp = os.path.join(ROOT, "docs", ".RESULTS.md.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, os.path.join(ROOT, "docs", "RESULTS.md"))
    print(f"wrote docs/RESULTS.md from {len(parts)} section(s)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("only", nargs="*", help="benchmark names (default: all)")
    p.add_argument("--collect-only", action="store_true")
    args = p.parse_args(argv)
    if not args.collect_only:
        scripts = sorted(glob.glob(os.path.join(HERE, "bench_*.py")),
                         key=lambda s: ORDER.index(_name(s)) if _name(s) in ORDER else 99)
        failed = []
        for s in scripts:
            if args.only and _name(s) not in args.only:
                continue
            print(f"== {os.path.relpath(s, ROOT)}", flush=True)
            if subprocess.call([sys.executable, "-m", f"benchmarks.bench_{_name(s)}"], cwd=ROOT) != 0:
                failed.append(_name(s))
        if failed:
            print(f"failed: {', '.join(failed)}", file=sys.stderr)
            collect()
            return 1
    collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
