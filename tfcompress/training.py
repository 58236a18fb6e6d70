"""The Keras side of a training run: optimizer, learning-rate schedule, callbacks, seed.

:func:`make_optimizer` turns a recipe's :class:`~tfcompress.schedules.Optimizer`
and :class:`~tfcompress.schedules.Schedule` into tf_keras's own objects
(``keras.optimizers.*``, ``keras.optimizers.schedules.*``, the
``ReduceLROnPlateau`` callback), with the schedule's epochs turned into steps
from the data size, batch size and the stage's epochs. :func:`stage_callbacks`
adds what every training run gets: the learning rate in the logs (and so in
``History`` and TensorBoard), TensorBoard per stage, epoch lines.
:func:`translate_callbacks` rebuilds Keras 3 callbacks as their tf_keras
equivalents (or refuses them with one clear line).

Example:
    >>> from tfcompress.schedules import Optimizer, Schedule
    >>> opt = make_optimizer(Optimizer("nesterov"), 0.01, Schedule("cosine", warmup_epochs=1),
    ...                      steps_per_epoch=10, epochs=4)
    >>> type(opt).__name__, opt.nesterov
    ('SGD', True)
"""

import contextlib
import glob
import os
import time
import warnings

from tfcompress._keras import keras, tf, tfmot
from tfcompress.errors import RecipeError
from tfcompress.schedules import Optimizer
from tflite_export._atomic import free_bytes
from tflite_export.argtypes import check_writable_dir
from tflite_export.errors import write_failure

__all__ = ["make_optimizer", "learning_rate", "stage_callbacks", "translate_callbacks", "set_seed",
           "LearningRateLog", "EpochLines", "TRANSLATED_CALLBACKS", "with_policy", "global_policy",
           "pruning_callbacks", "build_training_state", "GuardedBoard", "check_log_dir", "log_room", "LOG_MIN_FREE"]


def build_training_state(model, dataset, optimizer=True):
    """Create a compiled model's loss, metric and optimizer variables before ``fit``/``evaluate``.

    A ``tf.function`` whose first trace creates variables is traced again
    without them, and Keras creates these variables inside the first train
    (test) step: every ``fit`` traced its train step twice, every ``evaluate``
    after ``compile`` its test step. With TF-MOT wrappers a trace takes seconds
    (a tuner trial's overhead). Models with their own ``train_step`` (a
    Distiller), several inputs or outputs, or shapes this cannot make are left
    to Keras (as before).

    Args:
        model: a compiled tf_keras model.
        dataset: the batched ``(x, y)`` ``tf.data.Dataset`` it will see.
        optimizer: build the optimizer's variables too. Defaults to `True`.

    Returns:
        True when the variables were built.

    Example:
        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")  # doctest: +SKIP
        >>> build_training_state(model, train_ds)  # doctest: +SKIP
        True
    """
    own = (type(model).train_step is not keras.Model.train_step or type(model).test_step is not keras.Model.test_step)
    spec = getattr(dataset, "element_spec", None)
    if own or getattr(model, "compiled_loss", None) is None or not (
            isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(s, tf.TensorSpec) for s in spec)):
        return False
    try:
        out = model.output_shape
        if len(model.outputs) != 1 or None in out[1:] or None in spec[1].shape[1:]:
            return False
        y_pred, y_true = tf.zeros((1, *out[1:])), tf.zeros((1, *spec[1].shape[1:]), spec[1].dtype)
        with model.distribute_strategy.scope():
            model.compiled_loss.build(y_pred)
            model.compiled_metrics.build(y_pred, y_true)
            if optimizer and model.optimizer is not None:
                model.optimizer.build(model.trainable_variables)
    except Exception:  # noqa: BLE001 - Keras builds them itself in the first step, as before
        return False
    return True


def set_seed(seed):
    """Seed Python, NumPy and TensorFlow (``keras.utils.set_random_seed``).

    Example:
        >>> set_seed(0)
    """
    keras.utils.set_random_seed(int(seed))


def learning_rate(schedule, rate, steps_per_epoch, epochs):
    """The learning rate a tf_keras optimizer gets: ``rate`` or a schedule object.

    Args:
        schedule: a :class:`~tfcompress.schedules.Schedule` or None (constant).
        rate: the initial (cosine with warm-up: the peak) learning rate.
        steps_per_epoch: optimizer steps per epoch.
        epochs: the stage's epochs.

    Returns:
        A float (constant and plateau: the callback moves it) or a
        ``keras.optimizers.schedules.LearningRateSchedule``.

    Example:
        >>> from tfcompress.schedules import Schedule
        >>> s = learning_rate(Schedule("step", drop=0.5, every=1), 0.1, steps_per_epoch=10, epochs=3)
        >>> [round(float(s(i)), 3) for i in (0, 10, 11, 21)]
        [0.1, 0.1, 0.05, 0.025]
    """
    rate = float(rate)
    kind = schedule.kind if schedule is not None else "constant"
    if kind in ("constant", "plateau"):
        return rate
    spe = max(1, int(steps_per_epoch))
    total = max(1, spe * int(epochs))
    schedules = keras.optimizers.schedules
    if kind in ("exponential", "inverse_time"):
        cls = schedules.ExponentialDecay if kind == "exponential" else schedules.InverseTimeDecay
        return cls(rate, decay_steps=max(1, round(schedule.decay_epochs * spe)), decay_rate=schedule.decay_rate,
                   staircase=schedule.staircase)
    if kind == "step":
        epochs_at = schedule.boundaries or range(schedule.every, int(epochs), schedule.every)
        bounds = [round(e * spe) for e in epochs_at if 0 < round(e * spe) < total]
        if not bounds:
            return rate
        return schedules.PiecewiseConstantDecay(bounds, [rate * schedule.drop ** i for i in range(len(bounds) + 1)])
    if kind == "polynomial":
        return schedules.PolynomialDecay(rate, decay_steps=total, end_learning_rate=rate * schedule.alpha,
                                         power=schedule.power)
    warmup = min(total - 1, round(schedule.warmup_epochs * spe))
    if warmup > 0:
        return schedules.CosineDecay(0.0, decay_steps=total - warmup, alpha=schedule.alpha, warmup_target=rate,
                                     warmup_steps=warmup)
    return schedules.CosineDecay(rate, decay_steps=total, alpha=schedule.alpha)


def make_optimizer(optimizer, rate, schedule=None, steps_per_epoch=1, epochs=1):
    """A fresh tf_keras optimizer for a recipe's optimizer and schedule.

    Args:
        optimizer: an :class:`~tfcompress.schedules.Optimizer`, its name or a mapping.
        rate: the learning rate.
        schedule: a :class:`~tfcompress.schedules.Schedule` or None. Defaults to `None`.
        steps_per_epoch: optimizer steps per epoch. Defaults to `1`.
        epochs: the stage's epochs. Defaults to `1`.

    Returns:
        A ``keras.optimizers`` instance.

    Example:
        >>> make_optimizer("adamw", 1e-3).weight_decay
        0.004
    """
    o = Optimizer.coerce(optimizer)
    lr = learning_rate(schedule, rate, steps_per_epoch, epochs)
    common = {"clipnorm": o.clipnorm}
    if o.weight_decay:
        common["weight_decay"] = o.weight_decay
    opts = keras.optimizers
    if o.name in ("sgd", "momentum", "nesterov"):
        return opts.SGD(lr, momentum=o.momentum, nesterov=o.nesterov, **common)
    if o.name == "rmsprop":
        return opts.RMSprop(lr, rho=o.rho, momentum=o.momentum, epsilon=o.epsilon, **common)
    if o.name == "adagrad":
        return opts.Adagrad(lr, epsilon=o.epsilon, **common)
    cls = opts.AdamW if o.name == "adamw" else opts.Adam
    return cls(lr, beta_1=o.beta_1, beta_2=o.beta_2, epsilon=o.epsilon, **common)


def _current_rate(optimizer):
    lr = getattr(optimizer, "_learning_rate", None)
    if lr is None:
        lr = optimizer.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        lr = lr(optimizer.iterations)
    return float(keras.backend.get_value(lr))


class LearningRateLog(keras.callbacks.Callback):
    """Puts the optimizer's current learning rate in the epoch logs as
    ``learning_rate`` (so ``History``, TensorBoard and CSVLogger see it).

    Example:
        >>> model.fit(x, y, callbacks=[LearningRateLog()])  # doctest: +SKIP
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _current_rate(self.model.optimizer)


class EpochLines(keras.callbacks.Callback):
    """Calls ``emit`` with one line per epoch: stage, epoch, metrics, learning rate, seconds.

    Args:
        emit: called with each line.
        stage: the stage's name, first on each line.
        epochs: the stage's epochs.

    Example:
        >>> model.fit(x, y, epochs=2, callbacks=[EpochLines(print, "train", 2)])  # doctest: +SKIP
        train epoch 1/2: loss 0.512 accuracy 0.843 learning_rate 0.001 (1.2 s)
    """

    def __init__(self, emit, stage, epochs):
        super().__init__()
        self.emit, self.stage, self.epochs = emit, stage, epochs
        self._t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        shown = " ".join(f"{k} {v:.4g}" for k, v in (logs or {}).items() if isinstance(v, (int, float)))
        self.emit(f"{self.stage} epoch {epoch + 1}/{self.epochs}: {shown} ({time.perf_counter() - self._t0:.1f} s)")


def stage_callbacks(stage_name, schedule, epochs, validation, tensorboard=None, progress=None):
    """The callbacks a stage's training run gets besides the user's.

    Args:
        stage_name: the recipe stage (``"pruning"``); TensorBoard writes to
            ``<tensorboard>/<stage_name>``.
        schedule: the stage's :class:`~tfcompress.schedules.Schedule` or None;
            ``plateau`` adds ``ReduceLROnPlateau``.
        epochs: the stage's epochs.
        validation: whether the run has validation data (the plateau
            schedule then watches ``val_loss``, else ``loss``).
        tensorboard: a log folder or None. Defaults to `None`.
        progress: called with one line per epoch, or None. Defaults to `None`.

    Returns:
        A list of tf_keras callbacks (the learning-rate log first, so every
        later callback sees ``learning_rate``).

    Example:
        >>> from tfcompress.schedules import Schedule
        >>> [type(c).__name__ for c in stage_callbacks("train", Schedule("plateau"), 2, True)]
        ['LearningRateLog', 'ReduceLROnPlateau']
    """
    out = [LearningRateLog()]
    if schedule is not None and schedule.kind == "plateau":
        monitor = schedule.monitor or ("val_loss" if validation else "loss")
        out.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=schedule.factor,
                                                     patience=schedule.patience, min_lr=schedule.min_lr))
    if tensorboard is not None and log_room(tensorboard):
        out.append(GuardedBoard(keras.callbacks.TensorBoard(os.path.join(os.fspath(tensorboard), stage_name),
                                                            write_graph=False, profile_batch=0), tensorboard))
    if progress is not None:
        out.append(EpochLines(progress, stage_name, epochs))
    return out


def pruning_callbacks(tensorboard=None):
    """``UpdatePruningStep``, and with a log folder TF-MOT's ``PruningSummaries``
    (a TensorBoard callback that also logs each pruned layer's sparsity and
    threshold, under ``metrics/``) writing to ``<tensorboard>/pruning``.

    Example:
        >>> [type(c).__name__ for c in pruning_callbacks("logs")]  # the summaries guarded against a full disk
        ['UpdatePruningStep', 'GuardedBoard']
    """
    out = [tfmot.sparsity.keras.UpdatePruningStep()]
    if tensorboard is not None and log_room(tensorboard):
        out.append(GuardedBoard(tfmot.sparsity.keras.PruningSummaries(
            log_dir=os.path.join(os.fspath(tensorboard), "pruning"), write_graph=False, profile_batch=0), tensorboard))
    return out


# TensorBoard needs this much free space in its log folder, checked up front (by the CLI, and before each stage).
LOG_MIN_FREE = 1 << 20


def check_log_dir(path, flag="tensorboard"):
    """A TensorBoard log folder that can be written, with room, before any training (one-line ``ExportError``).

    Example:
        >>> check_log_dir("logs/run1", "--tensorboard")
    """
    check_writable_dir(path, flag, min_free=LOG_MIN_FREE)


def _logs_off(folder, why):
    warnings.warn(f"TensorBoard logging to {folder} is off for the rest of this run: {why}; the run goes on "
                  "(free some space or choose another tensorboard folder for logs)", RuntimeWarning, stacklevel=2)


def log_room(folder):
    """Whether ``folder`` has room for TensorBoard logs; warns (once per folder and reason) when not."""
    free = free_bytes(folder)
    if free is None or free >= LOG_MIN_FREE:
        return True
    _logs_off(folder, f"only {free // 1024} KiB free (No space left on device)")
    return False


class GuardedBoard(keras.callbacks.Callback):
    """A TensorBoard callback whose failed writes turn off logging with one warning.

    TensorBoard's event writers raise ``Could not initialize events writer`` (and
    more) on a full disk; a log is not worth losing the run over. The first write
    failure closes the writers, removes the empty event files they left and turns
    the callback off; any other error is raised as before.

    Example:
        >>> cb = GuardedBoard(keras.callbacks.TensorBoard("logs/train"), "logs")  # doctest: +SKIP
    """

    def __init__(self, board, root):
        super().__init__()
        self.board, self.root, self.off = board, root, False
        self._supports_tf_logs = getattr(board, "_supports_tf_logs", False)

    def _implements_train_batch_hooks(self):
        return self.board._implements_train_batch_hooks()

    def _implements_test_batch_hooks(self):
        return self.board._implements_test_batch_hooks()

    def _implements_predict_batch_hooks(self):
        return self.board._implements_predict_batch_hooks()

    def set_model(self, model):
        super().set_model(model)
        self._call("set_model", model)

    def set_params(self, params):
        super().set_params(params)
        self._call("set_params", params)

    def _call(self, hook, *args, **kwargs):
        if self.off:
            return
        try:
            getattr(self.board, hook)(*args, **kwargs)
        except Exception as e:
            code = write_failure(e)
            if code is None:
                raise
            self.off = True
            self._tidy()
            _logs_off(self.root, os.strerror(code))

    def _tidy(self):
        """Close what the board opened and remove the empty event files it left."""
        for step in ("_pop_writer", "_close_writers"):
            try:
                getattr(self.board, step)()
            except Exception:  # noqa: BLE001 - best effort on a disk that already failed
                pass
        log_dir = getattr(self.board, "log_dir", None)
        for path in glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True) if log_dir else []:
            with contextlib.suppress(OSError):
                if os.path.getsize(path) == 0:
                    os.remove(path)


def _forward(hook):
    def call(self, *args, **kwargs):
        self._call(hook, *args, **kwargs)

    call.__name__ = hook
    return call


for _hook in ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
              "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
              "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end"):
    setattr(GuardedBoard, _hook, _forward(_hook))


def with_policy(model, policy):
    """A copy of ``model`` whose layers compute in ``policy`` (weights kept).

    The output layer stays float32 so that the softmax and the loss are
    computed in full precision (the usual mixed-precision rule).

    Args:
        model: a tf_keras Sequential or Functional model.
        policy: ``"mixed_float16"`` or ``"float32"``.

    Example:
        >>> from tfcompress import models
        >>> m = with_policy(models.get("digits_cnn").build(), "mixed_float16")
        >>> m.layers[0].compute_dtype, m.layers[-1].compute_dtype
        ('float16', 'float32')
    """
    last = model.layers[-1].name

    def fn(layer):
        cfg = layer.get_config()
        if not isinstance(layer, (keras.layers.InputLayer, keras.Model)):
            cfg["dtype"] = "float32" if layer.name == last else policy
        return layer.__class__.from_config(cfg)

    copy = keras.models.clone_model(model, clone_function=fn)
    copy.set_weights(model.get_weights())
    return copy


@contextlib.contextmanager
def global_policy(name):
    """Set Keras's global dtype policy for the ``with`` block (restored after)."""
    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(old)


def _args(cb, names):
    return {n: getattr(cb, n) for n in names if hasattr(cb, n)}


#: Keras 3 callback class name -> function(callback) -> the tf_keras callback built from the same settings.
TRANSLATED_CALLBACKS = {
    "TensorBoard": lambda cb: keras.callbacks.TensorBoard(**_args(cb, (
        "log_dir", "histogram_freq", "write_graph", "write_images", "write_steps_per_second", "update_freq",
        "embeddings_freq", "embeddings_metadata"))),
    "EarlyStopping": lambda cb: keras.callbacks.EarlyStopping(**_args(cb, (
        "monitor", "min_delta", "patience", "verbose", "mode", "baseline", "restore_best_weights",
        "start_from_epoch"))),
    "ModelCheckpoint": lambda cb: keras.callbacks.ModelCheckpoint(**_args(cb, (
        "filepath", "monitor", "verbose", "save_best_only", "save_weights_only", "mode", "save_freq"))),
    "CSVLogger": lambda cb: keras.callbacks.CSVLogger(cb.filename, separator=cb.sep, append=cb.append),
    "ReduceLROnPlateau": lambda cb: keras.callbacks.ReduceLROnPlateau(**_args(cb, (
        "monitor", "factor", "patience", "verbose", "mode", "min_delta", "cooldown", "min_lr"))),
}


def translate_callbacks(callbacks):
    """Keras 3 callbacks rebuilt as tf_keras ones; tf_keras callbacks and other values pass.

    tfcompress trains tf_keras models, which a Keras 3 callback cannot drive
    (it fails deep in ``fit``); :data:`TRANSLATED_CALLBACKS` lists the ones
    rebuilt from their settings.

    Raises:
        RecipeError: a Keras 3 callback with no tf_keras translation.

    Example:
        >>> translate_callbacks(None)
        []
    """
    if not isinstance(callbacks, (list, tuple)):
        return [] if callbacks is None else callbacks
    out = []
    for i, cb in enumerate(callbacks):
        module = type(cb).__module__ or ""
        if not (module == "keras" or module.startswith("keras.")):
            out.append(cb)
            continue
        name = type(cb).__name__
        if name not in TRANSLATED_CALLBACKS:
            raise RecipeError(
                f"callbacks[{i}] is a Keras 3 {name}, which cannot drive the tf_keras model tfcompress trains: "
                f"pass tf_keras.callbacks.{name} (or a tf_keras.callbacks.Callback subclass) instead; "
                f"Keras 3 {', '.join(TRANSLATED_CALLBACKS)} are translated for you."
            )
        out.append(TRANSLATED_CALLBACKS[name](cb))
    return out
