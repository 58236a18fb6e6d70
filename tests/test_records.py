"""Report classes share one to_dict (tflite_export._record.Record): the JSON each wrote by hand before stays
the same, key for key."""

import json

import numpy as np

from tflite_export.benchmark import Timing
from tflite_export.convert import ExportReport
from tflite_export.opreport import Delegation
from tflite_export.validate import LayerError


def test_timing_rounds_to_4_decimals_and_writes_no_infinity():
    d = Timing(path="m.tflite", median_ms=1.234567, mean_ms=float("inf"), std_ms=np.float64(0.123456),
               affinity=[0, 1]).to_dict()
    assert list(d) == [f for f in Timing.__dataclass_fields__]
    assert d["median_ms"] == 1.2346 and d["mean_ms"] is None and d["std_ms"] == 0.1235
    assert d["affinity"] == [0, 1] and d["min_ms"] is None
    json.dumps(d, allow_nan=False)


def test_layer_error_writes_an_identical_layer_as_inf():
    d = LayerError("conv", "t", "name", (8, 8, 4), "int8", float("inf"), 1.0, 0.0).to_dict()
    assert d["shape"] == [8, 8, 4] and d["snr_db"] == "inf"
    assert LayerError("fc", snr_db=float("nan"), cosine=0.123456).to_dict()["cosine"] == 0.1235
    assert LayerError("fc", snr_db=float("nan")).to_dict()["snr_db"] is None


def test_export_report_quantization_is_a_plain_pair():
    rep = ExportReport("m.tflite", "int8", 10, 8, "int8", "int8", (np.float32(0.5), np.int32(-3)), None)
    d = rep.to_dict()
    assert d["input_quantization"] == [0.5, -3] and type(d["input_quantization"][1]) is int
    assert d["output_quantization"] is None and d["metadata"] == {}


def test_delegation_keeps_its_keys():
    d = Delegation(ops=3, delegated=2, partitions=1, fallback={"TANH": 1}, fallback_nodes=[(2, "TANH")]).to_dict()
    assert d == {"ops": 3, "delegated": 2, "partitions": 1, "fallback": {"TANH": 1}, "fallback_nodes": [[2, "TANH"]]}
