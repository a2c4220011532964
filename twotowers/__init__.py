"""twotowers: two-tower dense passage retrieval (query tower + passage tower + nearest neighbours).

    from twotowers import TwoTowers, PassageIndex
    model = TwoTowers.from_pretrained("OWNER/NAME")      # or a local dir; TwoTowers.zero_shot() for MiniLM
    index = PassageIndex.build(model, ids, texts)        # hnswlib + BM25, saved and verified as one dir
    hits = index.search(["what is the rba"], k=10)[0]

Where things live: `towers` (the towers and their registry), `model` (TwoTowers), `losses`, `teacher`
(distillation teachers and their vector cache), `data` (training examples), `collection` (passages,
queries, qrels files), `metrics`, `evaluate`, `mine` (hard negatives), `index` (PassageIndex),
`pretrained` (model + index from the Hub in one snapshot), `st_export` (sentence-transformers files).
Importing the package is light: torch and hnswlib load when a model or an index is first asked for.
"""

from .base import MINILM_ID, resolve_base_model
from .project import PROJECT_URL, __version__

__all__ = ["MINILM_ID", "PROJECT_URL", "TOWERS", "TOWER_TYPES", "PassageIndex", "TowerConfig", "TwoTowers",
           "__version__", "resolve_base_model"]


def __getattr__(name):
    # Written out (not importlib): hub/space.py finds the Space's files by reading these imports.
    if name == "TwoTowers":
        from .model import TwoTowers

        return TwoTowers
    if name in ("TOWERS", "TOWER_TYPES", "TowerConfig"):
        from . import towers

        return getattr(towers, name)
    if name == "PassageIndex":
        from .index.passage_index import PassageIndex

        return PassageIndex
    raise AttributeError(f"module 'twotowers' has no attribute {name!r}")
