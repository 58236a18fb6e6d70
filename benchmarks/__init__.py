"""The benchmarks behind docs/RESULTS.md: one ``bench_<name>.py`` module per section.

Run them from the repository root as modules, ``python -m benchmarks.bench_<name>``, or all
of them with ``make bench`` (``benchmarks/run.py`` runs every ``bench_*.py`` there is); each
writes ``results/<name>.{json,md}`` through :mod:`benchmarks._results`, which records the
command, the machine, the package versions and the git revision.
"""
