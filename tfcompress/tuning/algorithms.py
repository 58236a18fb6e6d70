"""The search algorithms' names: every spelling a user may write maps to one of three.

The tuner, the oracle factory, the constraint penalty and the search folder's
``settings.json`` all use the canonical name from :func:`canonical_algorithm`,
so ``"BayesianOptimization"`` and ``"bayesian"`` are one search.

Example:
    >>> canonical_algorithm("BayesianOptimization"), canonical_algorithm("random_search")
    ('bayesian', 'random')
"""

from tfcompress.errors import TuningError

__all__ = ["ALGORITHM_NAMES", "canonical_algorithm"]

ALGORITHM_NAMES = ("random", "bayesian", "hyperband")

# Spelling (lower case, without "_", "-" and spaces) -> canonical name.
_SPELLINGS = {
    "random": "random",
    "randomsearch": "random",
    "bayes": "bayesian",
    "bayesian": "bayesian",
    "bayesianoptimization": "bayesian",
    "hyperband": "hyperband",
}


def canonical_algorithm(name):
    """The canonical name of a search algorithm.

    Args:
        name: ``random``, ``bayesian`` or ``hyperband``, in any case, also
            ``RandomSearch``, ``bayes``, ``BayesianOptimization`` or with
            ``_``/``-`` between words.

    Returns:
        ``"random"``, ``"bayesian"`` or ``"hyperband"``.

    Raises:
        TuningError: an unknown algorithm.

    Example:
        >>> canonical_algorithm("Hyperband")
        'hyperband'
    """
    key = str(name).lower().replace("_", "").replace("-", "").replace(" ", "")
    if key not in _SPELLINGS:
        raise TuningError(f"unknown algorithm {name!r}; use random, bayesian or hyperband.")
    return _SPELLINGS[key]
