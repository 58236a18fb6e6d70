"""Per-layer mixed precision: a sensitivity scan, a plan within a budget, the ``precision`` stage.

An export-side technique: the float32 ``.tflite`` of the
(possibly pruned or clustered) model is quantized op by op with
``ai-edge-quantizer`` (:mod:`tflite_export.mixed`), each weight layer at
``int4`` (packed int4 weights, dynamic range), ``int8``, ``int16x8`` (int16
activations), ``float16`` (weights) or ``float32``. The API, for the recipe
stage and for a budget search:

- ``Mixer(float_bytes, x_cal)`` (:mod:`tflite_export.mixed`): the file,
  calibrated once; ``mixer.quantize({layer: precision}, default) -> bytes``;
- :func:`scan` ``(mixer, x_val, y_val, candidates, fixed, default) -> Scan``:
  per layer and candidate, the accuracy and the bytes saved when only that
  layer is lowered (the others float32); ``Scan.rows`` is the table;
- :func:`plan` ``(scan, max_drop, max_bytes) -> Plan``: greedy moves, most
  bytes saved per accuracy point first, cut at the budget by the estimate;
  ``Plan.per_layer() -> {layer: precision}``;
- :func:`fit` ``(mixer, scan, plan, x_val, y_val, max_drop, max_bytes) -> Fitted``:
  the assembled file measured, the cut moved until the file meets the budget;
- :class:`Precision`: the recipe stage (``per_layer``, ``default``,
  ``max_drop``, ``max_bytes``, ``candidates``, ``samples``); in
  ``optimize`` it runs the three steps above and writes the plan back into
  the recipe as ``per_layer``; the main job writes ``mixed.tflite``.

Example:
    >>> from tflite_export import convert_bytes
    >>> from tflite_export.mixed import Mixer
    >>> from tfcompress import precision
    >>> mixer = Mixer(convert_bytes(model, "float32")[0], x_train[:100])   # doctest: +SKIP
    >>> s = precision.scan(mixer, x_val, y_val, ("int4", "int8", "float16"))  # doctest: +SKIP
    >>> precision.fit(mixer, s, precision.plan(s, max_drop=1.0), x_val, y_val, max_drop=1.0).per_layer  # doctest: +SKIP
    {'conv1': 'float16', 'conv2': 'int8', 'dense': 'int4'}
"""

from tfcompress.precision.config import PRECISIONS, Precision
from tfcompress.precision.scan import Plan, Scan, fit, plan, scan

__all__ = ["Precision", "PRECISIONS", "Scan", "Plan", "scan", "plan", "fit"]
