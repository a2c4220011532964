"""`TwoTowers`: a query tower and a passage tower with separate weights, and the encoding API.

    model = TwoTowers()                        # mean towers on all-MiniLM-L6-v2 word embeddings
    q = model.encode_queries(["what is rba"])  # [1, 256] float32, L2-normalised
    p = model.encode_passages(passages)        # [n, 256]
    scores = p @ q[0]                          # cosine similarity

`save_pretrained(dir)` writes `model.safetensors`, `config.json` (the constructor's arguments),
`base_config.json` and the tokenizer files, so `TwoTowers.from_pretrained(dir_or_repo_id)` needs
nothing else. Pickles are never written or read.
"""

from __future__ import annotations

import contextvars
import copy
import hashlib
import inspect
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from safetensors.torch import load_model as load_safetensors_model
from torch import nn

from .base import MINILM_ID, encoder_settings, resolve_base_model
from .checks import BASE_CONFIG_LIMITS, MAX_WIDTH, check_config_types, check_positive_int, check_sizes, check_texts
from .project import DOCS_URL, PROJECT_URL
from .textfiles import check_readable, read_json
from .layout import BASE_CONFIG_NAME, CONFIG_NAME, MODEL_FILES, PASSAGE_BASE_DIR, REQUIRED_MODEL_FILES, WEIGHTS_NAME
from .tokenizer import TextTokenizer
from .towers import TowerConfig, build_tower
from .writing import make_readable, writing

# Set while `from_pretrained` builds the skeleton: the towers take shapes and tokenizer from the
# saved directory and skip loading base weights (the saved weights replace them).
_PRETRAINED_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("_PRETRAINED_DIR", default=None)


def default_device() -> torch.device:
    """CUDA when there is a GPU, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# The constructor options of the first published models: a fingerprint always covers these. Any option
# added since counts only where a model sets it away from its default, so that a new option never
# changes the fingerprint of a model (and the indexes) saved before it existed.
_FIRST_OPTIONS = frozenset({"tower", "base_model", "projection_dim", "max_query_length", "max_passage_length",
                            "rnn_hidden_size", "rnn_layers", "dropout", "freeze_embeddings"})


def _option_defaults(cls) -> dict:
    """Each constructor option's default, over the class and its bases (a subclass may add options)."""
    defaults = {}
    for c in reversed(cls.__mro__):
        if "__init__" in vars(c):
            defaults.update((k, p.default) for k, p in inspect.signature(c.__init__).parameters.items()
                            if p.default is not inspect.Parameter.empty)
    return defaults


def _settings_from_bases(query_kind: str, passage_kind: str, query_base: Path, passage_base: Path,
                         given: dict) -> dict:
    """The pooling and prompts each transformer tower's base asks for (its sentence-transformers files),
    for the options `given` leaves None -> {option: value}, only where they differ from mean pooling and
    no prompt (what a model without those options does)."""
    resolved = {}
    for kind, base, pooling, prompt, prompt_of in (
            (query_kind, query_base, "pooling", "query_prompt", "query_prompt"),
            (passage_kind, passage_base, "passage_pooling", "passage_prompt", "document_prompt")):
        if kind != "transformer":  # a word average learns its own reading: no prompt, nothing to pool by
            continue
        settings = encoder_settings(base)
        if given[pooling] is None and settings.pooling != "mean":
            resolved[pooling] = settings.pooling
        if given[prompt] is None and getattr(settings, prompt_of):
            resolved[prompt] = getattr(settings, prompt_of)
    return resolved


class TwoTowers(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="twotowers",
    tags=["sentence-similarity", "dense-retrieval", "two-tower", "ms-marco"],
    pipeline_tag="sentence-similarity",
    license="apache-2.0",
    repo_url=PROJECT_URL,
    docs_url=DOCS_URL,
):
    """Two-tower retrieval model: `encode_queries` / `encode_passages` -> unit vectors.

    Args:
        tower: "mean" (seed design), "gru", "lstm" or "transformer".
        base_model: Hub id or local dir of the encoder whose tokenizer and weights start the towers.
        projection_dim: output width of the final linear layer; None = no projection.
        max_query_length / max_passage_length: token limits (longer texts are truncated).
        rnn_hidden_size / rnn_layers: GRU/LSTM size per direction and depth.
        dropout: applied in training only.
        freeze_embeddings: keep the token embeddings fixed while training.
        passage_tower / passage_projection_dim: a different architecture for the passage side (None =
            the same as the query side), e.g. `tower="mean", projection_dim=384, passage_tower=
            "transformer"`: a cheap query tower over passages encoded offline by the full encoder.
            Both sides must output the same width.
        passage_base_model: another base for the passage side (None = `base_model`), e.g. a mean query
            tower on MiniLM's word embeddings over `BAAI/bge-small-en-v1.5` as the passage tower.
        pooling / passage_pooling: how a transformer tower pools, "mean" or "cls" (None = as its base's
            sentence-transformers files say, mean where they say nothing).
        query_prompt / passage_prompt: text put before every query / passage of a transformer tower
            (None = its base's "query" / "document" prompt, e.g. bge's "Represent this sentence for
            searching relevant passages: "; "" = none).

    A model starts in eval mode: encoding never switches modes; training code calls `.train()`.
    """

    def __init__(
        self,
        tower: str = "mean",
        base_model: str = MINILM_ID,
        projection_dim: int | None = 256,
        max_query_length: int = 64,
        max_passage_length: int = 256,
        rnn_hidden_size: int = 256,
        rnn_layers: int = 1,
        dropout: float = 0.0,
        freeze_embeddings: bool = False,
        passage_tower: str | None = None,
        passage_projection_dim: int | None = None,
        passage_base_model: str | None = None,
        pooling: str | None = None,
        passage_pooling: str | None = None,
        query_prompt: str | None = None,
        passage_prompt: str | None = None,
    ):
        super().__init__()
        if min(max_query_length, max_passage_length) < 1:
            raise ValueError("max_query_length and max_passage_length must be >= 1")
        check_sizes({"projection_dim": projection_dim or None, "passage_projection_dim": passage_projection_dim or None,
                      "rnn_hidden_size": rnn_hidden_size, "rnn_layers": rnn_layers},
                     dict.fromkeys(("projection_dim", "passage_projection_dim", "rnn_hidden_size"), MAX_WIDTH)
                     | {"rnn_layers": 1024}, "TwoTowers" if _PRETRAINED_DIR.get() is None else
                     str(_PRETRAINED_DIR.get() / CONFIG_NAME))
        self.base_model = base_model
        self.passage_base_model = passage_base_model or base_model
        self.max_query_length = max_query_length
        self.max_passage_length = max_passage_length
        separate = self.passage_base_model != base_model  # each side has a base of its own

        # Where each side's base config and tokenizer come from: the base models, or a saved model's
        # directory (its passage side under passage/ when the bases differ; no base weights loaded).
        pretrained = _PRETRAINED_DIR.get()
        if pretrained is not None:
            q_source, p_source = pretrained, pretrained / PASSAGE_BASE_DIR if separate else pretrained
            config_name = BASE_CONFIG_NAME
        else:
            q_source = resolve_base_model(base_model)
            p_source = resolve_base_model(self.passage_base_model) if separate else q_source
            config_name = "config.json"
            # Recorded in the config, so that a saved model needs no base files
            resolved = _settings_from_bases(tower, passage_tower or tower, q_source, p_source, dict(
                pooling=pooling, query_prompt=query_prompt, passage_pooling=passage_pooling,
                passage_prompt=passage_prompt))
            pooling, query_prompt = resolved.get("pooling", pooling), resolved.get("query_prompt", query_prompt)
            passage_pooling = resolved.get("passage_pooling", passage_pooling)
            passage_prompt = resolved.get("passage_prompt", passage_prompt)
            if self._hub_mixin_config is not None:
                self._hub_mixin_config.update(resolved)
        self.query_prompt, self.passage_prompt = query_prompt or "", passage_prompt or ""

        self.tower_config = TowerConfig(tower, projection_dim, rnn_hidden_size, rnn_layers, dropout, freeze_embeddings,
                                        pooling or "mean")
        same_side = passage_tower is None and not separate and (passage_pooling or pooling) == pooling
        self.passage_tower_config = self.tower_config if same_side else TowerConfig(
            passage_tower or tower, projection_dim if passage_tower is None else passage_projection_dim,
            rnn_hidden_size, rnn_layers, dropout, freeze_embeddings, passage_pooling or "mean")

        for source in {q_source, p_source}:
            if not (source / config_name).is_file():
                raise FileNotFoundError(f"{source} lacks {config_name}: not a saved TwoTowers model or base model")
        self.tokenizer = TextTokenizer(q_source)
        self.passage_tokenizer = TextTokenizer(p_source) if separate else self.tokenizer
        if self.passage_tokenizer.pad_id != self.tokenizer.pad_id:
            raise ValueError(f"the two bases pad with different token ids ({self.tokenizer.pad_id} and "
                             f"{self.passage_tokenizer.pad_id}): give the towers bases with one padding token")
        self.base_config = read_json(q_source / config_name, "the base model's config")
        self.passage_base_config = read_json(p_source / config_name, "the base model's config") if separate else self.base_config
        for source, base_config in {q_source: self.base_config, p_source: self.passage_base_config}.items():
            if not isinstance(base_config, dict):
                raise ValueError(f"{source / config_name} is not a JSON object: restore it")
            missing = [k for k in ("vocab_size", "hidden_size") if k not in base_config]
            if missing:
                raise ValueError(f"{source / config_name} lacks {' and '.join(missing)}: not an encoder's config, "
                                 "or it was edited; restore it")
            check_sizes(base_config, BASE_CONFIG_LIMITS, str(source / config_name))
        self.query_tower = build_tower(self.tower_config, q_source, self.base_config, load_weights=pretrained is None)
        if same_side:
            self.passage_tower = copy.deepcopy(self.query_tower)  # same start, separate weights
        else:
            self.passage_tower = build_tower(self.passage_tower_config, p_source, self.passage_base_config,
                                             load_weights=pretrained is None)
            if self.passage_tower.dim != self.query_tower.dim:
                raise ValueError(f"the query tower outputs {self.query_tower.dim} dims but the passage tower "
                                 f"{self.passage_tower.dim}: set projection_dim / passage_projection_dim to match")
        self._device = torch.device("cpu")
        self.to(default_device())
        self.eval()  # encoding never switches modes (threads share the flag): training code calls .train()

    @classmethod
    def zero_shot(cls, base_model: str = MINILM_ID) -> "TwoTowers":
        """The untrained transformer tower on both sides, no projection: the base encoder as it ships (its
        pooling, prompts and passage length; all-MiniLM-L6-v2 by default: the baseline, the default
        teacher and the app's demo model)."""
        length = encoder_settings(resolve_base_model(base_model)).max_seq_length or 256
        return cls(tower="transformer", projection_dim=None, base_model=base_model, max_passage_length=length)

    @property
    def tower_name(self) -> str:
        """"mean", or "mean/transformer" (query/passage) for a model whose sides differ."""
        q, p = self.tower_config.tower, self.passage_tower_config.tower
        return q if self.passage_tower_config is self.tower_config else f"{q}/{p}"

    @property
    def dim(self) -> int:
        """Width of the output vectors."""
        return self.query_tower.dim

    @property
    def device(self) -> torch.device:
        """Where the weights are (kept up to date by `.to()` and friends: no walk over the modules per call)."""
        return self._device

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._device = next(self.parameters()).device
        return out

    # -- training-time API: token tensors in, normalised tensors out (with gradients) --------------
    def embed_queries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`[B, T]` query tokens -> `[B, dim]` unit vectors."""
        return F.normalize(self.query_tower(input_ids, attention_mask).float(), dim=-1)

    def embed_passages(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`[N, T]` passage tokens -> `[N, dim]` unit vectors."""
        return F.normalize(self.passage_tower(input_ids, attention_mask).float(), dim=-1)

    def forward(self, query_ids=None, query_mask=None, passage_ids=None, passage_mask=None):
        """Both towers in one call (what DistributedDataParallel wraps) -> (`[B, dim]`, `[N, dim]`); a side
        given no tokens gives None."""
        q = None if query_ids is None else self.embed_queries(query_ids, query_mask)
        p = None if passage_ids is None else self.embed_passages(passage_ids, passage_mask)
        return q, p

    def tokenize_queries(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each query (its prompt first, if the tower has one), truncated to max_query_length."""
        texts = [self.query_prompt + t for t in texts] if self.query_prompt else texts
        return self.tokenizer.encode(texts, self.max_query_length, self.query_tower.add_special_tokens)

    def tokenize_passages(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each passage (its prompt first, if any), truncated to max_passage_length."""
        texts = [self.passage_prompt + t for t in texts] if self.passage_prompt else texts
        return self.passage_tokenizer.encode(texts, self.max_passage_length, self.passage_tower.add_special_tokens)

    # -- inference API -------------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str], batch_size: int = 256, show_progress: bool = False) -> np.ndarray:
        """Encode queries -> L2-normalised float32 array `[len(texts), dim]`."""
        texts = check_texts(texts, "encode_queries")
        return self._encode(self.query_tower, self.tokenize_queries, texts, batch_size, show_progress)

    def encode_passages(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """Encode passages -> L2-normalised float32 array `[len(texts), dim]`."""
        texts = check_texts(texts, "encode_passages")
        return self._encode(self.passage_tower, self.tokenize_passages, texts, batch_size, show_progress)

    def _encode(self, tower, tokenize, texts, batch_size, show_progress) -> np.ndarray:
        # Stateless: the model is read, never switched, so concurrent calls take the same path and agree
        # exactly. A model in training mode would encode with dropout: refused rather than flipped.
        if self.training:
            raise RuntimeError("encode_queries / encode_passages need an eval-mode model: call model.eval() "
                               "first (a model starts in eval mode; training code switches modes itself)")
        batch_size = check_positive_int(batch_size, "batch_size")
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        ids = tokenize(texts)
        if len(ids) == 1 and self._device.type == "cpu" and hasattr(tower, "encode_one"):
            # One query through the mean tower, as a search API gets it: numpy only, no torch call at all.
            v = tower.encode_one(ids[0])  # [dim]
            return (v / max(float(np.sqrt(v @ v)), 1e-12))[None]
        with torch.inference_mode():
            return self._encode_ids(tower, ids, batch_size, show_progress)

    def _encode_ids(self, tower, ids: list[list[int]], batch_size: int, show_progress: bool) -> np.ndarray:
        device = self.device
        if len(ids) == 1:  # one query: no sorting, no progress bar
            input_ids, mask = self.tokenizer.pad(ids, device)
            return F.normalize(tower(input_ids, mask).float(), dim=-1).cpu().numpy()
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        # Longest first, so each batch pads to nearly its own length and any OOM shows at once.
        order = np.argsort([-len(x) for x in ids], kind="stable")
        starts = range(0, len(ids), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encoding", unit="batch")
        for start in starts:
            rows = order[start : start + batch_size]
            input_ids, mask = self.tokenizer.pad([ids[i] for i in rows], device)
            out[rows] = F.normalize(tower(input_ids, mask).float(), dim=-1).cpu().numpy()  # [b, dim]
        return out

    # -- identity, save and load ---------------------------------------------------------------------
    def fingerprint(self) -> str:
        """sha256 of the config and every weight: which model encoded an index."""
        config = {k: v for k, v in self._hub_mixin_config.items()
                  if k in _FIRST_OPTIONS or v != _option_defaults(type(self)).get(k, inspect.Parameter.empty)}
        h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def _save_pretrained(self, save_directory: Path) -> None:
        with writing(save_directory / WEIGHTS_NAME):  # a full disk: one line naming the file
            super()._save_pretrained(save_directory)  # model.safetensors
        make_readable(save_directory / WEIGHTS_NAME)  # safetensors writes 0600: another user could not load it
        sides = [(save_directory, self.tokenizer, self.base_config)]
        if self.passage_tokenizer is not self.tokenizer:  # a passage side on a base of its own
            sides.append((save_directory / PASSAGE_BASE_DIR, self.passage_tokenizer, self.passage_base_config))
        for directory, tokenizer, base_config in sides:
            with writing(directory / BASE_CONFIG_NAME):
                directory.mkdir(exist_ok=True)
                tokenizer.save(directory)
                (directory / BASE_CONFIG_NAME).write_text(json.dumps(base_config, indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision: str | None = None, cache_dir=None,
                        token=None, force_download: bool = False, local_files_only: bool = False, **model_kwargs):
        """A saved model from a local directory or a Hub id (pinned to `revision`), loaded as saved.

        Resolved first (a mistyped path or an uncached Hub id offline is one error naming it), and its
        config.json checked (cut short, not an object, absurd sizes: an error naming the file) before
        anything is built."""
        from .download import local_or_download

        local = local_or_download(pretrained_model_name_or_path, what="model", revision=revision, cache_dir=cache_dir,
                                  token=token, force_download=force_download, local_files_only=local_files_only,
                                  allow_patterns=MODEL_FILES)
        config_path = local / CONFIG_NAME
        if config_path.is_file():
            config = read_json(config_path, "a saved TwoTowers model's config")
            if not isinstance(config, dict):
                raise ValueError(f"{config_path} is not a JSON object: restore it or save the model again")
            check_config_types(config, cls, config_path)
        return super().from_pretrained(str(local), **model_kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                         map_location: str | None = None, strict: bool = True, **model_kwargs):
        from .download import local_or_download

        local = local_or_download(model_id, what="model", revision=revision, cache_dir=cache_dir, token=token,
                                  force_download=force_download, local_files_only=local_files_only,
                                  allow_patterns=MODEL_FILES)
        needed = list(REQUIRED_MODEL_FILES)
        if model_kwargs.get("passage_base_model") not in (None, model_kwargs.get("base_model", MINILM_ID)):
            needed += [f"{PASSAGE_BASE_DIR}/{BASE_CONFIG_NAME}", f"{PASSAGE_BASE_DIR}/tokenizer.json"]
        missing = [f for f in needed if not (local / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{local} is not a saved TwoTowers model: missing {', '.join(missing)}")
        reset = _PRETRAINED_DIR.set(local)
        try:
            model = cls(**model_kwargs)
        finally:
            _PRETRAINED_DIR.reset(reset)
        weights = check_readable(local / WEIGHTS_NAME)  # a 0600 file of another user: said so (safetensors says "not found")
        try:
            load_safetensors_model(model, str(weights), strict=strict, device=str(model.device))
        except Exception as e:
            raise OSError(f"could not load weights from {weights}: {type(e).__name__}: {e}") from e
        if map_location is not None:
            model.to(map_location)
        return model.eval()
