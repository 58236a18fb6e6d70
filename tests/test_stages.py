"""The compression stages, each on the small digits CNN (1 epoch)."""

import numpy as np
import pytest

import tfcompress
from tfcompress import Clustering, Distillation, Penalty, Pruning, Quantization, Recipe, RecipeError
from tfcompress._keras import keras, tfmot


def _run(model, digits, **fields):
    fields.setdefault("quantization", None)
    fields.setdefault("pruning", None)
    x, y = digits.train
    return tfcompress.optimize(model, (x[:512], y[:512]), digits.validation, recipe=Recipe(**fields), verbose=0)


def _kernel(model, name):
    layer = next(l for l in model.layers if l.name == name or getattr(getattr(l, "layer", None), "name", "") == name)
    return next(w for w in layer.weights if w.name.split("/")[-1].startswith("kernel")).numpy()


def test_clustering_then_cqat_keeps_clusters(trained_digits, digits):
    res = _run(trained_digits, digits, clustering=Clustering(number_of_clusters=8, epochs=1),
               quantization=Quantization(epochs=1))
    rep = res.report
    for name in ("conv2", "fc1", "logits"):
        assert rep.layer(name).stages["clustering"] == "clustered: 8 unique values"
    # conv1 has 144 weights: enough for 8 clusters
    assert rep.layer("conv1").stages["clustering"].startswith("clustered")
    q = next(s for s in rep.stages if s["name"] == "quantization")
    assert q["scheme"] == "cqat" and "CQAT" in q["details"]
    # the QAT model still holds at most 8 distinct kernel values per layer
    assert len(np.unique(_kernel(res.model, "fc1"))) <= 8
    assert rep.optimized["accuracy"] >= rep.baseline["accuracy"] - 0.05


def test_prune_cluster_pcqat_preserves_zeros_and_clusters(trained_digits, digits):
    res = _run(trained_digits, digits,
               pruning=Pruning(final_sparsity=0.5, epochs=1),
               clustering=Clustering(number_of_clusters=8, epochs=1, centroid_init="linear"),
               quantization=Quantization(epochs=1))
    rep = res.report
    assert [s["name"] for s in rep.stages] == ["pruning", "clustering", "quantization"]
    assert "sparsity preserved" in rep.stages[1]["details"]
    assert rep.stages[2]["scheme"] == "pcqat"
    fc1 = _kernel(res.model, "fc1")
    assert np.mean(fc1 == 0) >= 0.49
    assert len(np.unique(fc1)) <= 9  # 8 clusters + the preserved zero
    assert rep.layer("fc1").sparsity >= 0.49


def _audio(classes=3):
    """An audio-style model (Conv1D, which TF-MOT cannot quantize, then a Dense(3)) and seeded data."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([L.Input((64, 4)), L.Conv1D(8, 3, name="conv1d", activation="relu"),
                              L.GlobalAveragePooling1D(), L.Dense(3, name="out", activation="softmax")])
    x = np.random.default_rng(0).normal(size=(256, 64, 4)).astype("float32")
    y = (x[:, :, 0].mean(axis=1) > 0).astype("int64")
    return model, x, y + (x[:, :, 1].mean(axis=1) > 0.1) if classes == 3 else y


def test_pqat_keeps_the_zeros_of_a_layer_qat_leaves_in_float():
    # TF-MOT has no quantize config for Conv1D: 8-bit PQAT leaves it float and would train its pruned
    # zeros dense again (the report said sparsity 0.0 after a 50 % pruning stage). Audio-style model.
    model, x, y = _audio()
    res = tfcompress.optimize(model, (x, y), recipe=Recipe(pruning=Pruning(final_sparsity=0.5, epochs=2),
                                                           quantization=Quantization(epochs=2)),
                              verbose=0, check_baseline=False)
    assert res.report.layer("conv1d").stages["quantization"].startswith("skipped")
    assert res.report.stages[1]["scheme"] == "pqat"
    assert np.mean(_kernel(res.model, "conv1d") == 0) >= 0.49
    assert res.report.layer("conv1d").sparsity >= 0.49


def test_cqat_keeps_the_clusters_of_a_layer_qat_leaves_in_float():
    # the report said "clustered: 8 unique values" while the QAT model's Conv1D held 96
    model, x, y = _audio(classes=2)
    res = tfcompress.optimize(model, (x, y), recipe=Recipe(pruning=None,
                                                           clustering=Clustering(number_of_clusters=8, epochs=1),
                                                           quantization=Quantization(epochs=2)),
                              verbose=0, check_baseline=False)
    assert res.report.layer("conv1d").stages["clustering"] == "clustered: 8 unique values"
    assert res.report.stages[1]["scheme"] == "cqat"
    assert len(np.unique(_kernel(res.model, "conv1d"))) <= 8


def test_a_layer_pruning_left_too_few_weights_to_cluster_is_skipped_with_why():
    # 80 % pruning left the Dense(3) ~5 non-zero weights; 8 sparsity-preserving clusters raised
    # TensorFlow's InvalidArgumentError from KmeansPlusPlusInitialization ("4 vs 3")
    from tfcompress.clustering import why_not_clusterable

    model, x, y = _audio()
    res = tfcompress.optimize(model, (x, y), recipe=Recipe(pruning=Pruning(final_sparsity=0.8, epochs=1),
                                                           clustering=Clustering(number_of_clusters=8, epochs=1)),
                              verbose=0, check_baseline=False)
    assert "non-zero weights left after pruning" in res.report.layer("out").stages["clustering"]
    assert res.report.layer("conv1d").stages["clustering"] == "clustered: 8 unique values"
    dense = keras.layers.Dense(3)
    dense.build((None, 8))
    dense.set_weights([np.array([[1.0, -1.0, 0.5]] + [[0.0] * 3] * 7), np.zeros(3)])
    assert "cannot seed 8" in why_not_clusterable(dense, 8, preserve_sparsity=True)
    assert why_not_clusterable(dense, 8) is None  # without sparsity preservation TF-MOT clusters it


def test_scheme_override_plain_qat_after_pruning(trained_digits, digits):
    res = _run(trained_digits, digits, pruning=Pruning(final_sparsity=0.5, epochs=1),
               quantization=Quantization(epochs=1, scheme="qat"))
    assert res.report.stages[1]["scheme"] == "qat"
    assert "chosen in recipe" in res.report.stages[1]["details"]


def test_two_four_sparsity_skips_layers_that_cannot_hold_it(trained_digits, digits):
    res = _run(trained_digits, digits, pruning=Pruning(sparsity_m_by_n=(2, 4), epochs=1))
    rep = res.report
    assert "1 input channels, not a multiple of 4" in rep.layer("conv1").stages["pruning"]
    for name in ("conv2", "fc1", "logits"):
        assert rep.layer(name).stages["pruning"] == "wrapped"
    k = _kernel(res.model, "fc1")  # (in, out): groups of 4 along the input axis
    groups = k.T.reshape(k.shape[1], -1, 4)
    assert np.all((groups == 0).sum(-1) >= 2)
    assert "2:4 structured sparsity" in rep.stages[0]["details"]


def test_block_sparsity_zeros_whole_blocks(trained_digits, digits):
    res = _run(trained_digits, digits, pruning=Pruning(final_sparsity=0.5, block_size=(1, 4), epochs=1,
                                                       exclude=["conv1"]))
    k = _kernel(res.model, "fc1")
    blocks = k.reshape(k.shape[0], -1, 4)
    zero_blocks = np.all(blocks == 0, -1)
    assert zero_blocks.mean() == pytest.approx(0.5, abs=0.02)
    assert np.all(np.any(blocks != 0, -1) | zero_blocks)
    assert res.report.layer("conv1").stages["pruning"] == "skipped: excluded by 'conv1'"
    assert res.report.layer("conv2").stages["pruning"] == \
        "wrapped (block sparsity needs 2-D kernels: element-wise here)"
    assert res.report.layer("conv2").sparsity == pytest.approx(0.5, abs=0.01)


def test_per_layer_selection_and_overrides(trained_digits, digits):
    stage = Pruning(final_sparsity=0.8, epochs=1, include=["Conv2D", "fc1"], exclude=["conv1"],
                    per_layer={"fc.*": 0.3})
    rep = _run(trained_digits, digits, pruning=stage).report
    assert rep.layer("conv1").stages["pruning"] == "skipped: excluded by 'conv1'"
    assert rep.layer("logits").stages["pruning"] == "skipped: not in include"
    assert rep.layer("fc1").stages["pruning"] == "wrapped (sparsity 30%)"
    assert rep.layer("fc1").sparsity == pytest.approx(0.3, abs=0.01)
    assert rep.layer("conv2").sparsity == pytest.approx(0.8, abs=0.01)
    assert rep.layer("conv1").sparsity < 0.05


def test_pattern_matching_no_layer_is_an_error(trained_digits, digits):
    with pytest.raises(RecipeError, match=r"pruning.exclude: 'fc9' matches no layer.*layers are: conv1"):
        _run(trained_digits, digits, pruning=Pruning(exclude=["fc9"], epochs=1))


def test_user_schedule_object(trained_digits, digits):
    sched = tfmot.sparsity.keras.ConstantSparsity(0.6, begin_step=0, frequency=5)
    recipe = Recipe(pruning=Pruning(schedule=sched, epochs=1), quantization=None)
    res = tfcompress.optimize(trained_digits, digits.train, recipe=recipe, verbose=0)
    assert res.report.layer("fc1").sparsity == pytest.approx(0.6, abs=0.01)
    assert "user schedule ConstantSparsity" in res.report.stages[0]["details"]
    assert res.report.recipe["pruning"]["schedule"] == "custom: ConstantSparsity"
    with pytest.raises(RecipeError, match="YAML cannot hold"):
        recipe.to_yaml()


def _xnnpack_model():
    L = keras.layers
    inp = L.Input((8, 8, 3))
    x = L.ZeroPadding2D(1)(inp)
    x = L.Conv2D(8, 3, strides=2, padding="valid", activation="relu", name="stem")(x)
    x = L.Conv2D(16, 1, activation="relu", name="pw")(x)
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    x = L.Flatten()(x)
    out = L.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return model


def test_xnnpack_policy_prunes_only_1x1_convs():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 64)
    recipe = Recipe(pruning=Pruning(final_sparsity=0.5, pruning_policy="xnnpack", epochs=2), quantization=None)
    rep = tfcompress.optimize(_xnnpack_model(), (x, y), recipe=recipe, batch_size=16, verbose=0).report
    assert rep.layer("pw").stages["pruning"] == "wrapped"
    assert rep.layer("stem").stages["pruning"] == "skipped: XNNPACK policy prunes only 1x1 Conv2D layers"
    assert rep.layer("pw").sparsity == pytest.approx(0.5, abs=0.02)


def test_xnnpack_policy_on_unqualified_model_reports_why(trained_digits, digits):
    rep = _run(trained_digits, digits, pruning=Pruning(final_sparsity=0.5, pruning_policy="xnnpack",
                                                       epochs=1)).report
    what = rep.layer("fc1").stages["pruning"]
    assert what.startswith("wrapped (XNNPACK policy not applied: Could not find `Conv2D 3x3`")


def test_penalty_then_pruning_with_distillation(trained_digits, digits):
    res = _run(trained_digits, digits, penalty=Penalty(l1=1e-4, epochs=1),
               pruning=Pruning(final_sparsity=0.5, epochs=1), distillation=Distillation(alpha=0.5))
    rep = res.report
    assert [s["name"] for s in rep.stages] == ["penalty", "pruning"]
    assert rep.layer("fc1").stages["penalty"] == "penalised (l1=0.0001)"
    assert all("distilled (alpha 0.5, T 4)" in s["details"] for s in rep.stages)
    assert "distill_loss" in res.history["pruning"]
    assert not res.model.losses  # the penalty does not stick to the model
    assert rep.layer("fc1").sparsity == pytest.approx(0.5, abs=0.01)
    assert rep.optimized["accuracy"] >= rep.baseline["accuracy"] - 0.05


def test_distillation_with_clustering_and_qat(trained_digits, digits):
    res = _run(trained_digits, digits, clustering=Clustering(number_of_clusters=16, epochs=1),
               quantization=Quantization(epochs=1), distillation=Distillation(alpha=0.3, temperature=2))
    assert all("distill_loss" in h for h in res.history.values())
    assert res.report.optimized["accuracy"] >= res.report.baseline["accuracy"] - 0.05


@pytest.mark.parametrize("probs", [True, False])
def test_cached_teacher_loss_is_the_distillers_loss(probs):
    # the benchmarks' distillation with the teacher's outputs computed once uses this loss; it must be
    # Distiller's: alpha x cross-entropy + (1 - alpha) x T^2 x KL(teacher_T || student_T)
    from tfcompress import distill

    keras.utils.set_random_seed(0)
    x = np.random.RandomState(0).rand(16, 5).astype("float32")
    labels = np.arange(16) % 3
    act = "softmax" if probs else None
    teacher = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation=act)])
    student = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation=act)])
    t, s = teacher.predict(x, verbose=0), student.predict(x, verbose=0)

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    logit = (lambda p: np.log(np.clip(p, 1e-7, 1))) if probs else (lambda z: z)
    ce = -np.log(softmax(logit(s))[np.arange(16), labels])
    t_T, s_T = softmax(logit(t) / 2.0), softmax(logit(s) / 2.0)
    expected = 0.3 * ce + 0.7 * 4.0 * (t_T * np.log(t_T / s_T)).sum(-1)
    y = np.concatenate([np.eye(3, dtype="float32")[labels], t], axis=1)
    loss = distill.cached_teacher_loss(3, alpha=0.3, temperature=2.0, teacher_probs=probs, student_probs=probs)
    np.testing.assert_allclose(loss(y, s).numpy(), expected, rtol=1e-4, atol=1e-5)
    # and Distiller's own step (learning rate 0: the loss of these very weights)
    wrapper = distill.Distiller(student, teacher, alpha=0.3, temperature=2.0)
    wrapper.compile(keras.optimizers.SGD(0.0), distill.loss_for(student, sparse_labels=True))
    out = wrapper.train_on_batch(x, labels, return_dict=True)
    assert out["loss"] == pytest.approx(expected.mean(), rel=1e-4)
    with pytest.raises(RecipeError, match="alpha must be in"):
        distill.cached_teacher_loss(3, alpha=1.5)


def test_a_qat_student_ending_in_a_softmax_dense_is_distilled_as_probabilities():
    # QAT replaces a Dense's softmax by a QuantizeAwareActivation: the student's probabilities were taken as
    # logits, so every QAT stage with distillation pulled toward near-uniform outputs (ResNet-8's QAT epochs:
    # distill_loss 4.9 where the channels stage before had 0.2)
    from tfcompress import distill

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    student = tfmot.quantization.keras.quantize_model(model)
    assert distill.ends_in_softmax(model) and distill.ends_in_softmax(student)
    x = np.random.RandomState(0).rand(32, 5).astype("float32")
    wrapper = distill.Distiller(student, model, alpha=0.0, temperature=4.0)  # the soft term alone
    wrapper.compile(keras.optimizers.SGD(0.0), distill.loss_for(student, sparse_labels=True))
    out = wrapper.train_on_batch(x, np.arange(32) % 3, return_dict=True)
    assert out["loss"] < 0.01  # the same function, fake-quantized: next to no divergence from the teacher


def test_mixed_precision_where_valid_and_policy_restored(trained_digits, digits):
    res = _run(trained_digits, digits, pruning=Pruning(final_sparsity=0.5, epochs=1),
               quantization=Quantization(epochs=1), mixed_precision=True)
    prune, quant = res.report.stages
    assert prune["mixed_precision"] == "mixed_float16" and "mixed_float16" in prune["details"]
    assert quant["mixed_precision"].startswith("skipped: QAT")
    assert keras.mixed_precision.global_policy().name == "float32"
    assert all(l.dtype == "float32" for l in res.model.layers)
    assert res.report.layer("fc1").sparsity == pytest.approx(0.5, abs=0.01)


def test_mixed_precision_policy_restored_after_failure(trained_digits, digits):
    with pytest.raises(RecipeError):
        _run(trained_digits, digits, pruning=Pruning(include=["Flatten"], epochs=1), mixed_precision=True)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_yaml_stage_order_error(trained_digits, digits):
    text = "quantization: {epochs: 1}\npruning: {final_sparsity: 0.5}\n"
    with pytest.raises(RecipeError, match="list them in the order they run: pruning → quantization"):
        tfcompress.optimize(trained_digits, digits.train, recipe=Recipe.from_yaml_string(text))


def test_channels_stage_first_with_distillation(trained_digits, digits):
    from tfcompress import Channels

    recipe = Recipe(channels=Channels(ratio=0.25, epochs=1), pruning=Pruning(final_sparsity=0.5, epochs=1),
                    quantization=None, distillation=Distillation())
    assert Recipe.from_yaml_string(recipe.to_yaml()) == recipe
    x, y = digits.train
    res = tfcompress.optimize(trained_digits, (x[:512], y[:512]), digits.validation, recipe=recipe, verbose=0)
    rep = res.report
    assert [s["name"] for s in rep.stages] == ["channels", "pruning"]
    assert rep.layer("conv2").stages["channels"] == "pruned channels: 32 → 24"
    assert "distilled" in rep.stages[0]["details"]
    assert res.model.get_layer("conv2").filters == 24
    assert rep.layer("conv2").sparsity == pytest.approx(0.5, abs=0.01)
