"""Runs the cases of ``_hostile.py`` in child processes, classifies them, and writes their tables.

Each case runs with its own marker path (``TFC_BENCH_MARKER``), a time limit
and an address-space cap, two at a time (2 cores); see ``_hostile.py`` for the
classes (clear, accepted, FAIL).
"""

import concurrent.futures
import os
import resource
import shutil
import subprocess
import time

from benchmarks._hostile import CLEAR_S, ENTRY_POINTS, MARKER_ENV, MEMORY_CAP, ROOT, TIMEOUT_S, disguise_descriptions


def _cap():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    os.nice(5)


def run_case(case, tmp):
    """Runs one case in a child process; returns its record with an outcome."""
    work = os.path.join(tmp, "w", str(case["id"]))
    os.makedirs(work, exist_ok=True)
    marker = os.path.join(work, "MARKER")
    argv = [a.replace("{work}", work) for a in case["argv"]]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join([ROOT, case.get("pythonpath", "")]))
    env[MARKER_ENV] = marker
    t0 = time.perf_counter()
    try:
        p = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
                           preexec_fn=_cap, stdin=subprocess.DEVNULL)
        rc, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = "timeout", (e.stderr or b"").decode("utf-8", "replace") if isinstance(e.stderr, bytes) else ""
    seconds = time.perf_counter() - t0
    if case.get("settle"):
        time.sleep(case["settle"])  # a shell started by pydoc.pipepager may write late
    ran = os.path.exists(marker)
    outcome, detail = classify(rc, err, seconds, ran, case.get("accept"), case.get("control", False))
    shutil.rmtree(work, ignore_errors=True)
    return {k: case[k] for k in ("id", "group", "name", "entry", "fmt") if k in case} | {
        "outcome": outcome, "detail": detail, "seconds": round(seconds, 1), "exit": rc}


def classify(rc, err, seconds, ran, accept=None, control=False):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    if control:
        return ("control ok", "the payload ran with --unsafe") if ran else \
            ("control FAILED", f"exit {rc}: the payload did not run, so the disguises prove nothing")
    if ran:
        return "FAIL", "the file's code ran (the marker appeared)"
    if rc == "timeout":
        return "FAIL", f"still running after {TIMEOUT_S} s"
    if "Traceback" in err:
        return "FAIL", "traceback: " + (lines[-1] if lines else "")[:150]
    if "MemoryError" in err or "bad_alloc" in err:
        return "FAIL", "ran out of memory (the address-space cap)"
    if rc < 0:
        return "FAIL", f"killed by signal {-rc}"
    if rc == 0:
        return ("accepted", accept) if accept else ("FAIL", "accepted without a reason (exit 0)")
    if rc == 2 and len(errors) == 1 and seconds < CLEAR_S:
        return "clear", errors[0][errors[0].index("error:"):][:170]
    return "FAIL", f"unclear: exit {rc}, {len(errors)} error lines, {seconds:.0f} s: " + " / ".join(lines[-2:])[:150]


def run_all(cases, tmp, workers=2):
    """Runs the cases two at a time (2 cores); returns the records in case order."""
    for i, c in enumerate(cases):
        c["id"] = i
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda c: run_case(c, tmp), cases))


# ----------------------------------------------------------------------------- tables

CLASSES = ("clear", "accepted", "FAIL")
#: Failures the fuzzing pass found, fixed in the same change (tests/test_hostile_inputs.py holds their tests).
FOUND_AND_FIXED = [
    ("recipe / search-space YAML", "text holding a control character YAML forbids (U+0093, U+0000 in a string) "
     "raised yaml.reader.ReaderError, a traceback on the command line: PyYAML's reader checks the text when the "
     "loader is built, which was outside the `try`", "tfcompress/_yaml.py: one line naming the character and "
     "its offset"),
    ("model config (safety check)", "a layer name or TensorFlow function name holding a line break gave a "
     "refusal of several lines, and a lone surrogate (`\\udb8f` in config.json) one that cannot be printed as "
     "UTF-8", "tflite_export/trust.py: names from the file escaped and cut to one printable line"),
]


def summary(records):
    """``{group: {class: count}}`` over the hostile cases (controls apart)."""
    out = {}
    for r in records:
        if r["group"] == "control":
            continue
        cls = "FAIL" if r["outcome"] == "FAIL" else r["outcome"]
        out.setdefault(r["group"], dict.fromkeys(CLASSES, 0))[cls] += 1
    return out


GROUP_TITLES = {"untrusted": "disguised-Lambda model files", "yaml": "YAML bombs (recipe and search space)",
                "fifo": "FIFOs as --model / --recipe / --space / --data / FILE",
                "images": "image folders (symlink loops, bad images)", "npz": "damaged .npz files",
                "zip": ".keras zip bombs"}


def markdown(records, fuzz, fuzz_seconds):
    s = summary(records)
    total = dict.fromkeys(CLASSES, 0)
    lines = ["### Hostile inputs: every case through the real command line", "",
             f"Each case runs `tfcompress ...` or `python -m tflite_export ...` in a child process (limit "
             f"{TIMEOUT_S} s, address space capped at {MEMORY_CAP >> 30} GiB, two at a time), its hostile file "
             "built by `benchmarks/_hostile.py`. **clear**: exit 2, exactly one `error:` line, no traceback, "
             f"within {CLEAR_S} s; **accepted**: exit 0 where accepting is right (reason below); **FAIL**: a "
             "traceback, a signal, the time limit, the memory cap, acceptance without a reason, a refusal of "
             "several lines, or the marker written by the file's code.", "",
             "| inputs | cases | " + " | ".join(CLASSES) + " |", "|---|---:|" + "---:|" * len(CLASSES)]
    for group, counts in s.items():
        for c in CLASSES:
            total[c] += counts[c]
        lines.append(f"| {GROUP_TITLES[group]} | {sum(counts.values())} | "
                     + " | ".join(str(counts[c]) for c in CLASSES) + " |")
    lines.append(f"| **all** | {sum(total.values())} | " + " | ".join(f"**{total[c]}**" for c in CLASSES) + " |")
    accepted = [r for r in records if r["outcome"] == "accepted"]
    failed = [r for r in records if r["outcome"] == "FAIL"]
    lines += [""]
    if accepted:
        lines += ["Accepted, and why: " + "; ".join(sorted({f"{r['name']} ({r['entry']}): {r['detail']}"
                                                            for r in accepted})) + "."]
    lines += ["", "No case failed." if not failed else "Cases that failed:", ""]
    if failed:
        lines += ["| inputs | case | entry point | what happened |", "|---|---|---|---|"]
        lines += [f"| {r['group']} | {r['name']} | {r['entry']} | {r['detail'][:150].replace('|', '/')} |"
                  for r in failed] + [""]
    lines += _untrusted_table(records)
    lines += _fuzz_table(fuzz, fuzz_seconds)
    return "\n".join(lines)


def _untrusted_table(records):
    desc = disguise_descriptions()
    rows = {}
    for r in records:
        if r["group"] == "untrusted":
            fmt = r.get("fmt", "")
            rows.setdefault((r["name"], fmt), {})[r["entry"]] = r
    controls = [r for r in records if r["group"] == "control"]
    ran = sum(r["outcome"] == "control ok" for r in controls)
    short = {"clear": "refused", "FAIL": "**FAIL**", "accepted": "**loaded**"}
    lines = ["### Untrusted files: each disguise on each entry point", "",
             "A small tf_keras model whose `Lambda` writes a marker file (its own bytecode in `.h5` files; a "
             "function of an importable payload module, or `pydoc.pipepager` starting a shell, in `.keras` files), "
             "rewritten as below; every file through each entry point with the default (safe) settings. "
             "*refused* = one `error:` line and exit 2, with no marker written. "
             f"Controls: {ran} of {len(controls)} files run with `--unsafe` did write the marker "
             f"({', '.join(r['name'] for r in controls)}), so the payloads are live.", "",
             "| disguise | file | " + " | ".join(ENTRY_POINTS) + " | marker |",
             "|---|---|" + "---|" * (len(ENTRY_POINTS) + 1)]
    for (name, fmt), by_entry in rows.items():
        cells = [short.get(by_entry[e]["outcome"], by_entry[e]["outcome"]) + f" ({by_entry[e]['seconds']:.0f} s)"
                 if e in by_entry else "-" for e in ENTRY_POINTS]
        marker = "written" if any("marker" in r["detail"] for r in by_entry.values()) else "never"
        lines.append(f"| {name}: {desc.get(name, '')} | .{fmt} | " + " | ".join(cells) + f" | {marker} |")
    first = next((r for r in records if r["group"] == "untrusted" and r["outcome"] == "clear"), None)
    if first:
        lines += ["", f"A refusal reads: `{first['detail'][:240]}`"]
    return lines + [""]


def _fuzz_table(fuzz, seconds):
    lines = ["### Fuzzing the readers (Hypothesis, `tests/test_fuzz.py`)", "",
             f"{seconds:.0f} s in all, a quarter per reader, seeded. The property: each input loads or raises "
             "the project's own error (`TfcompressError`) with a one-line message within 20 s; never another "
             "exception, never a hang. For the safety check also: a `Lambda` named by any part of a "
             "`class_name` or `registered_name` is always refused.", "",
             "| reader | inputs tried | loaded | refused (one line of ours) | failures |", "|---|---:|---:|---:|---:|"]
    for r in fuzz:
        lines.append(f"| {r['reader']} | {r['tried']} | {r['loaded']} | {r['refused']} | {r['failed']} |")
    fails = [(r["reader"], f) for r in fuzz for f in r["failures"]]
    if fails:
        lines += ["", "Failures in this run:", ""]
        lines += [f"- {reader}: {f['kind']}: {f['message'][:150]} (input `{f['input'][:100]}`)" for reader, f in fails]
    lines += ["", "Found by this fuzzing pass and fixed in the same change (regression tests in "
              "`tests/test_hostile_inputs.py`):", ""]
    lines += [f"- **{where}**: {what}. Fix: {fix}." for where, what, fix in FOUND_AND_FIXED]
    return lines + [""]
