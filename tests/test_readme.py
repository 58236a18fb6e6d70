"""The README's Python quickstart and its "Your own model and data" section run as written."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_runs(tmp_path):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert blocks, "README has no python quickstart"
    proc = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "int8 int8" in proc.stdout
    acc = float(re.search(r"accuracy: ([0-9.]+)", proc.stdout).group(1))
    assert acc > 0.9
    assert (tmp_path / "digits_int8.tflite").exists()


def _section(title):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


@pytest.mark.slow
def test_your_own_model_and_data_runs(tmp_path):
    """The README's "Your own model and data": a Keras 3 model and an .npz through
    check → optimize → export → bench → tune → optimize with the best recipe, then
    the Python API back to Keras 3 (about 3-4 minutes on 2 cores)."""
    section = _section("Your own model and data")
    section = section[:section.index("### A model that is not a classifier")]  # run by its own test
    prep, api = re.findall(r"```python\n(.*?)```", section, re.S)
    (commands,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))

    def run(args, **kw):
        proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env, **kw)
        assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
        return proc.stdout

    run([sys.executable, "-c", prep])
    out = run(["bash", "-euo", "pipefail", "-c", commands])
    assert "trial int8 conversion of an untrained copy: ok" in out
    assert out.count("int8 ") >= 2 and "chosen: trial" in out
    for f in ("out/int8.tflite", "my_int8.tflite", "tune-out/best_recipe.yaml", "best/int8.tflite", "best/report.json"):
        assert (tmp_path / f).exists(), f
    printed = run([sys.executable, "-c", api])
    assert float(re.search(r"int8 accuracy: ([0-9.]+)", printed).group(1)) > 0.8
    back = run([sys.executable, "-c", "import keras; m = keras.saving.load_model('my_pruned.keras'); "
                "print(type(m).__module__, m.count_params())"])
    assert back.startswith("keras.")


def test_a_model_that_is_not_a_classifier_runs(tmp_path):
    """The README's segmenter: trained and saved by Keras 3, then check and optimize from the command line,
    scored in its own IoU (about 30 s on 2 cores)."""
    section = _section("Your own model and data")
    part = section[section.index("### A model that is not a classifier"):]
    (prep,) = re.findall(r"```python\n(.*?)```", part, re.S)
    (commands,) = re.findall(r"```sh\n(.*?)```", part, re.S)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run([sys.executable, "-c", prep], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", commands], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "task: loss binary_crossentropy, metrics [BinaryIoU] (the model's compile)" in proc.stdout
    table = proc.stdout[proc.stdout.index("file "):]
    assert table.splitlines()[0].split()[:2] == ["file", "iou"] and "accuracy" not in table
    import json

    rows = {f["name"]: f for f in json.loads((tmp_path / "seg-out" / "report.json").read_text())["files"]}
    assert rows["int8"]["score"] > 0.6 and rows["float32"]["score"] - rows["int8"]["score"] < 0.1, rows


def test_readme_recipes_load():
    """Every YAML recipe shown in the README is a valid recipe, with what it says it sets."""
    import tfcompress

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```yaml\n(.*?)```", f.read(), re.S)
    assert blocks
    for text in blocks:
        recipe = tfcompress.Recipe.from_yaml_string(text)
        assert recipe.to_yaml()  # round-trips through the writer
    (schedule,) = [b for b in blocks if "lr_schedule" in b]
    first = tfcompress.Recipe.from_yaml_string(schedule)
    assert [name for name, _ in first.stages][0] == "train"
    assert first.optimizer.nesterov and first.lr_schedule.kind == "cosine"
    assert first.pruning.lr_schedule.kind == "exponential"
