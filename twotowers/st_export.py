"""Write a TwoTowers model in the sentence-transformers format too, beside its own files.

After `write_sentence_transformers(model, dir)`, `SentenceTransformer(dir)` (no trust_remote_code)
rebuilds the model from sentence-transformers' own modules: a Router whose "query" and "document"
routes are the two towers, then Normalize. Its `encode_query` / `encode_document` give the vectors of
`encode_queries` / `encode_passages` (to float32 rounding), with the same truncation. Only JSON,
safetensors and tokenizer files are written; sentence-transformers need not be installed to export.

Layout (the `save_pretrained` files at the root are left as they are):

    modules.json                          Router (0_Router), then Normalize (1_Normalize)
    config_sentence_transformers.json     the "query"/"document" prompts of the towers (bge's query prompt), cosine
    0_Router/router_config.json           route -> module folders
    0_Router/query_0_StaticEmbedding/     mean tower: embedding.weight + tokenizer.json (truncation set)
    0_Router/query_1_Dense/               its projection (identity activation), when it has one
    0_Router/document_0_Transformer/      transformer tower: HF config + weights, tokenizer, max_seq_length
    0_Router/document_1_Pooling/          the tower's pooling: mean over the attention mask, or CLS
    0_Router/document_2_Dense/            its projection, when it has one
    1_Normalize/config.json

(either side may be either kind). Class references use the `sentence_transformers.models.*` names
that sentence-transformers 5.x writes and 6.x still resolves, and the module configs use the
classic keys, so the files load in both. GRU/LSTM towers have no sentence-transformers module.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

SUPPORTED_TOWERS = ("mean", "transformer")
ROUTER_DIR, NORMALIZE_DIR = "0_Router", "1_Normalize"
# Every path the export owns (prefixes): a repo re-published without them must delete them too.
OWNED_PATHS = (f"{ROUTER_DIR}/", f"{NORMALIZE_DIR}/", "modules.json", "config_sentence_transformers.json")
_CLASS = "sentence_transformers.models."  # + Router, StaticEmbedding, Transformer, Pooling, Dense, Normalize
_TOKENIZER_EXTRAS = ("vocab.txt", "special_tokens_map.json")  # copied as they are for the HF tokenizer


def supports_sentence_transformers(model) -> bool:
    """True when both towers have sentence-transformers counterparts ("mean" or "transformer")."""
    return (model.tower_config.tower in SUPPORTED_TOWERS
            and model.passage_tower_config.tower in SUPPORTED_TOWERS)


def write_sentence_transformers(model, directory) -> list[str]:
    """Write the sentence-transformers files of `model` into `directory` -> their relative paths.

    `directory` may already hold the `save_pretrained` files; they are not touched. The folders
    0_Router/ and 1_Normalize/ are replaced (a previous export's modules would otherwise linger).
    Raises ValueError for GRU/LSTM towers.
    """
    if not supports_sentence_transformers(model):
        raise ValueError(f"a {model.tower_name!r} model has no sentence-transformers equivalent (GRU/LSTM towers are "
                         f"not among its modules; supported: {', '.join(SUPPORTED_TOWERS)}): it loads with twotowers "
                         "only: TwoTowers.from_pretrained(...)")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    for name in (ROUTER_DIR, NORMALIZE_DIR):
        if (root / name).is_dir():
            shutil.rmtree(root / name)
    written: list[str] = []

    def put(rel: str, content) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".safetensors"):  # {name: tensor}: float32 on CPU, own storage (no shared tensors)
            tensors = {k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous().clone()
                       for k, v in content.items()}
            save_file(tensors, str(path), metadata={"format": "pt"})  # transformers wants the "pt" tag
        elif isinstance(content, Path):
            shutil.copyfile(content, path)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        written.append(rel)

    types, structure = {}, {}
    sides = (("query", model.query_tower, model.tower_config, model.tokenizer, model.max_query_length),
             ("document", model.passage_tower, model.passage_tower_config, model.passage_tokenizer,
              model.max_passage_length))
    for route, tower, tower_config, tokenizer, max_length in sides:
        structure[route] = []
        for i, (cls, files) in enumerate(_route_modules(tower, tower_config, tokenizer.directory, max_length)):
            module_id = f"{route}_{i}_{cls}"  # the folder names Router.save itself would choose
            types[module_id] = _CLASS + cls
            structure[route].append(module_id)
            for name, content in files.items():
                put(f"{ROUTER_DIR}/{module_id}/{name}", content)
    # No route_mappings: encode_query / encode_document pass task="query"/"document", which the Router
    # finds by route name; plain encode() takes default_route. (route_mappings is a newer parameter:
    # leaving it out keeps the file readable by older 5.x Routers.)
    put(f"{ROUTER_DIR}/router_config.json", {"types": types, "structure": structure,
                                             "parameters": {"default_route": "document", "allow_empty_key": True}})
    put(f"{NORMALIZE_DIR}/config.json", {"module_input_name": "sentence_embedding",
                                         "module_output_name": "sentence_embedding"})  # keeps the folder non-empty
    put("modules.json", [
        {"idx": 0, "name": "0", "path": ROUTER_DIR, "type": _CLASS + "Router"},
        {"idx": 1, "name": "1", "path": NORMALIZE_DIR, "type": _CLASS + "Normalize"},
    ])
    put("config_sentence_transformers.json", {
        "model_type": "SentenceTransformer",
        # encode_query / encode_document put these before the text, as encode_queries / encode_passages do
        "prompts": {"query": model.query_prompt, "document": model.passage_prompt},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    return sorted(written)


def _route_modules(tower: nn.Module, tower_config, source: Path, max_length: int) -> list[tuple[str, dict]]:
    """One tower (its tokenizer files in `source`) -> [(module class name, {file name: content})] in route order."""
    kind = tower_config.tower
    tokenizer_json = _tokenizer_json(source, max_length)
    if kind == "mean":
        # StaticEmbedding = EmbeddingBag(mode="mean") over tokens encoded with add_special_tokens=False,
        # truncated by the truncation stored in its tokenizer.json: exactly MeanTower's masked mean.
        modules = [("StaticEmbedding", {"model.safetensors": {"embedding.weight": tower.embeddings.weight},
                                        "tokenizer.json": tokenizer_json})]
    else:
        modules = [("Transformer", _transformer_files(source, tower.encoder, tokenizer_json, max_length))]
        width, cls_pooling = tower.encoder.config.hidden_size, tower_config.pooling == "cls"
        modules.append(("Pooling", {"config.json": {  # classic keys: 6.x renames them silently
            "word_embedding_dimension": width, "pooling_mode_cls_token": cls_pooling,
            "pooling_mode_mean_tokens": not cls_pooling,
            "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False, "include_prompt": True}}))
    if isinstance(tower.projection, nn.Linear):  # Identity (projection_dim=None) needs no module
        proj = tower.projection
        modules.append(("Dense", {
            "config.json": {"in_features": proj.in_features, "out_features": proj.out_features,
                            "bias": proj.bias is not None,
                            "activation_function": "torch.nn.modules.linear.Identity"},  # Dense's default is Tanh
            "model.safetensors": {f"linear.{k}": v for k, v in proj.state_dict().items()},
        }))
    elif not isinstance(tower.projection, nn.Identity):
        raise ValueError(f"unexpected projection {type(tower.projection).__name__} in the {kind} tower")
    return modules


def _tokenizer_json(source: Path, max_length: int) -> str:
    """The model's tokenizer.json configured as TextTokenizer uses it: no padding, truncation to max_length.

    StaticEmbedding keeps the file's truncation (it only calls no_padding()), so this is what limits
    its tokens; MiniLM's own file says 128 and fixed padding to 128, which must not leak through.
    With special tokens (the Transformer side) the limit counts [CLS] and [SEP], as ours does.
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(source) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok.to_str(pretty=True)


def _transformer_files(source: Path, encoder: nn.Module, tokenizer_json: str, max_length: int) -> dict:
    """A Transformer module folder: what AutoModel / AutoTokenizer read, plus sentence_bert_config.json."""
    source = Path(source)
    hf_config = encoder.config.to_dict()
    hf_config.pop("_name_or_path", None)  # may be a local path of the machine that trained the model
    hf_config["architectures"] = [type(encoder).__name__]
    hf_config["dtype"] = hf_config["torch_dtype"] = "float32"  # weights are written as float32 (v5 / v4 key)
    st_config = {"max_seq_length": max_length, "do_lower_case": False}  # the tokenizer.json lowercases already
    if hf_config.get("model_type") == "bert" and getattr(encoder, "pooler", None) is None:
        # Our encoder has no pooler (its output is unused); without this BertModel would build a
        # randomly initialised one and warn about the missing weights at every load.
        st_config["model_args"] = {"add_pooling_layer": False}  # classic key; 6.x maps it to model_kwargs
    tokenizer_config = {}
    if (source / "tokenizer_config.json").is_file():
        tokenizer_config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
        tokenizer_config.pop("name_or_path", None)
    tokenizer_config["model_max_length"] = max_length
    files = {"config.json": hf_config, "model.safetensors": encoder.state_dict(),
             "sentence_bert_config.json": st_config, "tokenizer.json": tokenizer_json,
             "tokenizer_config.json": tokenizer_config}
    files.update({name: source / name for name in _TOKENIZER_EXTRAS if (source / name).is_file()})
    return files
