"""Fine-tuning under ``tf.distribute``: one strategy per :func:`tfcompress.optimize` call.

tfcompress has no distribution engine of its own: every stage builds, compiles
and fine-tunes its model inside a TensorFlow strategy's ``scope()``, and Keras
splits each global batch over the replicas. :func:`resolve` turns a name
(``"default"``, ``"mirrored"``, ``"multiworker"``) or a ``tf.distribute.Strategy``
object into the strategy; :class:`Placement` is what one optimize call holds: the
scope of each stage, and which stages ran on one replica instead, and why.

``"multiworker"`` is ``tf.distribute.MultiWorkerMirroredStrategy``: its cluster
comes from the ``TF_CONFIG`` environment variable, as TensorFlow documents
(every worker runs the same command with its own ``task.index``). Create it
first thing in the process (TensorFlow needs collective ops configured before
other work); :func:`resolve` creates it once and hands the same object back.

The tuner's workers are placed on GPUs by :func:`gpu_assignment` (round robin
over the GPUs found, ``CUDA_VISIBLE_DEVICES`` per worker).

Example:
    >>> from tfcompress import distribute
    >>> distribute.resolve(None) is None
    True
    >>> distribute.gpu_assignment(3, ["0", "1"])
    ['0', '1', '0']
    >>> distribute.gpu_assignment(2, [])
    [None, None]
"""

import contextlib
import json
import os
import shutil
import subprocess

from tfcompress._keras import tf
from tfcompress.errors import RecipeError, TuningError

__all__ = [
    "STRATEGY_NAMES", "resolve", "describe", "scope", "Placement",
    "gpu_assignment", "find_gpus", "gpu_summary", "trial_strategy", "pin_env", "output_dir",
]

STRATEGY_NAMES = ("default", "mirrored", "multiworker")

_CACHE: dict = {}


def _tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
        workers = cfg["cluster"]["worker"]
        task = cfg["task"]
        if not isinstance(workers, list) or not workers or task["type"] not in ("worker", "chief"):
            raise ValueError
        return cfg
    except (ValueError, KeyError, TypeError):
        raise RecipeError(
            "TF_CONFIG is not a valid cluster: set it to JSON like "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}.'
        ) from None


def resolve(strategy):
    """The ``tf.distribute.Strategy`` for a name or object (None: no strategy).

    Args:
        strategy: None, ``"default"`` (the same as None), ``"mirrored"`` (all
            local GPUs, or the CPU when there is none), ``"multiworker"``
            (``MultiWorkerMirroredStrategy``, cluster from ``TF_CONFIG``) or a
            ``tf.distribute.Strategy`` object, used as is.

    Returns:
        A ``tf.distribute.Strategy``, or None for TensorFlow's default (one replica).

    Raises:
        RecipeError: an unknown name, or a malformed ``TF_CONFIG``.

    Example:
        >>> resolve("default") is None
        True
        >>> resolve("mirrored").num_replicas_in_sync >= 1  # doctest: +SKIP
        True
    """
    if strategy is None or (isinstance(strategy, str) and strategy.strip().lower() == "default"):
        return None
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    name = strategy.strip().lower() if isinstance(strategy, str) else None
    if name not in STRATEGY_NAMES:
        raise RecipeError(
            f"strategy must be one of {', '.join(STRATEGY_NAMES)} or a tf.distribute.Strategy, got {strategy!r}."
        )
    if name not in _CACHE:  # one MultiWorkerMirroredStrategy per process: TensorFlow allows no second
        if name == "multiworker":
            if _tf_config() is None:  # TensorFlow would run one worker alone, without a word
                raise RecipeError(
                    "strategy multiworker needs the cluster in TF_CONFIG, which is not set: set it on every worker "
                    '(JSON like {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
                    '"index": 0}}), or use mirrored or default on one machine.')
            _CACHE[name] = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            _CACHE[name] = tf.distribute.MirroredStrategy()
    return _CACHE[name]


def trial_strategy(strategy):
    """The strategy name a tuner trial runs under (trials may run in a child process: names only).

    Raises:
        TuningError: anything but None, ``"default"`` or ``"mirrored"``.

    Example:
        >>> trial_strategy("Mirrored")
        'mirrored'
    """
    name = strategy.strip().lower() if isinstance(strategy, str) else strategy
    if name in (None, "default"):
        return None
    if name == "mirrored":
        return name
    if name == "multiworker":
        raise TuningError("the tuner's trials take strategy 'mirrored' or 'default'; to spread a search over "
                          "machines, run workers that join a chief (tfcompress tune --chief HOST:PORT).")
    raise TuningError(f"strategy must be 'mirrored' or 'default' for tuning, got {strategy!r}.")


def describe(strategy):
    """One line saying what a strategy is: kind, replicas, workers.

    Example:
        >>> describe(None)
        'default strategy (one replica)'
    """
    if strategy is None:
        return "default strategy (one replica)"
    kind = type(strategy).__name__  # MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        kind = "MultiWorkerMirroredStrategy"
    text = f"{kind}, {strategy.num_replicas_in_sync} replica(s)"
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    workers = len(spec.get("worker", [])) + len(spec.get("chief", []))
    if "MultiWorker" in kind:
        text += f" on {max(workers, 1)} worker(s)" + ("" if os.environ.get("TF_CONFIG") else " (TF_CONFIG not set)")
    return text


def scope(strategy):
    """``strategy.scope()``, or a no-op context for None (TensorFlow's default strategy).

    Example:
        >>> with scope(None):
        ...     pass
    """
    return contextlib.nullcontext() if strategy is None else strategy.scope()


class Placement:
    """Where the stages of one optimize call run: the strategy, and the
    stages that fell back to one replica (each technique says which and why:
    ``Technique.single_replica``, gathered by :func:`tfcompress.techniques.single_replica`).

    Args:
        strategy: what :func:`resolve` accepts.
        mixed_precision: the recipe fine-tunes in mixed precision. Defaults to `False`.
        single_replica: ``(stage, condition) -> reason``, the stages to run
            without the strategy; condition None is always, ``"mixed_precision"``
            with ``mixed_precision``. Defaults to `None` (none).

    Example:
        >>> p = Placement(None)
        >>> with p.scope("pruning"):
        ...     pass
        >>> p.where("pruning")
        'default strategy (one replica)'
    """

    def __init__(self, strategy, mixed_precision=False, single_replica=None):
        self.strategy = resolve(strategy)
        self.conditions = {None} | ({"mixed_precision"} if mixed_precision else set())
        table = single_replica or {}
        self.single_replica = {stage: why for (stage, cond), why in table.items() if cond in self.conditions}
        self.fell_back = {}

    @property
    def replicas(self):
        """Replicas in sync (1 without a strategy)."""
        return 1 if self.strategy is None else int(self.strategy.num_replicas_in_sync)

    def _falls_back(self, stage):
        return stage is not None and self.strategy is not None and stage in self.single_replica

    def scope(self, stage=None):
        """The context a stage (or, with None, the baseline) builds and trains in."""
        if self._falls_back(stage):
            self.fell_back[stage] = self.single_replica[stage]
            return contextlib.nullcontext()
        return scope(self.strategy)

    def where(self, stage=None):
        """One line: the strategy a stage ran under, or why it ran on one replica."""
        if self._falls_back(stage):
            kind = describe(self.strategy).split(",")[0]
            return f"one replica (not under {kind}: {self.single_replica[stage]})"
        return describe(self.strategy)

    def to_dict(self):
        """The strategy and the fallbacks, for the report."""
        return {"strategy": describe(self.strategy), "replicas": self.replicas, "single_replica": dict(self.fell_back)}


def gpu_assignment(workers, gpus):
    """The ``CUDA_VISIBLE_DEVICES`` value of each of ``workers`` tuner workers.

    Round robin over ``gpus`` (several workers share a GPU when there are more
    workers than GPUs); None for every worker when there is no GPU (they run
    on the CPU and the variable is left alone).

    Args:
        workers: number of worker processes.
        gpus: GPU ids as :func:`find_gpus` returns them.

    Returns:
        A list of ``workers`` strings or Nones.

    Example:
        >>> gpu_assignment(5, ["0", "1"])
        ['0', '1', '0', '1', '0']
    """
    return [str(gpus[i % len(gpus)]) if gpus else None for i in range(int(workers))]


def _visible_ids():
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return None
    return [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]


def find_gpus(timeout=30):
    """The GPU ids a worker can be pinned to (``CUDA_VISIBLE_DEVICES`` values).

    Asks ``nvidia-smi -L`` when it is installed, else counts the GPUs the
    NVIDIA driver lists in ``/proc/driver/nvidia/gpus`` (no TensorFlow is
    started: this process must not claim the GPUs, and a child importing
    TensorFlow costs seconds); an already set ``CUDA_VISIBLE_DEVICES`` limits
    the answer to the ids it names.

    Returns:
        A list of id strings (``["0", "1"]``); empty when there is no GPU.

    Example:
        >>> isinstance(find_gpus(), list)
        True
    """
    visible = _visible_ids()
    if visible is not None:
        return visible
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=timeout).stdout
            return [str(i) for i, _ in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]
        except (OSError, subprocess.SubprocessError):
            return []
    try:
        return [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
    except OSError:
        return []


def gpu_summary(workers, gpus):
    """The line ``tfcompress tune --workers N`` prints about GPUs.

    Example:
        >>> gpu_summary(2, [])
        '0 GPUs: workers run on CPU'
        >>> gpu_summary(3, ["0", "1"])
        '2 GPU(s): worker0 on GPU 0, worker1 on GPU 1, worker2 on GPU 0'
    """
    if not gpus:
        return "0 GPUs: workers run on CPU"
    pins = ", ".join(f"worker{i} on GPU {g}" for i, g in enumerate(gpu_assignment(workers, gpus)))
    return f"{len(gpus)} GPU(s): {pins}"


def pin_env(env, gpu):
    """``env`` with ``CUDA_VISIBLE_DEVICES=gpu`` (unchanged for None; ``""`` hides every GPU).

    Example:
        >>> pin_env({"A": "1"}, "1")
        {'A': '1', 'CUDA_VISIBLE_DEVICES': '1'}
        >>> pin_env({"A": "1"}, None)
        {'A': '1'}
    """
    return dict(env) if gpu is None else dict(env, CUDA_VISIBLE_DEVICES=str(gpu))


def output_dir(out, strategy):
    """Where a process writes its outputs: ``out`` on the chief (worker 0 of a
    multi-worker cluster, or the only process), ``out/worker<i>`` on the others,
    so that workers never overwrite the chief's files.

    Example:
        >>> output_dir("out", None)
        'out'
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not os.environ.get("TF_CONFIG"):
        return out
    kind, index = resolver.task_type, int(resolver.task_id or 0)
    return out if kind == "chief" or (kind == "worker" and index == 0 and "chief" not in
                                      resolver.cluster_spec().as_dict()) else os.path.join(out, f"{kind}{index}")
