"""Magnitude pruning with TF-MOT, with the schedule maths done for you.

Unstructured, M:N structured (``sparsity_m_by_n=(2, 4)``) and block sparsity,
TF-MOT's XNNPACK latency policy, per-layer include/exclude and per-layer
sparsity overrides; every layer is reported as wrapped or skipped, and why.

Example:
    >>> from tfcompress import Pruning
    >>> from tfcompress.pruning import wrap, strip, layer_sparsity
    >>> wrapped, records, steps = wrap(model, Pruning(final_sparsity=0.5),  # doctest: +SKIP
    ...                                num_samples=1000, batch_size=32)
    >>> records["conv1"]  # doctest: +SKIP
    'wrapped'
"""

from tfcompress._keras import keras, tfmot
from tfcompress._model import clone
from tfcompress.errors import RecipeError, first_line
from tfcompress.pruning.penalty import apply_penalty
from tfcompress.pruning.selection import check_patterns, excluded_reason, first_match
from tfcompress.pruning.weights import _registry, _weight_names, layer_sparsity, prunable_weights

__all__ = [
    "wrap", "strip", "schedule", "callbacks", "layer_sparsity", "prunable_weights",
    "why_not_prunable", "why_not_m_by_n", "xnnpack_policy_reason", "apply_penalty", "describe",
    "selected_layers",
]

_sparsity = tfmot.sparsity.keras


def schedule(stage, steps, final_sparsity=None):
    """The TF-MOT pruning schedule for a :class:`~tfcompress.Pruning` stage.

    Args:
        stage: the recipe's pruning stage.
        steps: its :class:`~tfcompress.pruning.config.PruningSteps`.
        final_sparsity: overrides ``stage.final_sparsity`` (per-layer
            overrides). Defaults to `None`.

    Returns:
        A ``tfmot.sparsity.keras.PruningSchedule`` (the stage's own object
        when it holds one).

    Example:
        >>> from tfcompress import Pruning
        >>> s = Pruning(schedule="constant", final_sparsity=0.5)
        >>> type(schedule(s, s.steps(100, 10))).__name__
        'ConstantSparsity'
    """
    if stage.custom_schedule:
        return stage.schedule
    final = stage.final_sparsity if final_sparsity is None else final_sparsity
    if stage.schedule == "constant":
        return _sparsity.ConstantSparsity(
            final, begin_step=steps.begin_step, end_step=steps.end_step, frequency=steps.frequency,
        )
    return _sparsity.PolynomialDecay(
        initial_sparsity=min(stage.initial_sparsity, final), final_sparsity=final,
        begin_step=steps.begin_step, end_step=steps.end_step,
        power=stage.power, frequency=steps.frequency,
    )


def why_not_prunable(layer):
    """None when TF-MOT can prune ``layer``, else the reason it is skipped."""
    if isinstance(layer, keras.Model):
        return "nested model: wrap its layers in the outer model instead"
    if not layer.weights:
        return "no weights"
    if not _registry.supports(layer):
        return f"TF-MOT has no pruning rule for {type(layer).__name__}"
    if not _weight_names(layer):
        return "no prunable weights (e.g. only biases or normalisation statistics)"
    return None


def why_not_m_by_n(layer, m_by_n):
    """None when every prunable kernel of ``layer`` can hold M:N sparsity.

    TF-MOT groups the ``n`` consecutive weights along the input channels (the
    last axis of the TFLite kernel layout), so the kernel must be 2-D (Dense)
    or 4-D (Conv2D) and its input channels a multiple of ``n``.

    Example:
        >>> from tfcompress._keras import keras
        >>> conv = keras.layers.Conv2D(8, 3); conv.build((None, 8, 8, 1))
        >>> why_not_m_by_n(conv, (2, 4))
        'kernel of shape (3, 3, 1, 8) has 1 input channels, not a multiple of 4: cannot hold 2:4 sparsity'
    """
    m, n = m_by_n
    for name in _weight_names(layer):
        w = getattr(layer, name, None)
        if w is None:
            continue
        shape = tuple(w.shape)
        if len(shape) not in (2, 4):
            return f"kernel of shape {shape} is neither 2-D nor 4-D: TF-MOT M:N sparsity needs Dense or Conv2D kernels"
        cin = shape[-2]
        if cin % n:
            return (f"kernel of shape {shape} has {cin} input channels, not a multiple of {n}: "
                    f"cannot hold {m}:{n} sparsity")
    return None


def xnnpack_policy_reason(model):
    """None when TF-MOT's ``PruneForLatencyOnXNNPack`` accepts ``model``, else why not.

    Example:
        >>> from tfcompress import models
        >>> xnnpack_policy_reason(models.get("digits_cnn").build())[:40]
        'Could not find `Conv2D 3x3` layer with s'
    """
    try:
        _sparsity.PruneForLatencyOnXNNPack().ensure_model_supports_pruning(model)
    except (ValueError, AttributeError, TypeError) as e:
        return first_line(e, 10**6)
    return None


def describe(stage, steps):
    """One line saying what a pruning stage does, for the report."""
    if stage.sparsity_m_by_n:
        target = "{}:{} structured sparsity".format(*stage.sparsity_m_by_n)
    else:
        target = f"{stage.final_sparsity:.0%}"
    if stage.custom_schedule:
        what = f"user schedule {type(stage.schedule).__name__}"
        if stage.sparsity_m_by_n:
            what += f" with {target}"
    else:
        what = (f"{stage.schedule} to {target}, steps "
                f"{steps.begin_step}→{steps.end_step} every {steps.frequency}")
    if tuple(stage.block_size) != (1, 1):
        what += f", blocks {stage.block_size[0]}x{stage.block_size[1]}"
    if stage.per_layer:
        what += f", {len(stage.per_layer)} per-layer override(s)"
    if stage.pruning_policy:
        what += f", policy {stage.pruning_policy}"
    return what


def _policy(model, stage):
    """``(TF-MOT policy or None, note or None)`` for the stage's ``pruning_policy``."""
    if stage.pruning_policy != "xnnpack":
        return None, None
    reason = xnnpack_policy_reason(model)
    if reason is None:
        return _sparsity.PruneForLatencyOnXNNPack(), None
    return None, f"XNNPACK policy not applied: {reason}"


def _skip_reason(layer, stage, policy):
    reason = why_not_prunable(layer)
    if reason is None:
        reason = excluded_reason(layer, stage.include, stage.exclude)
    if reason is None and policy is not None and not policy.allow_pruning(layer):
        reason = "XNNPACK policy prunes only 1x1 Conv2D layers"
    if reason is None and stage.sparsity_m_by_n:
        reason = why_not_m_by_n(layer, stage.sparsity_m_by_n)
    return reason


def selected_layers(model, stage):
    """The layers of ``model`` that :func:`wrap` would prune (per-layer sparsities aside).

    Example:
        >>> from tfcompress import Pruning, models
        >>> [l.name for l in selected_layers(models.get("digits_cnn").build(), Pruning(exclude=["conv1"]))][:1]
        ['conv2']
    """
    policy, _ = _policy(model, stage)
    return [layer for layer in model.layers if _skip_reason(layer, stage, policy) is None]


def wrap(model, stage, num_samples, batch_size, epochs=None, targets=None, fixed_mask=False):
    """Wrap the selected prunable layers of a copy of ``model`` in TF-MOT's pruning wrapper.

    Args:
        model: a tf_keras Sequential or Functional model (left untouched).
        stage: a :class:`~tfcompress.Pruning` stage.
        num_samples: training examples per epoch (for the step maths).
        batch_size: fine-tuning batch size.
        epochs: overrides ``stage.epochs``. Defaults to `None`.
        targets: ``{layer name: sparsity}`` chosen elsewhere (global scope,
            saliency; see :mod:`tfcompress.pruning.global_`), replacing
            ``final_sparsity`` and ``per_layer``. Defaults to `None`.
        fixed_mask: prune once, at the first step, to ``targets`` and keep that mask
            (the chosen weights are already zero). Defaults to `False`.

    Returns:
        ``(wrapped_model, records, steps)``: records map layer name to
        ``"wrapped"`` (possibly with a note in parentheses) or
        ``"skipped: <reason>"``; steps is a
        :class:`~tfcompress.pruning.config.PruningSteps`.

    Raises:
        RecipeError: an include/exclude/per_layer pattern matches no layer, or
            no layer is left to prune.

    Example:
        >>> from tfcompress import Pruning, models
        >>> m = models.get("digits_cnn").build()
        >>> _, rec, _ = wrap(m, Pruning(sparsity_m_by_n=(2, 4)), 1000, 32)
        >>> rec["conv1"][:8], rec["conv2"]
        ('skipped:', 'wrapped')
    """
    check_patterns(model.layers, "pruning", include=stage.include, exclude=stage.exclude,
                   per_layer=list(stage.per_layer or ()))
    steps = stage.steps(num_samples, batch_size, epochs)
    default_sched = schedule(stage, steps)
    records = {}

    policy, policy_note = _policy(model, stage)

    def clone_fn(layer):
        reason = _skip_reason(layer, stage, policy)
        sched = default_sched
        notes = []
        if reason is None and targets is not None:
            target = targets.get(layer.name, 0.0)
            if target == 0:
                reason = f"{stage.scope} {stage.criterion} allocation sets sparsity 0"
            elif fixed_mask:
                # The wrapper counts steps from 1 (it adds one before it may update the mask): one update, at step 1.
                sched = _sparsity.ConstantSparsity(target, begin_step=1, end_step=1, frequency=1)
                notes.append(f"sparsity {target:.1%}, {stage.criterion} mask fixed at the first step")
            else:
                sched = schedule(stage, steps, final_sparsity=target)
                notes.append(f"sparsity {target:.1%}")
        elif reason is None and stage.per_layer:
            hit = first_match(layer, stage.per_layer)
            if hit is not None:
                target = stage.per_layer[hit]
                if target == 0:
                    reason = f"per_layer {hit!r} sets sparsity 0"
                else:
                    sched = schedule(stage, steps, final_sparsity=target)
                    notes.append(f"sparsity {target:.0%}")
        if reason is not None:
            if layer.weights:
                records[layer.name] = f"skipped: {reason}"
            return layer
        # The wrapper must compute like its layer (a float32 output layer
        # under a mixed_float16 global policy), else TF-MOT mixes dtypes.
        kwargs = {"dtype": layer.dtype_policy.name}
        if stage.sparsity_m_by_n:
            kwargs["sparsity_m_by_n"] = tuple(stage.sparsity_m_by_n)
        if tuple(stage.block_size) != (1, 1):
            # TF-MOT raises for block sparsity on kernels that are not 2-D.
            if all(len(getattr(layer, n).shape) == 2 for n in _weight_names(layer) if hasattr(layer, n)):
                kwargs["block_size"] = tuple(stage.block_size)
            else:
                notes.append("block sparsity needs 2-D kernels: element-wise here")
        if policy_note:
            notes.append(policy_note)
        records[layer.name] = "wrapped" + (f" ({'; '.join(notes)})" if notes else "")
        return _sparsity.prune_low_magnitude(layer, pruning_schedule=sched, **kwargs)

    wrapped = clone(model, clone_fn)
    if not any(v.startswith("wrapped") for v in records.values()):
        skipped = "; ".join(f"{k}: {v[9:]}" for k, v in records.items()) or "no Dense/Conv layers"
        raise RecipeError(
            f"pruning found no layer to prune ({skipped}): widen pruning.include/exclude, "
            "or remove the pruning stage from the recipe."
        )
    return wrapped, records, steps


def callbacks():
    """Callbacks a pruning fine-tune needs (``UpdatePruningStep``)."""
    return [_sparsity.UpdatePruningStep()]


def strip(model):
    """Remove the pruning wrappers, keeping the pruned weights."""
    return _sparsity.strip_pruning(model)
