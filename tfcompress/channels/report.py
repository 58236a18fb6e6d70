"""The :class:`ChannelReport` returned by channel pruning."""

import json
from dataclasses import dataclass, field

from tfcompress.report import markdown_table
from tflite_export._record import plain

__all__ = ["ChannelReport"]


@dataclass
class ChannelReport:
    """What channel pruning did.

    Attributes:
        criterion: importance criterion used.
        target: the requested target (ratio, per_layer, flops, params, schedule).
        groups: one dict per group with producers: name, members,
            channels_before, channels_after, ratio, prunable, reason.
        layers: one dict per layer with FLOPs or parameters: name, class,
            before/after channels (output channels), flops_before/after,
            params_before/after.
        flops_before, flops_after, params_before, params_after: model totals.
        notes: anything the user should know (clamped ratios, fallbacks, ...).
        steps: per-step summaries of an iterative schedule.
        mode: ``"prune"`` or ``"merge"`` (channels folded into near-duplicates).
        merges: with ``mode="merge"``, one dict per removed channel: group,
            removed, into (None where it was pruned), scale.

    Example:
        >>> small, report = prune_channels(model, 0.5)
        >>> print(report.to_markdown())
    """

    criterion: str
    target: dict
    groups: list
    layers: list
    flops_before: int
    flops_after: int
    params_before: int
    params_after: int
    notes: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    mode: str = "prune"
    merges: list = field(default_factory=list)

    @property
    def merged(self):
        """How many channels were merged into a kept one (not just pruned)."""
        return sum(m.get("into") is not None for m in self.merges)

    @property
    def flops_ratio(self):
        """FLOPs after / before."""
        return self.flops_after / self.flops_before if self.flops_before else 1.0

    @property
    def params_ratio(self):
        """Parameters after / before."""
        return self.params_after / self.params_before if self.params_before else 1.0

    def to_dict(self):
        """A JSON-able dict of the report."""
        d = {
            "criterion": self.criterion,
            "target": plain(self.target),
            "flops_before": int(self.flops_before),
            "flops_after": int(self.flops_after),
            "flops_ratio": round(self.flops_ratio, 4),
            "params_before": int(self.params_before),
            "params_after": int(self.params_after),
            "params_ratio": round(self.params_ratio, 4),
            "groups": plain(self.groups),
            "layers": plain(self.layers),
            "notes": list(self.notes),
            "steps": plain(self.steps),
            "mode": self.mode,
            "merges": plain(self.merges),
        }
        json.dumps(d)
        return d

    def to_markdown(self):
        """A Markdown summary: totals, then a table of the groups."""
        lines = [
            f"**Channel {'merging' if self.mode == 'merge' else 'pruning'}** (criterion `{self.criterion}`, "
            f"target `{plain(self.target)}`)",
            "",
            f"- FLOPs: {self.flops_before:,} → {self.flops_after:,} ({self.flops_ratio:.1%})",
            f"- Params: {self.params_before:,} → {self.params_after:,} ({self.params_ratio:.1%})",
            "",
            markdown_table(("group", "layers", "channels", "ratio", "locked because"), [
                (g["name"], ", ".join(g["members"]), f"{g['channels_before']} → {g['channels_after']}",
                 f"{g.get('ratio', 0):.2f}", g.get("reason") or "") for g in self.groups]),
        ]
        if self.notes:
            lines += ["", "Notes:"] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"
