"""Structured (channel / filter / neuron) pruning for tf_keras models.

Removes whole Conv filters and Dense units (and the matching BatchNorm,
depthwise and next-layer input channels), so the result is a smaller *dense*
model that is faster on every backend, including XNNPACK on x86 CPUs.

Example:
    >>> from tfcompress import channels
    >>> for g in channels.dependency_groups(model):
    ...     print(g.name, g.channels, g.reason or "prunable")
    >>> small, report = channels.prune_channels(model, 0.5, criterion="l1")
    >>> merged, report = channels.merge_channels(model, 0.5)  # fold near-duplicates instead
    >>> print(report.to_markdown())
"""

from tfcompress.channels.budget import ratios_for_budget
from tfcompress.channels.config import Channels
from tfcompress.channels.cost import count_flops, count_params
from tfcompress.channels.graph import Group, dependency_groups
from tfcompress.channels.importance import CRITERIA
from tfcompress.channels.merge import merge_channels
from tfcompress.channels.report import ChannelReport
from tfcompress.channels.schedule import apply
from tfcompress.channels.sensitivity import SensitivityReport, sensitivity_scan
from tfcompress.channels.surgery import prune_channels

__all__ = [
    "Channels",
    "ChannelReport",
    "CRITERIA",
    "Group",
    "SensitivityReport",
    "apply",
    "count_flops",
    "count_params",
    "dependency_groups",
    "merge_channels",
    "prune_channels",
    "ratios_for_budget",
    "sensitivity_scan",
]
