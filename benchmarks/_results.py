"""What every benchmark writes at the end: its command line, the machine, and ``results/<name>.{json,md}``.

Shared by the ``bench_*.py`` scripts so each one says only what it measured.
Both files are written atomically (a temporary file, then ``os.replace``): an
interrupted benchmark leaves the previous sitting's results whole, never a
half-written table that ``benchmarks/run.py --collect-only`` would paste into
``docs/RESULTS.md``.

Example:
    >>> command("nice -n 10 .venv/bin/python benchmarks/bench_x.py", ["--quick"])
    'nice -n 10 .venv/bin/python benchmarks/bench_x.py --quick'
    >>> write("x_quick", {"rows": []}, "## X\\n")  # doctest: +SKIP
"""

import json
import os
import platform
import shlex
import sys

__all__ = ["RESULTS", "command", "machine", "cpu_flags", "write"]

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


def _atomic(path, text):
    tmp = f"{path}.part{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write(name, result, markdown, indent=2):
    """Write ``results/<name>.json`` (``result``) and ``results/<name>.md`` (``markdown``), each atomically.

    Args:
        name: the file stem, e.g. ``"binary"`` or ``"binary_quick"``.
        result: JSON-able dict (values JSON cannot hold are written with ``str``).
        markdown: the section text (starts with ``## <title>`` and names its command).
        indent: JSON indentation. Defaults to `2`.

    Returns:
        The path of the ``.md`` file.
    """
    os.makedirs(RESULTS, exist_ok=True)
    _atomic(os.path.join(RESULTS, f"{name}.json"), json.dumps(result, indent=indent, default=str))
    md = os.path.join(RESULTS, f"{name}.md")
    _atomic(md, markdown)
    return md
