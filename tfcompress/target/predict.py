"""The drop budget mode predicts on the file: the scanned drop, corrected by what the measured rounds taught.

The scan (:mod:`tfcompress.target.sensitivity`) changes one unit at a time
and does not fine-tune, so its summed drop is pessimistic: fine-tuning with
distillation wins most of it back. How much depends on the model, the data
and the training, so budget mode learns it: :class:`Correction` keeps, per
weight family (``"int8"``, ``"int4"``: a plan-wide choice), the ratio
*drop measured on the file / scanned drop* of the last round of that family,
clipped to ``[LOW, HIGH]``. A family not measured yet borrows a measured
one's ratio; before any round, the prior is ``1 / DROP_SCALE``
(:data:`tfcompress.target.plan.DROP_SCALE`: the scan was 5-30x pessimistic
on LeNet-5).

*Predicted drop* = correction x scanned drop; each round reports it beside
the drop on the file. Once a family has two measured rounds, the line through
them (its secant: an offset and a slope) predicts instead, when it rises: the
fine-tuning can *gain* accuracy on a model trained briefly (ResNet-8 gained
1.7, 0.7 and 0.4 points over three latency rounds), a drop no ratio through
zero can follow (each round's clipped to :data:`LOW`, and the plans stopped
short of the budget). The next round of a drop budget allows the scanned
drop that predicts :data:`AIM` of the budget (:func:`next_scale`), kept inside
the bracket of the scales already measured (above a met one, below a
missed one) and at most ``tfcompress.target.plan.RAISE`` times the last.

Example:
    >>> c = Correction(prior=1 / 8)
    >>> c.predict("int8", 8.0)
    1.0
    >>> c.learn("int8", scanned=8.0, measured=0.2)
    >>> c.factor("int8"), c.factor("int4")  # int4 not measured: int8's ratio
    (0.025, 0.025)
    >>> round(next_scale(c.factor("int8"), last=8.0, lo=8.0, hi=None, raise_=3.0), 1)
    24.0
"""

__all__ = ["Correction", "next_scale", "AIM", "LOW", "HIGH", "LINE_LOW"]

#: The share of the budget the next round's plan aims its predicted drop at (a margin for the prediction's error).
AIM = 0.8
#: The correction's clip: file drop per scanned point (a file drop <= 0, or a huge miss, still moves by a bound).
LOW, HIGH = 1 / 64, 1.0
#: The lowest effective ratio a rising line gives (a gain at small plans lets the aim reach further than LOW).
LINE_LOW = 1 / 256


class Correction:
    """File drop per point of scanned drop, per weight family (see the module docstring)."""

    def __init__(self, prior):
        self.prior = float(prior)
        self.by_family = {}
        self.rounds = {}  # family -> [(scanned, measured)], in order

    def line(self, family):
        """``(offset, slope)`` through the family's last two rounds when the drop rises with the scan, else None."""
        pts = self.rounds.get(family, [])[-2:]
        if len(pts) < 2 or abs(pts[1][0] - pts[0][0]) < 1e-9:
            return None
        slope = (pts[1][1] - pts[0][1]) / (pts[1][0] - pts[0][0])
        return (pts[1][1] - slope * pts[1][0], slope) if slope > 0 else None

    def factor(self, family, aim=None):
        """The ratio for ``family``: its own, else the mean of the measured families', else the prior.

        With ``aim`` (points) and a rising :meth:`line`: the ratio that predicts
        ``aim`` where the line reaches it (``aim`` / the scanned drop there).
        """
        fit = self.line(family) if aim is not None else None
        if fit is not None and fit[0] < aim:
            return min(max(aim * fit[1] / (aim - fit[0]), LINE_LOW), HIGH)
        if family in self.by_family:
            return self.by_family[family]
        if self.by_family:
            return sum(self.by_family.values()) / len(self.by_family)
        return self.prior

    def predict(self, family, scanned):
        """The drop on the file predicted for a plan of ``scanned`` points (on the line, once there is one)."""
        fit = self.line(family)
        if fit is not None:
            return fit[0] + fit[1] * max(scanned, 0.0)
        return self.factor(family) * max(scanned, 0.0)

    def learn(self, family, scanned, measured):
        """Learn from one measured round: its plan's scanned drop and its file's drop."""
        if scanned > 0:
            self.by_family[family] = min(max(measured / scanned, LOW), HIGH)
            self.rounds.setdefault(family, []).append((float(scanned), float(measured)))

    def to_dict(self):
        """The ratios learned (JSON)."""
        return {"prior": round(self.prior, 4), **{k: round(v, 4) for k, v in self.by_family.items()}}


def next_scale(factor, last, lo, hi, raise_, drops=None):
    """The next round's scanned-drop allowance per budget point: ``AIM / factor`` inside the bracket.

    With both ends of the bracket measured (``drops``), the file's drop is
    interpolated between them instead: it grows faster than the scanned drop
    (LeNet-5: 0.31 points at 8 scanned, 2.81 at 20), so the ratio through zero
    of one round under-predicts a bigger step.

    Args:
        factor: the correction of the family (file drop per scanned point).
        last: the scale of the round just measured.
        lo: the largest scale whose file met the budget, or None.
        hi: the smallest scale whose file missed it, or None.
        raise_: the most the scale grows in one round.
        drops: ``(drop at lo, drop at hi, budget)`` in points, when both are measured. Defaults to `None`.

    Returns:
        The scale (a float).

    Example:
        >>> next_scale(0.1, last=24.0, lo=8.0, hi=24.0, raise_=3.0)  # 8 allowed: not above the met 8
        13.856406460551018
    """
    want = min(AIM / factor, last * raise_)
    if drops is not None and lo is not None and hi is not None and drops[0] < AIM * drops[2] < drops[1]:
        want = lo + (AIM * drops[2] - drops[0]) * (hi - lo) / (drops[1] - drops[0])
    low = lo if lo is not None else 0.0
    high = hi if hi is not None else float("inf")
    if low < want < high:
        return want
    if lo is not None and hi is not None:
        return (lo * hi) ** 0.5
    return lo * raise_ ** 0.5 if hi is None else min(want, hi / 2)  # met, yet predicted over: a half step up
