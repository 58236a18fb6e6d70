"""Knowledge distillation: fine-tune a compressed student against its teacher.

loss = alpha * task_loss(y, student) + (1 - alpha) * T^2 * KL(teacher_T || student_T)

where ``*_T`` are the softmax of logits divided by the temperature ``T``. Models
that end in a softmax are handled: their log-probabilities stand in for logits
(softmax is shift-invariant, so the tempered distributions are the same).

Example:
    >>> from tfcompress import distill
    >>> history = distill.fit(student, teacher, train_ds, epochs=2)  # doctest: +SKIP
"""

from tfcompress._keras import keras, tf
from tfcompress.errors import RecipeError

__all__ = ["Distiller", "fit", "ends_in_softmax"]


def ends_in_softmax(model):
    """True when the model's output layer applies a softmax."""
    last = model.layers[-1]
    inner = getattr(last, "layer", last)  # through pruning / QAT wrappers
    act = getattr(inner, "activation", None)
    if act is None and type(inner).__name__ == "Softmax":
        return True
    name = getattr(act, "__name__", "")
    if not name and hasattr(last, "activation"):  # QAT wraps activations
        name = getattr(getattr(last.activation, "activation", None), "__name__", "")
    return name == "softmax"


def loss_for(model, sparse_labels):
    """The classification loss matching the model's output and the labels (class ids or one-hot rows;
    one sigmoid unit: binary).

    Example:
        >>> loss_for(model, sparse_labels=True)  # doctest: +SKIP
    """
    from_logits = not ends_in_softmax(model)
    if model.output_shape[-1] == 1:
        return keras.losses.BinaryCrossentropy(from_logits=from_logits)
    if sparse_labels:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    return keras.losses.CategoricalCrossentropy(from_logits=from_logits)


def _logits(outputs, is_probs):
    return tf.math.log(tf.clip_by_value(outputs, 1e-7, 1.0)) if is_probs else outputs


class Distiller(keras.Model):
    """A training wrapper: trains ``student``; ``teacher`` is frozen.

    Args:
        student: the model being fine-tuned.
        teacher: the reference model (not trained).
        alpha: weight of the task loss, in [0, 1]. Defaults to `0.5`.
        temperature: softening temperature, > 0. Defaults to `4.0`.
    """

    def __init__(self, student, teacher, alpha=0.5, temperature=4.0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise RecipeError(f"distillation alpha must be in [0, 1], got {alpha!r}.")
        if temperature <= 0:
            raise RecipeError(f"distillation temperature must be > 0, got {temperature!r}.")
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self._student_probs = ends_in_softmax(student)
        self._teacher_probs = ends_in_softmax(teacher)
        # Per example, reduced by hand: under a tf.distribute strategy each
        # replica's loss is its share of the global batch (compute_average_loss),
        # the same scaling Keras applies to the compiled task loss.
        self.kl = keras.losses.KLDivergence(reduction=keras.losses.Reduction.NONE)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.distill_tracker = keras.metrics.Mean(name="distill_loss")

    def call(self, x, training=False):
        return self.student(x, training=training)

    def train_step(self, data):
        # Works with TF-MOT pruning, clustering and QAT wrappers inside the
        # student (UpdatePruningStep finds them through ``self.layers``) and
        # with mixed precision (outputs are cast to float32 for the losses).
        x, y = data
        t_out = tf.cast(self.teacher(x, training=False), tf.float32)
        t_soft = tf.nn.softmax(_logits(t_out, self._teacher_probs) / self.temperature)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            s_out = tf.cast(self.student(x, training=True), tf.float32)
            # compiled_loss divides by the replica count under a strategy (one replica's share).
            task = self.compiled_loss(y, s_out, regularization_losses=self.student.losses)
            s_soft = tf.nn.softmax(_logits(s_out, self._student_probs) / self.temperature)
            per_example = self.kl(t_soft, s_soft) * self.temperature**2
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
        s_out = tf.cast(self.student(x, training=False), tf.float32)
        self.compiled_loss(y, s_out, regularization_losses=self.student.losses)
        self.compiled_metrics.update_state(y, s_out)
        out = {m.name: m.result() for m in self.compiled_metrics.metrics}
        out["loss"] = self.compiled_loss.metrics[0].result() if self.compiled_loss.metrics else 0.0
        return out


def fit(student, teacher, data, epochs=1, alpha=0.5, temperature=4.0, optimizer=None,
        loss=None, metrics=("accuracy",), validation_data=None, callbacks=None, verbose=0):
    """Fine-tune ``student`` with distillation from ``teacher``.

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
    if loss is None:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(student))
    wrapper = Distiller(student, teacher, alpha=alpha, temperature=temperature)
    wrapper.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), loss=loss, metrics=list(metrics))
    return wrapper.fit(data, epochs=epochs, validation_data=validation_data,
                       callbacks=list(callbacks or []), verbose=verbose)
