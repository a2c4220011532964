"""twotowers: two-tower dense passage retrieval (query tower + passage tower + nearest neighbours)."""

from .base import MINILM_ID, resolve_base_model
from .model import TwoTowers
from .towers import TOWER_TYPES, TowerConfig

__all__ = ["MINILM_ID", "TOWER_TYPES", "PassageIndex", "TowerConfig", "TwoTowers", "resolve_base_model"]
__version__ = "0.1.0"


def __getattr__(name):
    # The index pulls in hnswlib; import it only when asked for.
    if name == "PassageIndex":
        from .index import PassageIndex

        return PassageIndex
    raise AttributeError(f"module 'twotowers' has no attribute {name!r}")
