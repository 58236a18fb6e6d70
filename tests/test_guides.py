"""The site's guides run as written: each guide's ```python blocks, in order, in one namespace.

Blocks run in this test process (TensorFlow is imported once, not once per
guide), in a fresh folder. A guide whose blocks take more than seconds says
so on its first line with ``<!-- test: slow -->`` and runs in the slow tier; a
block preceded by ``<!-- no-run: reason -->`` is shown, not run (it needs
hardware or a cluster), and must say why.
"""

import os
import pathlib
import re

import pytest

GUIDES = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guides"
BLOCK = re.compile(r"(<!-- no-run: (?P<why>[^>]*?) -->\s*)?```python\n(?P<code>.*?)```", re.S)


def blocks(path):
    """``[(code, reason_not_run or None)]`` of a guide."""
    return [(m["code"], m["why"]) for m in BLOCK.finditer(path.read_text(encoding="utf-8"))]


def _params():
    out = []
    for path in sorted(GUIDES.glob("*.md")):
        slow = path.read_text(encoding="utf-8").startswith("<!-- test: slow -->")
        out.append(pytest.param(path, id=path.stem, marks=[pytest.mark.slow] if slow else []))
    return out


def test_every_guide_is_in_the_site():
    index = (GUIDES / "index.md").read_text(encoding="utf-8")
    for path in GUIDES.glob("*.md"):
        if path.stem != "index":
            assert f"\n{path.stem}\n" in index, f"{path.name} is not in guides/index.md's toctree"


@pytest.mark.parametrize("path", _params())
def test_guide_runs(path, tmp_path, monkeypatch):
    code = blocks(path)
    if not code:
        pytest.skip(f"{path.name} has no python block")
    monkeypatch.chdir(tmp_path)
    from tfcompress._keras import keras

    keras.backend.clear_session()  # as in a fresh process: layer names, no models of earlier tests
    namespace = {"__name__": f"guide_{path.stem}"}
    for i, (source, why) in enumerate(code):
        if why is not None:
            assert why.strip(), f"{path.name}: a no-run block must say why"
            continue
        try:
            exec(compile(source, f"{path.name}[block {i}]", "exec"), namespace)  # noqa: S102 - our own docs
        except Exception as e:
            raise AssertionError(f"{path.name}, python block {i} failed: {type(e).__name__}: {e}\n{source}") from e
    os.environ.pop("TF_CONFIG", None)
