"""What every benchmark writes at the end: its command line, the machine, and ``results/<name>.{json,md}``.

Every JSON also records where it came from (:func:`provenance`): the command that ran, the
machine, the package versions and the git revision.

Shared by the ``bench_*.py`` scripts so each one says only what it measured.
Both files are written atomically (a temporary file, then ``os.replace``): an
interrupted benchmark leaves the previous sitting's results whole, never a
half-written table that ``benchmarks/run.py --collect-only`` would paste into
``docs/RESULTS.md``.

Example:
    >>> command("nice -n 10 .venv/bin/python -m benchmarks.bench_x", ["--quick"])
    'nice -n 10 .venv/bin/python -m benchmarks.bench_x --quick'
    >>> write("x_quick", {"rows": []}, "## X\\n")  # doctest: +SKIP
"""

import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys

__all__ = ["RESULTS", "command", "machine", "cpu_flags", "provenance", "write"]

_PACKAGES = ("tfcompress", "tensorflow", "tf-keras", "tensorflow-model-optimization", "keras-tuner",
             "ai-edge-litert", "numpy")

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def command(prefix, argv=None):
    """The command line to print in the results: ``prefix`` plus the arguments given (``sys.argv[1:]`` when None)."""
    given = sys.argv[1:] if argv is None else list(argv)
    return prefix + (" " + shlex.join(given) if given else "")


def machine(load=False):
    """``"x86_64, 2 cores (shared)"``, with the 1-minute load average when ``load``."""
    text = f"{platform.machine()}, {os.cpu_count()} cores (shared)"
    return text + (f", load avg {os.getloadavg()[0]:.1f} at the end" if load else "")


def cpu_flags():
    """The CPU's model name and the SIMD flags that matter to XNNPACK's int8 kernels, from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return "unknown CPU"
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{model}; {' '.join(isa) or 'no AVX2'}"


def provenance():
    """Where a result came from: ``{"argv", "machine", "cpu", "python", "versions", "git_revision"}``."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(RESULTS), capture_output=True,
                             text=True, timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=os.path.dirname(RESULTS),
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if rev and dirty:
            rev += " (with uncommitted changes)"
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {"argv": [os.path.basename(sys.executable), *sys.argv], "machine": machine(), "cpu": cpu_flags(),
            "python": platform.python_version(), "versions": versions, "git_revision": rev}


def _atomic(path, text):
    tmp = f"{path}.part{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write(name, result, markdown, indent=2, folder=None):
    """Write ``results/<name>.json`` (``result``) and ``results/<name>.md`` (``markdown``), each atomically.

    Args:
        name: the file stem, e.g. ``"binary"`` or ``"binary_quick"``.
        result: JSON-able dict (values JSON cannot hold are written with ``str``); its
            ``provenance`` (:func:`provenance`) is added here.
        markdown: the section text (starts with ``## <title>`` and names its command).
        indent: JSON indentation. Defaults to `2`.
        folder: where to write. Defaults to `None` (``benchmarks/results``).

    Returns:
        The path of the ``.md`` file.
    """
    folder = RESULTS if folder is None else folder
    os.makedirs(folder, exist_ok=True)
    result = {**result, "provenance": provenance()}
    _atomic(os.path.join(folder, f"{name}.json"), json.dumps(result, indent=indent, default=str))
    md = os.path.join(folder, f"{name}.md")
    _atomic(md, markdown)
    return md


def child(module, args, timeout):
    """Run ``python -m module --child *args`` from the repository root: the ``RESULT <json>`` line it prints,
    as ``{"status": "ok", **result}``, else ``{"status": "fail: exit N: <last stderr line>"}``."""
    proc = subprocess.run([sys.executable, "-m", module, "--child", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=os.path.dirname(os.path.dirname(RESULTS)))
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return {"status": "ok", **json.loads(line[7:])}
    tail = (proc.stderr.strip().splitlines() or [""])[-1][:200]
    return {"status": f"fail: exit {proc.returncode}: {tail}"}
