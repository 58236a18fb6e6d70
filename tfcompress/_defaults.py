"""The defaults several entry points share, in one place so they cannot drift apart.

A leaf module (it imports nothing), so the recipe, the job, the channels
stage, the tuner and the command line all read the same numbers. Where two
entry points default differently, the reason is written beside the constant.

Example:
    >>> BATCH_SIZE, TIMING_THREADS, TUNING_THREADS
    (32, 2, 1)
"""

__all__ = ["BATCH_SIZE", "LEARNING_RATE", "TIMING_THREADS", "TIMING_RUNS", "TIMING_SECONDS", "TUNING_THREADS",
           "TUNING_TIMING_RUNS", "TUNING_TIMING_SECONDS"]

#: Batch size of every training run: ``Recipe.batch_size`` (fine-tuning and the train stage),
#: ``run_job``'s baseline training (``train_epochs``) and the channels stage's own fine-tuning.
BATCH_SIZE = 32
#: Learning rate of the same runs.
LEARNING_RATE = 1e-3
#: XNNPACK threads a job times its files with (``run_job``, ``tfcompress demo/optimize --threads``).
TIMING_THREADS = 2
#: Minimum timed runs of a job's file (``timing_runs``; ``tflite_export.benchmark`` calls it ``min_runs``).
TIMING_RUNS = 50
#: Minimum timed seconds of a job's file (``timing_seconds``; ``min_seconds`` in ``tflite_export.benchmark``).
TIMING_SECONDS = 1.0
#: XNNPACK threads a tuning trial times its file with: one, unlike a job, because trials of several
#: workers on one machine time at the same time, and one thread each keeps them from contending for
#: cores, so the latencies a search ranks stay comparable.
TUNING_THREADS = 1
#: Minimum timed runs of a tuning trial's file: fewer than a job's, as a search times a file per trial and
#: only ranks them against each other (``tfcompress tune`` reports no absolute latency to ship by).
TUNING_TIMING_RUNS = 20
#: Minimum timed seconds of a tuning trial's file (see :data:`TUNING_TIMING_RUNS`).
TUNING_TIMING_SECONDS = 0.2
