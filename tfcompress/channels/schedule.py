"""One-shot and iterative channel-pruning schedules (the ``channels`` recipe stage).

Example:
    >>> from tfcompress.channels import Channels, apply
    >>> cfg = Channels(ratio=0.5, schedule="iterative", steps=2, epochs=1)
    >>> small, report = apply(model, cfg, data=dataset)   # distils from `model`
"""


from tfcompress._defaults import BATCH_SIZE, LEARNING_RATE
from tfcompress._model import check_model
from tfcompress.channels.budget import ratios_for_budget, search_uniform
from tfcompress.channels.config import Channels
from tfcompress.channels.cost import count_flops
from tfcompress.channels.importance import NEEDS_DATA
from tfcompress.channels.merge import merge_channels
from tfcompress.channels.report import ChannelReport
from tfcompress.channels.sensitivity import sensitivity_scan
from tfcompress.channels.surgery import Plan, _resolve_ratios, prune_channels
from tfcompress.errors import DataError, RecipeError

__all__ = ["apply", "default_fine_tune"]


def _split(data, name):
    if data is None:
        return None
    if not isinstance(data, (tuple, list)) and hasattr(data, name):
        return getattr(data, name)
    return data


def default_fine_tune(teacher, train, config, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE):
    """A ``fine_tune(model, epochs) -> model`` callable: distillation from
    ``teacher`` (``config.distill``) or plain training, with Adam and a cosine
    learning-rate decay over the fine-tuning epochs, in the teacher's task
    (its compiled loss and metrics; for an uncompiled classifier the loss its
    output and the labels' form imply), as :func:`tfcompress.optimize` does.

    Args:
        teacher: the unpruned model.
        train: (x, y) or a tf.data.Dataset of (x, y).
        config: the :class:`Channels` stage (alpha, temperature, distill).
        batch_size: batch size for numpy data. Defaults to `32` (a recipe's default batch size).
        learning_rate: Adam learning rate. Defaults to `0.001` (a recipe's default).

    Returns:
        the callable.
    """
    from tfcompress import distill
    from tfcompress._data import prepare
    from tfcompress._keras import keras
    from tfcompress.task import compile_config_of, task_for

    compiled = compile_config_of(teacher) or {}

    def fine_tune(model, epochs):
        task = task_for(model, compiled=compiled)
        data = prepare(train, model, batch_size, shuffle=True, sparse_labels=task.sparse_labels,
                       classifier=task.classifier)
        if task.source == "inferred":  # the loss follows the labels' form
            task = task_for(model, sparse_labels=data.sparse_labels, compiled={})
        steps = max(1, epochs * -(-data.num_samples // batch_size)) if data.num_samples else None
        lr = keras.optimizers.schedules.CosineDecay(learning_rate, steps) if steps else learning_rate
        was = teacher.trainable
        try:
            distill.fine_tune(model, data.dataset, epochs, teacher=teacher if config.distill else None,
                              alpha=config.alpha, temperature=config.temperature, optimizer=keras.optimizers.Adam(lr),
                              match="kl" if task.classifier else "mse", **task.compile_args())
        finally:
            teacher.trainable = was
        return model

    return fine_tune


def _task_tools(model, task, val):
    """``(loss_fn, scorer)`` of a task that is not a classifier (Taylor importance, sensitivity scans), else Nones."""
    if task is None or task.classifier:
        return None, None
    from tfcompress.scoring import Scorer

    return task.loss_fn(list(model.output_names)), (Scorer.of(task, model, *val) if val is not None else None)


def _final_ratios(model, config, data, task=None):
    """{group name: final ratio} for the whole schedule, plus notes."""
    notes = []
    if config.flops is None and config.params is None:
        return dict(config.per_layer or {}), config.ratio, notes
    val = _split(data, "validation")
    loss_fn, scorer = _task_tools(model, task, val)
    plan = Plan(model, config.criterion, _split(data, "train") if config.criterion in NEEDS_DATA else None, loss_fn)
    fixed_ratios, fixed = _resolve_ratios(plan, None, config.per_layer)
    if val is not None:
        rep = sensitivity_scan(model, val, criterion=config.criterion,
                               data=_split(data, "train"), max_samples=1000, scorer=scorer)
        by_name = ratios_for_budget(rep, flops=config.flops, params=config.params, plan=plan)
        notes.append(f"per-layer ratios from a sensitivity scan for the budget: {by_name}")
        out = {n: r for n, r in by_name.items() if plan.by_layer[n].id not in fixed}
    else:
        ratios, met = search_uniform(plan, fixed_ratios, fixed, config.flops, config.params)
        if not met:
            notes.append("budget not reachable (locked layers dominate); pruned as far as possible")
        out = {plan.groups[r].name: v for r, v in ratios.items() if r not in fixed and v > 0}
        notes.append("no validation data: uniform ratio searched to meet the budget")
    out.update(config.per_layer or {})
    return out, 0.0, notes


def apply(model, config, data=None, fine_tune=None, task=None):
    """Run the ``channels`` stage: prune (one-shot or iteratively) and fine-tune.

    Args:
        model: tf_keras Sequential or Functional model (not modified).
        config: a :class:`Channels` (or a dict of its fields).
        data: a tfcompress Dataset (``.train``/``.validation``), or (x, y) used
            for everything; needed for "taylor", for a sensitivity-based budget,
            and for the default fine-tuning.
        fine_tune: ``fine_tune(model, epochs) -> model`` called after each step
            (when ``config.epochs > 0``). Defaults to distillation from the
            unpruned model on ``data.train`` (or plain training if
            ``config.distill`` is False); without data and fine_tune, no
            fine-tuning happens (noted in the report).

    Returns:
        (model, ChannelReport).

    Raises:
        RecipeError: bad config.
        UnsupportedModelError: unsupported model.
        DataError: data needed but missing or malformed.

    Example:
        >>> small, rep = apply(model, Channels(flops=0.5, epochs=1), data=tfcompress.datasets.load("digits"))
    """
    check_model(model)
    if isinstance(config, dict):
        config = Channels(**config)
    if not isinstance(config, Channels):
        raise RecipeError(f"config must be a channels.Channels stage, got {type(config).__name__}.")
    train = _split(data, "train")
    if config.criterion in NEEDS_DATA and train is None:
        raise DataError(f"criterion {config.criterion!r} needs data: pass data=(x, y) or a dataset with .train.")
    if config.mode == "merge" and config.merge_similarity == "activations" and train is None:
        raise DataError("merge_similarity 'activations' needs data: pass data=(x, y) or a dataset with .train.")
    base_plan = Plan(model, "l1")
    _resolve_ratios(base_plan, None, config.per_layer)  # unknown / locked names -> RecipeError
    per_layer, ratio, notes = _final_ratios(model, config, data, task)
    loss_fn = _task_tools(model, task, None)[0]
    if fine_tune is None and config.epochs > 0:
        if train is not None:
            fine_tune = default_fine_tune(model, train, config)
        else:
            notes.append("no data and no fine_tune given: pruned without fine-tuning")
    orig = {}  # group name -> channels before
    for g in base_plan.groups.values():
        for m in g.members:
            orig[m] = g.channels
    steps = config.steps if config.schedule == "iterative" else 1
    current, reports = model, []
    for i in range(1, steps + 1):
        frac = i / steps
        step_plan = Plan(current, "l1") if i > 1 else base_plan
        step_layer = {}
        for name, g in ((m, grp) for grp in step_plan.groups.values() for m in grp.members[:1]):
            final = per_layer.get(name, None)
            if final is None:
                final = max([per_layer[m] for m in g.members if m in per_layer] or [ratio])
            if not final:
                continue
            c0 = orig.get(name, g.channels)
            target = int(round(c0 * (1 - final * frac)))
            if target < 1:
                target = 1
                if i == steps:
                    notes.append(f"group '{name}': ratio {final:.2f} would remove all {c0} channels; kept 1")
            if g.channels > target:
                step_layer[name] = (g.channels - target) / g.channels
        if not step_layer:
            current, rep = _noop(current)
        elif config.mode == "merge":
            current, rep = merge_channels(current, per_layer=step_layer, similarity=config.merge_similarity,
                                          data=train if config.merge_similarity == "activations" else None)
        else:
            current, rep = prune_channels(current, per_layer=step_layer, criterion=config.criterion,
                                          data=train if config.criterion in NEEDS_DATA else None, loss_fn=loss_fn)
        if fine_tune is not None and config.epochs > 0:
            tuned = fine_tune(current, config.epochs)
            current = tuned if tuned is not None else current
        reports.append(rep)
    return current, _merge(reports, config, notes, model)


def _noop(model):
    return model, None


def _merge(reports, config, notes, model):
    target = {
        "ratio": config.ratio, "per_layer": dict(config.per_layer or {}), "flops": config.flops,
        "params": config.params, "schedule": config.schedule,
        "steps": config.steps if config.schedule == "iterative" else 1, "epochs": config.epochs,
        "distill": config.distill, "mode": config.mode,
    }
    real = [r for r in reports if r is not None]
    if not real:
        f, p = count_flops(model), int(model.count_params())
        return ChannelReport(config.criterion, target, [], [], f, f, p, p, notes + ["nothing to prune"],
                             mode=config.mode)
    first, last = real[0], real[-1]
    after_g = {g["name"]: g["channels_after"] for g in last.groups}
    groups = []
    for g in first.groups:
        d = dict(g)
        d["channels_after"] = after_g.get(g["name"], g["channels_after"])
        d["ratio"] = round(1 - d["channels_after"] / d["channels_before"], 4) if d["channels_before"] else 0.0
        groups.append(d)
    after_l = {l["name"]: l for l in last.layers}
    layers = []
    for l in first.layers:
        d = dict(l)
        a = after_l.get(l["name"])
        if a is not None:
            d.update(after=a["after"], flops_after=a["flops_after"], params_after=a["params_after"])
        layers.append(d)
    all_notes = list(notes)
    for r in real:
        all_notes += [n for n in r.notes if n not in all_notes]
    steps = [{"step": i + 1, "flops": r.flops_after, "params": r.params_after} for i, r in enumerate(real)]
    return ChannelReport(
        criterion=first.criterion, target=target, groups=groups, layers=layers,
        flops_before=first.flops_before, flops_after=last.flops_after,
        params_before=first.params_before, params_after=last.params_after,
        notes=all_notes, steps=steps, mode=config.mode, merges=[m for r in real for m in r.merges],
    )
