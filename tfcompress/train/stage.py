"""The ``train`` stage at work inside :func:`tfcompress.optimize`, and its registry entry.

Example:
    >>> from tfcompress.train.stage import TECHNIQUE
    >>> TECHNIQUE.name, TECHNIQUE.recipe_class.__name__
    ('train', 'Train')
"""

from tfcompress._model import clone
from tfcompress.technique import StageResult, Technique
from tfcompress.train.config import Train
from tfcompress.training import with_policy

__all__ = ["run_stage", "TECHNIQUE"]


def run_stage(run, model, stage):
    """Train ``model`` (never distilled: it is what later stages distil from)."""
    epochs = run.stage_epochs(stage)
    result = StageResult(model, epochs=epochs, steps=run.steps(epochs))
    with run.float16_scope("train", result) as mixed:
        work = with_policy(model, "mixed_float16") if mixed else model
        result.history = run.fit(work, epochs, stage=stage, name="train", distil=False)
    result.model = with_policy(work, "float32") if mixed else work
    if run.recipe.distillation is not None:  # the later stages distil from the trained model
        run.teacher = clone(result.model)
    lr, opt, schedule = run.training(stage)
    result.details = f"trained: {opt.name}, learning rate {lr:g}, {schedule.kind if schedule else 'constant'} schedule"
    return result


TECHNIQUE = Technique(name="train", recipe_class=Train, run=run_stage)
