"""Equal-budget benchmark of self-supervised methods on the shapes scenes (``tools/benchmark/run.py``)."""
from .profiles import METHODS, PROFILES, Profile  # noqa: F401
