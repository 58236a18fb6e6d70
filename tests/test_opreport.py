"""Which ops fall back from XNNPACK to builtin kernels, named where a file is slower,
and the ResNet-8 reference model of the realistic benchmark."""

import numpy as np
import pytest

import tflite_export
from tfcompress import models, pipeline
from tfcompress._keras import keras
from tflite_export import opreport


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """float32 and int8 files of a tiny conv -> GELU -> pool -> dense graph (XNNPACK has no int8 GELU)."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = L.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = L.Activation("gelu")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, L.Dense(4, activation="softmax")(x))
    out = tmp_path_factory.mktemp("opreport")
    rep = np.random.default_rng(0).random((16, 8, 8, 3), dtype=np.float32)
    return {mode: tflite_export.export(model, str(out / f"{mode}.tflite"), mode=mode,
                                       representative_data=rep if mode == "int8" else None).path
            for mode in ("float32", "int8")}


def test_delegation_splits_ops_between_xnnpack_and_builtin_kernels(files):
    f32 = opreport.delegation(files["float32"])
    assert (f32.ops, f32.delegated, f32.partitions, f32.fallback) == (5, 5, 1, {})
    q = opreport.delegation(files["int8"])
    assert q.fallback["GELU"] == 1 and (1, "GELU") in q.fallback_nodes
    assert q.delegated == q.ops - sum(q.fallback.values()) and q.partitions >= 2
    assert "CONV_2D" not in q.fallback  # the conv is delegated
    assert q.to_dict()["fallback"] == q.fallback


def test_the_slower_note_names_the_ops_that_fall_back(files):
    rows = [{"name": "float32", "path": files["float32"], "median_ms": 1.0},
            {"name": "int8", "path": files["int8"], "median_ms": 2.0}]
    (note,) = pipeline.slower_than_float(rows, 1)
    assert note.startswith("int8.tflite is slower than float32.tflite") and "0.50x the speed" in note
    assert "fall back to builtin kernels (not delegated to XNNPACK): GELU x1" in note
    # a file whose ops all run in XNNPACK is said so, with the kernels' cost as the reason
    rows[1]["path"] = files["float32"]
    (note,) = pipeline.slower_than_float(rows, 1)
    assert "all 5 ops run in XNNPACK" in note and "quantize/requantize" in note


def test_resnet8_is_a_reference_model_with_residual_blocks():
    spec = models.get("resnet8")
    model = spec.build()
    assert model.output_shape == (None, 10) and spec.dataset == "fashion-mnist"
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(adds) == 3 and len(convs) == 9  # stem, 3 blocks x 2, 2 strided projections
    assert [c.filters for c in convs if c.name.endswith("b_conv")] == [16, 32, 64]
    assert spec.recipe().pruning.final_sparsity == 0.5
