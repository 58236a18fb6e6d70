"""The Keras Tuner oracle of a search: built per algorithm, saved atomically, served to workers.

The oracle proposes each trial's values and keeps the search's state
(``oracle.json``). :func:`make_oracle` builds random search, Bayesian
optimisation or Hyperband with tfcompress's additions (atomic state files, an
epoch budget, a resume that does not re-run finished trials);
:func:`serve_oracle` serves it over Keras Tuner's gRPC protocol to worker
processes in chief/worker mode.

Example:
    >>> from tfcompress.tuning import SearchSpace
    >>> oracle = make_oracle("hyperband", SearchSpace.default().hyperparameters(), max_trials=4, max_epochs=3)
    >>> oracle.max_trials
    4
"""

import ipaddress
import json
import os
import sys
import time
from concurrent import futures

from tfcompress.errors import TuningError
from tfcompress.report import atomic_write_text
from tfcompress.tuning._keras_tuner import TrialStatus, keras_tuner
from tfcompress.tuning.algorithms import canonical_algorithm

__all__ = ["ORACLES", "DEFAULT_SEED", "make_oracle", "oracle_seed", "serve_oracle", "is_loopback", "atomic_json"]

# Canonical algorithm name -> Keras Tuner oracle class.
ORACLES = {
    "random": keras_tuner.oracles.RandomSearchOracle,
    "bayesian": keras_tuner.oracles.BayesianOptimizationOracle,
    "hyperband": keras_tuner.oracles.HyperbandOracle,
}

DEFAULT_SEED = 0

# Keras Tuner draws the k-th sampled value of a search from seed + k, so seeds
# one apart would draw the same stream shifted by one value. Ours are spread
# this far apart (more values than any search samples) and kept below 2**32,
# which NumPy's RandomState (Bayesian optimisation) requires.
_SEED_STRIDE = 1_000_003
_SEED_RANGE = 2**32 - 2**24


def oracle_seed(seed):
    """Keras Tuner's oracle seed for a tfcompress seed.

    Keras Tuner replaces a falsy seed (0) with a random one, so the seed it
    gets is never 0: seed 0 (the default, also for ``None``) becomes 1, as it
    always did, and every other seed a stream of its own.

    Args:
        seed: an int, or None for ``DEFAULT_SEED``.

    Returns:
        A positive int below ``2**32``.

    Raises:
        TuningError: a seed that is not an int.

    Example:
        >>> oracle_seed(None), oracle_seed(0), oracle_seed(1) == oracle_seed(0)
        (1, 1, False)
    """
    if seed is None:
        seed = DEFAULT_SEED
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TuningError(f"seed must be an integer, got {seed!r}.")
    return 1 + (seed * _SEED_STRIDE) % _SEED_RANGE


def atomic_json(path, obj):
    """Write ``obj`` as compact JSON, atomically (Keras Tuner's state files)."""
    atomic_write_text(path, json.dumps(obj))


class _OracleMixin:
    """Atomic state files and an optional epoch budget, for any KT oracle."""

    epoch_budget = None

    def save(self):
        atomic_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        atomic_json(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())

    def reload(self):
        super().reload()
        # A trial whose trial.json says it finished, but that oracle.json
        # still lists as running (killed between the two writes), is done:
        # do not run it again.
        done = (TrialStatus.COMPLETED, TrialStatus.FAILED)
        for tid in list(self._retry_queue):
            if tid in self.trials and self.trials[tid].status in done:
                self._retry_queue.remove(tid)
                if tid not in self.end_order:
                    self.end_order.append(tid)

    def epochs_spent(self):
        total = 0.0
        for t in self.trials.values():
            if t.metrics.exists("epochs"):
                total += t.metrics.get_last_value("epochs")
        return total

    def populate_space(self, trial_id):
        if self.epoch_budget and self.epochs_spent() >= self.epoch_budget:
            return {"status": TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)


# Keras Tuner oracle class -> its subclass with _OracleMixin (one per class, so
# that oracles of one algorithm share a type).
_ORACLE_CLASSES: dict = {}


def _oracle_class(algorithm):
    base = ORACLES[algorithm]
    if base not in _ORACLE_CLASSES:
        _ORACLE_CLASSES[base] = type("Tfc" + base.__name__, (_OracleMixin, base), {})
    return _ORACLE_CLASSES[base]


def make_oracle(algorithm, hyperparameters, max_trials=None, max_epochs=None, seed=DEFAULT_SEED, epoch_budget=None,
                hyperband_factor=3, num_initial_points=None):
    """A Keras Tuner oracle maximising the ``score`` metric.

    Args:
        algorithm: ``random``, ``bayesian`` or ``hyperband`` (any spelling
            :func:`~tfcompress.tuning.algorithms.canonical_algorithm` takes).
        hyperparameters: the ``HyperParameters`` of the space.
        max_trials: stop after this many trials. Defaults to `None`.
        max_epochs: Hyperband's largest per-trial epoch count. Defaults to
            `None` (3).
        seed: seed (see :func:`oracle_seed`); None is ``DEFAULT_SEED``.
            Defaults to `0`.
        epoch_budget: stop creating trials once completed trials spent this
            many epochs. Defaults to `None`.
        hyperband_factor: Hyperband's reduction factor. Defaults to `3`.
        num_initial_points: Bayesian optimisation's random trials before the
            Gaussian process takes over. Keras Tuner's default, 3 per
            parameter, would keep a 10-parameter search random for 30
            trials; ours is ``max(3, max_trials // 4)`` capped at that.
            Defaults to `None`.

    Returns:
        The oracle.

    Raises:
        TuningError: an unknown algorithm or a seed that is not an int.

    Example:
        >>> from tfcompress.tuning import SearchSpace
        >>> make_oracle("random", SearchSpace.default().hyperparameters(), max_trials=2).max_trials
        2
    """
    algorithm = canonical_algorithm(algorithm)
    cls = _oracle_class(algorithm)
    common = dict(objective=keras_tuner.Objective("score", "max"), hyperparameters=hyperparameters,
                  tune_new_entries=False, allow_new_entries=False, seed=oracle_seed(seed),
                  max_retries_per_trial=0, max_consecutive_failed_trials=10**9)
    if algorithm == "hyperband":
        # Many Hyperband iterations: max_trials or the epoch budget end the
        # search, not Keras Tuner's single pass over the brackets.
        oracle = cls(max_epochs=max_epochs or 3, factor=hyperband_factor, hyperband_iterations=10**6, **common)
        oracle.max_trials = max_trials
    elif algorithm == "bayesian":
        if num_initial_points is None:
            dims = max(1, len(hyperparameters.space))
            num_initial_points = min(3 * dims, max(3, (max_trials or 12) // 4))
        oracle = cls(max_trials=max_trials, num_initial_points=num_initial_points, **common)
    else:
        oracle = cls(max_trials=max_trials, **common)
    oracle.epoch_budget = epoch_budget
    return oracle


def is_loopback(host):
    """Whether ``host`` (an address or ``localhost``) is this machine only.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("10.0.0.5")
        (True, True, False)
    """
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve_oracle(oracle, host, port, poll_seconds=0.5):
    """Serve ``oracle`` over Keras Tuner's gRPC protocol until the search ends.

    Keras Tuner's own ``start_server`` polls every 20 s once the search is
    over; this one polls every ``poll_seconds`` and binds exactly ``host``.
    The protocol has no authentication: bind loopback unless every machine
    that can reach the port is trusted.

    Args:
        oracle: the chief's oracle.
        host: address to bind (``127.0.0.1`` by default in the CLI).
        port: TCP port.
        poll_seconds: how often to check for the end. Defaults to `0.5`.

    Raises:
        TuningError: the address cannot be bound.

    Example:
        >>> serve_oracle(oracle, "127.0.0.1", 8470)  # doctest: +SKIP
    """
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    if not is_loopback(host):
        print(f"warning: the oracle listens on {host}:{port} without authentication: anyone who can reach "
              "this port can read the search and submit results. Use it only on a trusted network.",
              file=sys.stderr, flush=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise TuningError(f"cannot bind the oracle to {host}:{port}: choose another --port.")
    server.start()
    try:
        while True:
            time.sleep(poll_seconds)
            if servicer.stop_triggered and oracle_chief.exit_chief(oracle):
                break
    finally:
        server.stop(grace=1)
