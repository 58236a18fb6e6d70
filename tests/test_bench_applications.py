"""benchmarks/bench_applications.py writes through the one results writer (benchmarks/_results.py), like
every other benchmark: both files, the provenance, and rows of earlier sittings kept (the benchmark itself
takes an hour, so only its writer runs here)."""

import json

from benchmarks import bench_applications as bench


def test_rows_merge_and_write_through_the_results_writer(tmp_path):
    names = ["MobileNet", "ResNet50"]
    row = {"name": "MobileNet", "input": 32, "params": 10, "status": "ok", "seconds": {"total": 3.0}}
    bench._save("MobileNet", row, "python -m benchmarks.bench_applications --models MobileNet", names, tmp_path)
    later = dict(row, name="ResNet50", status="crash: signal 11 in export")
    md = bench._save("ResNet50", later, "python -m benchmarks.bench_applications --models ResNet50", names, tmp_path)
    saved = json.loads((tmp_path / "applications.json").read_text())
    assert [r["name"] for r in saved["rows"]] == names  # the first sitting's row is kept
    assert len(saved["commands"]) == 2
    assert {"argv", "machine", "versions", "git_revision"} <= set(saved["provenance"])
    text = open(md, encoding="utf-8").read()
    assert text.startswith("## keras.applications") and "| ResNet50 |" in text
    assert bench._load(tmp_path)[0]["MobileNet"]["status"] == "ok"
