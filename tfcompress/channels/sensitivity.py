"""Per-group sensitivity scan and budget -> per-layer ratios.

Example:
    >>> from tfcompress.channels import sensitivity_scan, ratios_for_budget, prune_channels
    >>> rep = sensitivity_scan(model, (x_val, y_val), ratios=(0.25, 0.5, 0.75))
    >>> rep.plot("sensitivity.png")
    >>> per_layer = ratios_for_budget(rep, flops=0.5)
    >>> small, report = prune_channels(model, per_layer=per_layer)
"""

from dataclasses import dataclass, field

import numpy as np

from tfcompress._checks import fraction_removed
from tfcompress._keras import tf
from tfcompress.channels.budget import ratios_for_budget
from tfcompress.channels.importance import NEEDS_DATA
from tfcompress.channels.surgery import Plan
from tfcompress.errors import DataError, RecipeError
from tfcompress.report import markdown_table
from tfcompress.scoring import accuracy, take
from tflite_export._atomic import save_figure
from tflite_export._record import plain

__all__ = ["SensitivityReport", "sensitivity_scan", "ratios_for_budget"]


def as_xy(data, split="validation", limit=None):
    """(x, y) numpy arrays from (x, y), a tfcompress Dataset (``split``), or a
    tf.data.Dataset of (x, y) batches."""
    if data is not None and not isinstance(data, (tuple, list, tf.data.Dataset)) and hasattr(data, split):
        data = getattr(data, split)
    if isinstance(data, tf.data.Dataset):
        batched = data.element_spec[0].shape.rank and data.element_spec[0].shape[0] is None
        if not batched:
            data = data.batch(256)
        xs, ys, n = [], [], 0
        for xb, yb in data:
            xb, yb = np.asarray(xb), np.asarray(yb)
            xs.append(xb)
            ys.append(yb)
            n += len(xb)
            if limit and n >= limit:
                break
        if not xs:
            raise DataError("the data set is empty: pass at least one (x, y) batch.")
        x, y = np.concatenate(xs), np.concatenate(ys)
    else:
        try:
            x, y = data
        except (TypeError, ValueError):
            raise DataError(
                "data must be (x, y) arrays, a tf.data.Dataset of (x, y) batches, or a dataset with "
                f".{split}; got {type(data).__name__}."
            ) from None
        x, y = np.asarray(x), np.asarray(y)
    if len(x) == 0 or len(x) != len(y):
        raise DataError(f"data has {len(x)} inputs and {len(y)} labels: pass equally many, at least one.")
    if limit:
        x, y = x[:limit], y[:limit]
    return x, y


@dataclass
class SensitivityReport:
    """Accuracy of the model with one group pruned at a time (no fine-tuning).

    Attributes:
        baseline: accuracy of the unpruned model.
        ratios: the ratios tried.
        groups: one dict per prunable group: name, members, channels,
            accuracy {ratio: acc}, flops {ratio: model FLOPs}, params {ratio: ...}.
        flops_before, params_before: unpruned model totals.
        criterion: importance criterion used.
    """

    baseline: float
    ratios: tuple
    groups: list
    flops_before: int
    params_before: int
    criterion: str = "l1"
    _plan: object = field(default=None, repr=False, compare=False)

    @property
    def plan(self):
        """The ``tfcompress.channels.surgery.Plan`` the scan thinned the model with (None when not kept)."""
        return self._plan

    def to_dict(self):
        """A JSON-able dict."""
        return plain({
            "baseline": self.baseline, "ratios": list(self.ratios), "criterion": self.criterion,
            "flops_before": self.flops_before, "params_before": self.params_before,
            "groups": self.groups,
        })

    def to_markdown(self):
        """A Markdown table: accuracy per group and ratio."""
        heads = ["group", "channels"] + [f"acc @ {r:g}" for r in self.ratios]
        rows = [[g["name"], str(g["channels"])] + [f"{g['accuracy'][r]:.4f}" for r in self.ratios]
                for g in self.groups]
        return f"Baseline accuracy {self.baseline:.4f}\n\n" + markdown_table(heads, rows) + "\n"

    def plot(self, path):
        """Save a PNG: accuracy vs. ratio, one line per group.

        Args:
            path: output .png path.

        Returns:
            ``path``.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        xs = [0.0] + list(self.ratios)
        for g in self.groups:
            ax.plot(xs, [self.baseline] + [g["accuracy"][r] for r in self.ratios], marker="o",
                    label=g["name"])
        ax.set_xlabel("fraction of channels removed (one group at a time)")
        ax.set_ylabel("accuracy (no fine-tuning)")
        ax.set_title("Channel pruning sensitivity")
        ax.grid(alpha=0.3)
        if len(self.groups) <= 20:
            ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        save_figure(fig, path, dpi=100)
        return path


def sensitivity_scan(model, val_data, ratios=(0.25, 0.5, 0.75), criterion="l1", data=None,
                     max_samples=2000, scorer=None):
    """Prune each group alone at each ratio and measure accuracy (no fine-tuning).

    Args:
        model: tf_keras Sequential or Functional model.
        val_data: labelled validation data: (x, y), a tfcompress Dataset (its
            ``.validation`` split) or a tf.data.Dataset of (x, y) batches.
        ratios: fractions of channels removed, each in [0, 1).
        criterion: importance criterion ("l1", "l2", "bn_gamma", "taylor", "apoz",
            "mean_activation").
        data: data for the data criteria (defaults to ``val_data``).
        max_samples: evaluate on at most this many samples.
        scorer: a :class:`~tfcompress.scoring.Scorer`: score in the task's
            metric (points, higher is better) instead of top-1 accuracy
            (any model: maps, regressions, several inputs or outputs).
            Defaults to `None` (accuracy, a fraction).

    Returns:
        :class:`SensitivityReport`.

    Raises:
        RecipeError: a ratio out of [0, 1).
        DataError: empty or malformed data.

    Example:
        >>> rep = sensitivity_scan(model, (x_val, y_val))
        >>> rep.groups[0]["accuracy"]
        {0.25: 0.97, 0.5: 0.95, 0.75: 0.81}
    """
    ratios = tuple(fraction_removed(None, "ratios", r) for r in ratios)
    if not ratios:
        raise RecipeError("ratios is empty: give at least one ratio in [0, 1).")
    if scorer is not None and not scorer.task.classifier:
        x, y = (take(v, max_samples) for v in val_data)
    else:
        x, y = as_xy(val_data, limit=max_samples)
    tdata = data if data is not None else (x, y)
    task_loss = scorer.task.loss_fn(list(model.output_names)) if scorer is not None and not scorer.task.classifier \
        else None  # a data criterion (taylor) in the task's own loss
    plan = Plan(model, criterion, tdata if criterion in NEEDS_DATA else None, task_loss)
    score = accuracy if scorer is None else scorer.model
    baseline = score(model, x, y)
    groups = []
    for r, g in plan.groups.items():
        acc, fl, pa = {}, {}, {}
        for ratio in ratios:
            keep = plan.keep({r: ratio})
            f, p = plan.estimate(keep)
            acc[ratio] = score(plan.build(keep), x, y) if keep else baseline
            fl[ratio], pa[ratio] = f, p
        groups.append({"name": g.name, "members": list(g.members), "channels": g.channels,
                       "accuracy": acc, "flops": fl, "params": pa})
    return SensitivityReport(baseline, ratios, groups, plan.flops_before, plan.params_before,
                             criterion, _plan=plan)
