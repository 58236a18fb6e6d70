"""setup.cfg lists every package by hand (because `models/` is mapped to
`tfcompress.models`); a package missing there works in an editable install and
breaks in a wheel, so check the list against the tree."""

import configparser
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    return cfg


def test_every_package_is_listed():
    listed = set(_cfg()["options"]["packages"].split())
    found = set()
    for top in ("tfcompress", "tflite_export"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            if "__init__.py" in files and "__pycache__" not in dirpath:
                found.add(os.path.relpath(dirpath, ROOT).replace(os.sep, "."))
    found.add("tfcompress.models")
    assert found == listed


def test_models_folder_is_mapped_not_installed_bare():
    cfg = _cfg()["options"]
    assert "models" not in cfg["packages"].split()
    assert "tfcompress.models = models" in cfg["package_dir"]


def test_pins():
    reqs = _cfg()["options"]["install_requires"]
    for pin in ("tensorflow>=2.21,<2.22", "tf-keras>=2.21,<2.22", "tensorflow-model-optimization==0.8.1",
                "keras-tuner==1.4.8", "ai-edge-litert>=2.3,<2.4", "tensorboard"):
        assert pin in reqs
