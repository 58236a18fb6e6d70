"""The documentation is complete and its examples run.

- Every public name has a docstring, every recipe field an ``Args:`` entry and
  every command-line option a help text: the site's reference pages are
  generated from these (docs/_ext/tfdocs_facts.py), so a gap here is a gap there.
- The docstrings' ``>>>`` examples run as doctests (about 10 s in all). An
  example marked ``# doctest: +SKIP`` needs what a docstring cannot make in
  seconds; :data:`SKIP_REASONS` says what, per module, and a new module with
  skipped examples must say it too.
"""

import doctest
import importlib
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "docs", "_ext"))

import tfdocs_facts as facts  # noqa: E402

TRAINED = "a trained model and its data, and minutes of fine-tuning, compression or search"
FILES = "files the example names (a .keras/.tflite model, an .npz, a recipe, an image folder) that it does not create"
GLOBAL = "a change to process-wide state (the technique registry) that other examples and tests would see"
MACHINE = "timings, accelerators, devices or memory of the machine it runs on (values vary; a GPU or adb may be absent)"

#: Why a module's ``+SKIP`` examples do not run (the rest of its examples do).
SKIP_REASONS = {
    **dict.fromkeys([
        "tfcompress", "tfcompress._data", "tfcompress._keras3", "tfcompress._keras3_out", "tfcompress._model",
        "tfcompress.channels.budget", "tfcompress.check", "tfcompress.clustering", "tfcompress.depth",
        "tfcompress.depth.candidates", "tfcompress.depth.removal", "tfcompress.depth.surgery", "tfcompress.distill",
        "tfcompress.lowrank.surgery",
        "tfcompress.distribute", "tfcompress.models.task_zoo", "tfcompress.optimize", "tfcompress.pipeline",
        "tfcompress.precision", "tfcompress.precision.scan", "tfcompress.precision.stage", "tfcompress.pruning",
        "tfcompress.pruning.global_", "tfcompress.quantization", "tfcompress.quantization.binary",
        "tfcompress.quantization.configs", "tfcompress.quantization.nbit", "tfcompress.recipe",
        "tfcompress.target.depthplan", "tfcompress.target.fast", "tfcompress.target.joint", "tfcompress.target.latency",
        "tfcompress.target.latencyplan",
        "tfcompress.target.plan", "tfcompress.target.rankplan",
        "tfcompress.target.sensitivity", "tfcompress.target.shipped", "tfcompress.target.table", "tfcompress.task",
        "tfcompress._keras",
        "tfcompress.training", "tfcompress.tuning", "tfcompress.tuning.inputs", "tfcompress.tuning.oracle",
        "tfcompress.tuning.plots", "tfcompress.tuning.runner", "tfcompress.tuning.search",
        "tfcompress.tuning.space", "tfcompress.tuning.trial", "tfcompress.tuning.tuner", "tflite_export.validate",
        "tflite_export.int4", "tflite_export.mixed",
    ], TRAINED),
    **dict.fromkeys([
        "tfcompress._imagefiles", "tfcompress._userdata", "tfcompress._yaml", "tfcompress.io",
        "tfcompress._maskfolders", "tfcompress.leftovers",
        "tflite_export._atomic", "tflite_export._flatbuffer", "tflite_export._runtime", "tflite_export.cli",
        "tflite_export.convert", "tflite_export.evaluate", "tflite_export.inspection", "tflite_export.loader",
        "tflite_export.opreport", "tflite_export.safety", "tflite_export._opslice", "tflite_export.strip",
    ], FILES),
    **dict.fromkeys([
        "tflite_export._process", "tflite_export.android", "tflite_export.bench_report", "tflite_export.benchmark",
        "tflite_export.probe", "tflite_export.roofline", "tflite_export.latency_model",
        "tfcompress.latency_cli",
    ], MACHINE),
    "tfcompress.techniques": GLOBAL,
}

#: Examples that show a call on a ``model`` (or ``x``, ``rep``) the surrounding text describes, without output:
#: illustrations, not doctests. They are not marked +SKIP in the source yet; they are skipped here.
CONTEXTUAL = {
    "tfcompress.channels", "tfcompress.channels.activations", "tfcompress.channels.budget.ratios_for_budget",
    "tfcompress.channels.cost.count_flops", "tfcompress.channels.graph", "tfcompress.channels.graph.dependency_groups",
    "tfcompress.channels.importance", "tfcompress.channels.merge", "tfcompress.channels.merge.merge_channels",
    "tfcompress.channels.report.ChannelReport", "tfcompress.channels.schedule", "tfcompress.channels.schedule.apply",
    "tfcompress.channels.sensitivity", "tfcompress.channels.sensitivity.sensitivity_scan",
    "tfcompress.channels.surgery", "tfcompress.channels.surgery.prune_channels", "tfcompress.depth.surgery",
}


def test_every_public_name_has_a_docstring():
    assert facts.undocumented_public_names() == []


def test_every_recipe_field_is_documented():
    assert facts.undocumented_recipe_fields() == []
    fields = {f"{key}.{f['name']}" for key, cls in facts.recipe_sections() for f in facts.recipe_fields(cls, key)}
    assert {"pruning.final_sparsity", "channels.mode", "quantization.weights", "lr_schedule.kind"} <= fields


def test_every_cli_option_has_help():
    assert facts.undocumented_cli_options() == []
    progs = set(facts.cli_parsers())
    assert {"tfcompress demo", "tfcompress optimize", "tfcompress tune", "tfcompress bench"} <= progs


def test_recipe_reference_states_each_fields_own_check():
    """The allowed values are the checks' own words: change a range in the code and the reference follows."""
    from tfcompress.pruning.config import Pruning
    from tfcompress.schedules import Optimizer

    rows = {f["name"]: f for f in facts.recipe_fields(Pruning, "pruning")}
    assert rows["final_sparsity"]["allowed"] == "in [0, 1)"
    assert rows["schedule"]["allowed"] == "one of 'polynomial', 'constant'"
    assert rows["final_sparsity"]["default"] == "0.8" and rows["final_sparsity"]["type"] == "float"
    assert rows["final_sparsity"]["doc"].startswith("share of weights set to zero")
    # a field that applies to some optimizers only is probed on one it applies to
    momentum = {f["name"]: f for f in facts.recipe_fields(Optimizer, "optimizer")}["momentum"]
    assert "applies to sgd" in momentum["allowed"] and "[" in momentum["allowed"]


def _skipped_modules():
    out = set()
    for name in facts.modules():
        mod = importlib.import_module(name)
        for test in doctest.DocTestFinder(exclude_empty=True).find(mod, name):
            if any(ex.options.get(doctest.SKIP) for ex in test.examples):
                out.add(name)
    return out


def test_every_skipped_example_has_a_reason():
    missing = sorted(_skipped_modules() - set(SKIP_REASONS))
    assert not missing, f"modules with +SKIP examples and no reason in SKIP_REASONS: {missing}"


@pytest.mark.parametrize("modname", facts.modules())
def test_docstring_examples_run(modname, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    from tfcompress._keras import keras

    keras.backend.clear_session()  # layer names ("rescaling", not "rescaling_2") as in a fresh process
    mod = importlib.import_module(modname)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    for test in finder.find(mod, modname):
        if test.name in CONTEXTUAL:
            continue
        result = runner.run(test, out=failures.append)
        assert result.failed == 0, "".join(failures)[-4000:]


def test_one_version_for_the_package_the_cli_and_the_site(capsys):
    """``tfcompress --version``, the package and the site's title all read ``tfcompress/_version.py``."""
    import re

    import tfcompress
    from tfcompress.cli import build_parser

    assert re.fullmatch(r"\d+\.\d+\.\d+", tfcompress.__version__), "versions are MAJOR.MINOR.PATCH (CHANGELOG.md)"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"tfcompress {tfcompress.__version__}"
    conf = open(os.path.join(ROOT, "docs", "conf.py"), encoding="utf-8").read()
    assert "from tfcompress._version import __version__" in conf and "version = release = __version__" in conf
    assert "## Unreleased" in open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8").read()
