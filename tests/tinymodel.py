"""A tiny BERT base model (MiniLM's tokenizer, 32-wide, 1 layer, random weights) for fast training tests."""

import shutil
from pathlib import Path

TOPICS = {  # synthetic retrieval data: each topic's queries and passages share its words
    "piano": "piano music keys melody concert",
    "river": "river water fish boat bridge",
    "rocket": "rocket space launch orbit moon",
    "bread": "bread flour oven bake yeast",
    "garden": "garden flower seed soil plant",
    "winter": "winter snow cold ice skate",
    "chess": "chess board king queen move",
    "train": "train station rail ticket travel",
}


def make_tiny_base(directory: Path) -> Path:
    """Write config.json, model.safetensors and the MiniLM tokenizer files into `directory`."""
    import torch
    from transformers import BertConfig, BertModel

    from twotowers import MINILM_ID, resolve_base_model

    directory = Path(directory)
    if (directory / "model.safetensors").is_file():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    src = resolve_base_model(MINILM_ID)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copyfile(src / name, directory / name)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(directory, safe_serialization=True)
    return directory


def synthetic_rows(n_per_topic: int = 3, seed: int = 0) -> list[dict]:
    """v1.1-schema rows: one selected passage of the query's topic, two unselected of other topics."""
    import random

    rng = random.Random(seed)
    names = list(TOPICS)
    rows = []
    for i in range(n_per_topic):
        for t in names:
            words = TOPICS[t].split()
            others = rng.sample([o for o in names if o != t], 2)
            texts = [" ".join(rng.sample(words, 4)) + f" note {i}"] + \
                    [" ".join(rng.sample(TOPICS[o].split(), 4)) + f" note {i}" for o in others]
            rows.append({"query_id": len(rows), "query": f"{t} {rng.choice(words)}",
                         "passages": {"is_selected": [1, 0, 0], "passage_text": texts, "url": ["", "", ""]},
                         "answers": [], "wellFormedAnswers": []})
    return rows


QUERY_PROMPT = "query: "  # the tiny sentence-transformers base's query prompt (bge's is a sentence)


def make_tiny_st_base(directory: Path, pooling: str = "cls", query_prompt: str = QUERY_PROMPT,
                      max_seq_length: int = 64) -> Path:
    """The tiny base in sentence-transformers layout, pooled and prompted like bge-small-en-v1.5: a
    Transformer at the root, `1_Pooling` (CLS), `2_Normalize`, a query prompt and a max length."""
    import json

    directory = make_tiny_base(directory)
    write = lambda rel, obj: (directory / rel).parent.mkdir(parents=True, exist_ok=True) or \
        (directory / rel).write_text(json.dumps(obj, indent=2))
    write("modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}])
    write("1_Pooling/config.json", {"word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls",
                                    "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
                                    "pooling_mode_mean_sqrt_len_tokens": False})
    (directory / "2_Normalize").mkdir(exist_ok=True)
    write("sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    write("config_sentence_transformers.json", {"prompts": {"query": query_prompt, "document": ""},
                                                "default_prompt_name": None, "similarity_fn_name": "cosine"})
    return directory
