"""Knowledge distillation: fine-tune a compressed student against its teacher.

loss = alpha * task_loss(y, student) + (1 - alpha) * T^2 * KL(teacher_T || student_T)

where ``*_T`` are the softmax of logits divided by the temperature ``T``. Models
that end in a softmax are handled: their log-probabilities stand in for logits
(softmax is shift-invariant, so the tempered distributions are the same).

Example:
    >>> from tfcompress import distill
    >>> history = distill.fit(student, teacher, train_ds, epochs=2)  # doctest: +SKIP
"""

from tfcompress._keras import forget_custom_gradients, keras, tf
from tfcompress._model import onednn_safe_training
from tfcompress.errors import RecipeError
from tfcompress.task import output_activation, task_for
from tfcompress.training import build_training_state

__all__ = ["Distiller", "fit", "fine_tune", "ends_in_softmax", "soft_loss", "match_loss", "cached_teacher_loss"]


def ends_in_softmax(model):
    """True when the model's output layer applies a softmax (through pruning and QAT wrappers)."""
    return output_activation(model) == "softmax"


def loss_for(model, sparse_labels):
    """The classification loss an uncompiled classifier's output implies (sparse or one-hot
    cross-entropy after a softmax or on logits; binary cross-entropy for one unit, from
    probabilities after a sigmoid): :func:`tfcompress.task.task_for`'s inference, as one loss.

    Example:
        >>> loss_for(model, sparse_labels=True)  # doctest: +SKIP
    """
    return task_for(model, sparse_labels=sparse_labels, compiled={}).compile_args()["loss"]


def _logits(outputs, is_probs):
    return tf.math.log(tf.clip_by_value(outputs, 1e-7, 1.0)) if is_probs else outputs


# Per example: Distiller reduces it by hand (under a tf.distribute strategy each replica's loss is its
# share of the global batch, compute_average_loss), the same scaling Keras applies to a compiled loss.
_KL = keras.losses.KLDivergence(reduction=keras.losses.Reduction.NONE)


def _check(alpha, temperature):
    if not 0.0 <= alpha <= 1.0:
        raise RecipeError(f"distillation alpha must be in [0, 1], got {alpha!r}.")
    if temperature <= 0:
        raise RecipeError(f"distillation temperature must be > 0, got {temperature!r}.")


def soft_loss(teacher_out, student_out, temperature=4.0, teacher_probs=False, student_probs=False):
    """Per example, T^2 x KL(teacher_T || student_T): the distillation term of :class:`Distiller`.

    Args:
        teacher_out, student_out: the two models' outputs, a row per example.
        temperature: T. Defaults to `4.0`.
        teacher_probs, student_probs: whether each output is a softmax's (probabilities, whose
            logs stand in for logits) rather than logits. Default to `False`.

    Example:
        >>> soft_loss(teacher(x), student(x), 4.0, teacher_probs=True, student_probs=True)  # doctest: +SKIP
    """
    t = tf.nn.softmax(_logits(tf.cast(teacher_out, tf.float32), teacher_probs) / temperature)
    s = tf.nn.softmax(_logits(tf.cast(student_out, tf.float32), student_probs) / temperature)
    return _KL(t, s) * temperature**2


def cached_teacher_loss(classes, alpha=0.5, temperature=4.0, teacher_probs=False, student_probs=False):
    """:class:`Distiller`'s loss as a plain Keras loss, for a teacher whose outputs were computed once.

    Without augmentation the teacher's outputs are the same every epoch, and its forward pass is
    over half of each distillation step; compute them once, put them beside one-hot labels, and
    compile the student with this loss: ``alpha`` x cross-entropy on the labels + ``(1 - alpha)``
    x :func:`soft_loss`.

    Args:
        classes: the number of classes (``y_true``'s first ``classes`` columns are the one-hot labels,
            the rest the teacher's outputs).
        alpha: weight of the label loss, in [0, 1]. Defaults to `0.5`.
        temperature: softening temperature, > 0. Defaults to `4.0`.
        teacher_probs, student_probs: as :func:`soft_loss`.

    Returns:
        ``loss(y_true, y_pred)``, per example.

    Raises:
        RecipeError: ``alpha`` or ``temperature`` out of range.

    Example:
        >>> y = np.concatenate([np.eye(10)[labels], teacher.predict(x)], axis=1)  # doctest: +SKIP
        >>> student.compile("adam", cached_teacher_loss(10, teacher_probs=True, student_probs=True))  # doctest: +SKIP
        >>> student.fit(x, y)  # doctest: +SKIP
    """
    _check(alpha, temperature)

    def loss(y_true, y_pred):
        hard, teacher = y_true[:, :classes], y_true[:, classes:]
        s = tf.cast(y_pred, tf.float32)
        task = keras.losses.categorical_crossentropy(hard, s, from_logits=not student_probs)
        return alpha * task + (1.0 - alpha) * soft_loss(teacher, s, temperature, teacher_probs, student_probs)

    return loss


def _float32(outputs):
    return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), outputs)


def match_loss(teacher_out, student_out):
    """Per example, the mean squared difference of the two models' outputs, summed over
    outputs: the distillation term for maps, boxes and regression heads.

    Example:
        >>> float(match_loss(tf.ones((1, 2, 2)), tf.zeros((1, 2, 2)))[0])
        1.0
    """
    terms = []
    for t, s in zip(tf.nest.flatten(teacher_out), tf.nest.flatten(student_out)):
        d = tf.square(tf.cast(t, tf.float32) - tf.cast(s, tf.float32))
        terms.append(tf.reduce_mean(tf.reshape(d, [tf.shape(d)[0], -1]), axis=-1))
    return tf.add_n(terms)


class Distiller(keras.Model):
    """A training wrapper: trains ``student``; ``teacher`` is frozen.

    Args:
        student: the model being fine-tuned.
        teacher: the reference model (not trained).
        alpha: weight of the task loss, in [0, 1]. Defaults to `0.5`.
        temperature: softening temperature, > 0. Defaults to `4.0`.
        match: ``"kl"``: the tempered KL of :func:`soft_loss` (classifiers);
            ``"mse"``: :func:`match_loss` on every output (maps, boxes,
            regression, several heads). Defaults to `"kl"`.
    """

    def __init__(self, student, teacher, alpha=0.5, temperature=4.0, match="kl", **kwargs):
        super().__init__(**kwargs)
        _check(alpha, temperature)
        if match not in ("kl", "mse"):
            raise RecipeError(f"distillation match must be 'kl' or 'mse', got {match!r}.")
        self.match = match
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self._student_probs = ends_in_softmax(student)
        self._teacher_probs = ends_in_softmax(teacher)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.distill_tracker = keras.metrics.Mean(name="distill_loss")

    def call(self, x, training=False):
        return self.student(x, training=training)

    def train_step(self, data):
        # Works with TF-MOT pruning, clustering and QAT wrappers inside the
        # student (UpdatePruningStep finds them through ``self.layers``) and
        # with mixed precision (outputs are cast to float32 for the losses).
        x, y = data
        t_out = self.teacher(x, training=False)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            s_out = _float32(self.student(x, training=True))
            # compiled_loss divides by the replica count under a strategy (one replica's share).
            task = self.compiled_loss(y, s_out, regularization_losses=self.student.losses)
            if self.match == "mse":
                per_example = match_loss(t_out, s_out)
            else:
                per_example = soft_loss(t_out, s_out, self.temperature, self._teacher_probs, self._student_probs)
            soft = tf.nn.compute_average_loss(per_example)
            loss = self.alpha * task + (1.0 - self.alpha) * soft
        grads = tape.gradient(loss, self.student.trainable_variables)
        self.optimizer.apply_gradients(  # gradients summed over replicas: the global-batch mean
            [(g, v) for g, v in zip(grads, self.student.trainable_variables) if g is not None]
        )
        self.compiled_metrics.update_state(y, s_out)
        # The trackers average the whole-batch values over replicas and steps.
        self.loss_tracker.update_state(loss * replicas)
        self.distill_tracker.update_state(soft * replicas)
        out = {m.name: m.result() for m in self.compiled_metrics.metrics}
        out.update({"loss": self.loss_tracker.result(), "distill_loss": self.distill_tracker.result()})
        return out

    def test_step(self, data):
        x, y = data
        s_out = _float32(self.student(x, training=False))
        self.compiled_loss(y, s_out, regularization_losses=self.student.losses)
        self.compiled_metrics.update_state(y, s_out)
        out = {m.name: m.result() for m in self.compiled_metrics.metrics}
        out["loss"] = self.compiled_loss.metrics[0].result() if self.compiled_loss.metrics else 0.0
        return out


def fine_tune(model, data, epochs=1, *, teacher=None, alpha=0.5, temperature=4.0, optimizer=None, loss=None,
              metrics=("accuracy",), loss_weights=None, validation_data=None, callbacks=None, verbose=0,
              match=None):
    """The one fine-tuning call of tfcompress: every stage, the channels and
    depth stages' own distillation and :func:`fit` train through it.

    With a ``teacher`` the model trains inside a :class:`Distiller` (task loss
    and distillation term); without one, plainly. Either way the compiled loss
    and metrics are the given ones, the loss/metric/optimizer variables are
    built before the first trace (:func:`tfcompress.training.build_training_state`),
    and the callbacks and validation data reach Keras's ``fit``.

    Args:
        model: tf_keras model to train (changed in place).
        data: a batched ``tf.data.Dataset`` of ``(x, y)``.
        epochs: epochs to train. Defaults to `1`.
        teacher: tf_keras model giving soft targets (unchanged), or None.
            Defaults to `None`.
        alpha: task-loss weight with a teacher. Defaults to `0.5`.
        temperature: softening temperature with a teacher. Defaults to `4.0`.
        optimizer: a tf_keras optimizer. Defaults to Adam(1e-3).
        loss: the task loss. Defaults to sparse categorical cross-entropy
            (from logits unless the model ends in a softmax).
        metrics: compiled metrics (a list, or a dict per output). Defaults to `("accuracy",)`.
        loss_weights: per-output loss weights. Defaults to `None`.
        validation_data: optional batched dataset for validation.
        callbacks: Keras callbacks (e.g. ``UpdatePruningStep``).
        verbose: Keras verbosity. Defaults to `0`.
        match: the Distiller's output matching, ``"kl"`` (classifiers) or
            ``"mse"`` (maps, regression). Defaults to `None` (``"kl"``).

    Returns:
        The Keras ``History``.

    Example:
        >>> fine_tune(student, train_ds, 2, teacher=teacher, alpha=0.3,  # doctest: +SKIP
        ...           callbacks=[keras.callbacks.CSVLogger("log.csv")]).history["loss"]
    """
    if loss is None:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(model))
    target = model if teacher is None else Distiller(model, teacher, alpha=alpha, temperature=temperature,
                                                     match=match or "kl")
    if isinstance(metrics, tuple):
        metrics = list(metrics)
    target.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), loss=loss, metrics=metrics,
                   loss_weights=loss_weights)
    # one trace of the train step, not two; forget_custom_gradients: its graph is freed with the model
    with forget_custom_gradients():
        build_training_state(target, data)
        with onednn_safe_training(target):  # 1x1 stride-2 convolutions: the same function, without oneDNN's crash
            return target.fit(data, epochs=epochs, validation_data=validation_data, callbacks=list(callbacks or []),
                              verbose=verbose)


def fit(student, teacher, data, epochs=1, alpha=0.5, temperature=4.0, optimizer=None,
        loss=None, metrics=("accuracy",), validation_data=None, callbacks=None, verbose=0):
    """Fine-tune ``student`` with distillation from ``teacher`` (:func:`fine_tune` with a teacher).

    Args:
        student: tf_keras model to train (changed in place).
        teacher: tf_keras model giving soft targets (unchanged).
        data: a batched ``tf.data.Dataset`` of ``(x, y)``.
        epochs: epochs to train. Defaults to `1`.
        alpha: task-loss weight. Defaults to `0.5`.
        temperature: softening temperature. Defaults to `4.0`.
        optimizer: a tf_keras optimizer. Defaults to Adam(1e-3).
        loss: the task loss. Defaults to sparse categorical cross-entropy
            (from logits unless the student ends in a softmax).
        metrics: metrics of the student. Defaults to `("accuracy",)`.
        validation_data: optional batched dataset for validation.
        callbacks: Keras callbacks (e.g. ``UpdatePruningStep``).
        verbose: Keras verbosity. Defaults to `0`.

    Returns:
        The Keras ``History``.
    """
    return fine_tune(student, data, epochs, teacher=teacher, alpha=alpha, temperature=temperature,
                     optimizer=optimizer, loss=loss, metrics=metrics, validation_data=validation_data,
                     callbacks=callbacks, verbose=verbose)
