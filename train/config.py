"""`TrainConfig`: every training setting, one dataclass, one default each. Field names are the CLI flags
(`learning_rate` -> `--learning-rate`) and the W&B sweep parameter names, so a sweep needs no glue.

The objectives share the loop (train/objectives.py `OBJECTIVES`, `--objective`): labelled training
(`--data-files`: query, positive, hard negatives) and distillation from a teacher (`--distill-from` +
`--distill-data`, unlabelled text; with `--data-files` too and `--distill-weight` < 1, the labelled
loss is mixed in).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from twotowers import MINILM_ID
from twotowers.cli import ArgumentParser, add_dataclass_arguments, dataclass_from_args
from twotowers.losses import LOSSES
from twotowers.towers import TOWERS

from .objectives import OBJECTIVES

MIXED_PRECISION = ("auto", "bf16", "fp16", "no")
SWEEPS = ("basic", "extensive", "quick")


@dataclass
class TrainConfig:
    # -- data ----------------------------------------------------------------------------------------
    dataset: str = field(default="microsoft/ms_marco", metadata={
        "help": "Hugging Face dataset id, used when no --data-files are given (needs the network)"})
    dataset_config: str = field(default="v1.1", metadata={"help": "configuration of --dataset"})
    data_files: list[str] = field(default_factory=list, metadata={
        "help": "local labelled files: v1.1-schema JSONL/parquet rows, or query<TAB>pos<TAB>neg .tsv triples"})
    validation_files: list[str] = field(default_factory=list, metadata={
        "help": "v1.1-schema rows re-ranked after every epoch (and the retrieval test's corpus if no --test-*)"})
    test_queries: str | None = field(default=None, metadata={"help": "retrieval test: qid<TAB>query file"})
    test_qrels: str | None = field(default=None, metadata={"help": "retrieval test: TREC qrels"})
    test_collection: str | None = field(default=None, metadata={"help": "retrieval test: pid<TAB>passage corpus"})
    max_samples: int = field(default=-1, metadata={"help": "use the first N labelled examples (-1 = all)"})
    num_negatives: int = field(default=1, metadata={"help": "hard negatives per query per batch (from unselected passages / triples)"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes that pad batches (0: the main process; on a GPU, 2-4)"})
    # -- model ---------------------------------------------------------------------------------------
    tower: str = field(default="mean", metadata={"help": "tower type: {choices}", "choices": TOWERS})
    base_model: str = field(default=MINILM_ID, metadata={
        "help": "base encoder (Hub id or local dir in sentence-transformers or transformers layout); a transformer "
                "tower pools and prompts as its files say"})
    passage_base_model: str | None = field(default=None, metadata={
        "help": "another base for the passage tower (default: --base-model), e.g. BAAI/bge-small-en-v1.5 under a "
                "mean query tower"})
    projection_dim: int | None = field(default=None, metadata={
        "help": "output width; default: the tower's (256 for mean/gru/lstm, none for transformer), or the "
                "passage tower's width under --passage-tower; 0 = no projection"})
    passage_tower: str | None = field(default=None, metadata={
        "help": "a different passage tower ({choices}; default: same as --tower), e.g. transformer under a "
                "mean query tower", "choices": TOWERS})
    freeze_passage_tower: bool = field(default=False, metadata={
        "help": "train the query tower only (with distillation the frozen passage tower must be the teacher)"})
    rnn_hidden_size: int = field(default=256, metadata={"help": "GRU/LSTM hidden size per direction"})
    max_query_length: int = field(default=64, metadata={"help": "query token limit"})
    max_passage_length: int | None = field(default=None, metadata={
        "help": "passage token limit (saved with the model); default: the passage base's own (its "
                "sentence_bert_config.json: 256 for MiniLM, 512 for bge-small), else 256"})
    train_passage_length: int | None = field(default=None, metadata={
        "help": "truncate training passages to N tokens (speed); the saved model keeps --max-passage-length"})
    dropout: float = field(default=0.0, metadata={"help": "dropout inside the towers while training"})
    freeze_embeddings: bool = field(default=False, metadata={"help": "keep the token embeddings fixed"})
    init_from: str | None = field(default=None, metadata={"help": "start from a saved TwoTowers model (dir or repo)"})
    # -- optimisation --------------------------------------------------------------------------------
    objective: str | None = field(default=None, metadata={
        "help": "what is optimised: {choices}; default: distillation where --distill-from is given, else labelled",
        "choices": OBJECTIVES})
    loss: str = field(default="infonce", metadata={"help": "labelled loss: {choices}", "choices": LOSSES})
    margin: float = field(default=0.2, metadata={"help": "triplet loss margin on cosine distance"})
    scale: float = field(default=20.0, metadata={"help": "infonce: similarity scale (1 / temperature)"})
    epochs: int = field(default=1, metadata={"help": "passes over the training data"})
    batch_size: int = field(default=32, metadata={"help": "queries per batch per process"})
    learning_rate: float | None = field(default=None, metadata={
        "help": "learning rate; default: the tower's (2e-5 transformer, 1e-3 mean/gru/lstm)"})
    embedding_learning_rate: float | None = field(default=None, metadata={
        "help": "learning rate of the word-embedding tables (default: --learning-rate)"})
    sparse_embeddings: bool = field(default=True, metadata={
        "help": "word-embedding tables get sparse gradients and SparseAdam: a step touches only its batch's "
                "rows (10-50x faster for the small towers on a CPU); off under torchrun"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (dense parameters)"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of steps with linear warm-up, then cosine decay to 0"})
    accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping of the dense parameters (0 = off)"})
    max_seconds: float | None = field(default=None, metadata={
        "help": "time budget: after 20 steps the schedule shrinks to the steps that fit, so the run still anneals"})
    mixed_precision: str = field(default="auto", metadata={
        "help": "auto (bf16, else fp16, on CUDA; none on CPU), bf16, fp16 or no"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N (torchrun sets the rank's GPU)"})
    seed: int = field(default=42, metadata={"help": "random seed (data order, negatives, init)"})
    # -- distillation from a teacher -----------------------------------------------------------------
    distill_from: str | None = field(default=None, metadata={
        "help": "teacher: 'minilm' (zero-shot all-MiniLM-L6-v2), a TwoTowers dir/repo or a sentence-transformers dir"})
    distill_data: list[str] = field(default_factory=list, metadata={
        "help": "unlabelled text: qid<TAB>query files (name contains 'quer'), pid<TAB>passage collections (the "
                "corpus to index: corpus adaptation), triples, v1.1 rows"})
    distill_weight: float = field(default=1.0, metadata={
        "help": "weight of distillation against the labelled loss on --data-files (1 = distillation only)"})
    distill_cache_dir: str | None = field(default=None, metadata={
        "help": "teacher-vector cache (default $TWOTOWERS_CACHE/teacher)"})
    distill_weight_cosine: float = field(default=1.0, metadata={
        "help": "weight of 1 - cos(student, teacher) on queries and passages"})
    distill_weight_kl: float = field(default=0.2, metadata={
        "help": "weight of KL(teacher || student) over each query's candidate scores"})
    distill_weight_mse: float = field(default=0.0, metadata={"help": "weight of MSE between the score matrices"})
    distill_temperature: float = field(default=0.05, metadata={"help": "softmax temperature of the KL"})
    distill_fuse_bm25: float = field(default=0.0, metadata={
        "help": "weight of BM25 in the teacher's candidate scores for the KL (score fusion over each query's "
                "candidates, as hybrid search does): 0 = the teacher's cosines alone"})
    # The defaults are the levers that helped on dev600's validation half (docs/results.md): more and
    # harder candidates, and query-like windows of the corpus.
    distill_candidates: int = field(default=4, metadata={
        "help": "passages drawn per query per step from the teacher's top --distill-mine-k (plus as many random)"})
    distill_mine_k: int = field(default=50, metadata={"help": "teacher top-k each query's candidates come from"})
    distill_passage_steps: bool = field(default=True, metadata={
        "help": "also steps of passages alone, covering those no query's candidates reach"})
    distill_query_windows: int = field(default=2, metadata={
        "help": "per passage, this many random 1-6-word windows of it join the unlabelled queries: query-like "
                "texts of the corpus, their teacher vectors the targets"})
    fit_passage_tower: bool = field(default=False, metadata={
        "help": "a mean passage tower is not trained by gradient: the query tower learns against the teacher's "
                "passage vectors, then the passage tower's table is fitted to them in closed form (ridge least "
                "squares from the query tower's table; train/passage_fit.py)"})
    fit_ridge: float = field(default=1e-3, metadata={"help": "--fit-passage-tower: the ridge (larger: closer to the "
                                                             "query tower's table, looser fit)"})
    distill_passages_as_queries: bool = field(default=True, metadata={
        "help": "with a frozen passage tower: the passages also train the query tower (their teacher vectors)"})
    # -- checkpoints and output ----------------------------------------------------------------------
    output_dir: str | None = field(default=None, metadata={
        "help": "where the model and checkpoints go (default runs/<tower>-<objective>; runs/sweep-<run id> in a run "
                "that `wandb agent` started)"})
    resume: bool = field(default=False, metadata={"help": "continue from the checkpoint in --output-dir"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace what --output-dir holds (a saved model, a checkpoint) and start afresh"})
    save_steps: int = field(default=200, metadata={"help": "mid-epoch checkpoint every N optimizer steps (0 = epoch ends only)"})
    keep_checkpoint: bool = field(default=False, metadata={
        "help": "keep --output-dir/checkpoint/ (the weights again plus the optimizer's moments) after the run "
                "finishes; by default a finished run removes it (a run cut short by --max-seconds keeps it, to --resume)"})
    no_save: bool = field(default=False, metadata={"help": "write no model or checkpoints"})
    # -- logging and evaluation ----------------------------------------------------------------------
    no_wandb: bool = field(default=False, metadata={"help": "do not log to Weights & Biases"})
    wandb_project: str = field(default="twotowers", metadata={"help": "W&B project"})
    wandb_entity: str | None = field(default=None, metadata={"help": "W&B entity (team or user)"})
    log_steps: int = field(default=10, metadata={
        "help": "update loss / lr / throughput every N optimizer steps (a line each, and at the last step, when "
                "stderr is not a terminal; else a progress bar)"})
    no_comprehensive_test: bool = field(default=False, metadata={"help": "skip the final retrieval test"})
    eval_batch_size: int = field(default=64, metadata={"help": "passage batch size for evaluation encoding"})
    sweep: str | None = field(default=None, metadata={"help": f"run a Bayesian W&B sweep: {', '.join(SWEEPS)}"})
    sweep_count: int = field(default=10, metadata={"help": "runs per sweep agent"})
    push_to_hub: str | None = field(default=None, metadata={"help": "after training, push the model to this Hub repo (hub/push.py)"})

    def __post_init__(self):
        for name, allowed in (("tower", TOWERS), ("loss", LOSSES), ("mixed_precision", MIXED_PRECISION)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.passage_tower is not None and self.passage_tower not in TOWERS:
            raise ValueError(f"--passage-tower must be one of {', '.join(TOWERS)}, got {self.passage_tower!r}")
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise ValueError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.objective == "distillation" and not self.distill_from:
            raise ValueError("--objective distillation needs --distill-from TEACHER and --distill-data FILE [FILE ...]")
        if self.sweep is not None and self.sweep not in SWEEPS:
            raise ValueError(f"--sweep must be one of {', '.join(SWEEPS)}, got {self.sweep!r}")
        for name in ("epochs", "batch_size", "accumulation_steps", "log_steps", "distill_mine_k", "max_query_length",
                     "max_passage_length", "rnn_hidden_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("num_negatives", "num_workers", "save_steps", "distill_candidates", "warmup_ratio", "max_grad_norm",
                     "distill_query_windows"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.distill_fuse_bm25 <= 1:
            raise ValueError(f"--distill-fuse-bm25 must be in [0, 1], got {self.distill_fuse_bm25}")
        if not 0 < self.distill_weight <= 1:
            raise ValueError(f"--distill-weight must be in (0, 1], got {self.distill_weight}")
        if self.distill_from and not self.distill_data:
            raise ValueError("--distill-from needs --distill-data FILE [FILE ...] (unlabelled queries and passages)")
        if self.distill_data and not self.distill_from:
            raise ValueError("--distill-data needs --distill-from TEACHER (e.g. minilm)")
        if self.distill_weight < 1 and not self.data_files:
            raise ValueError("--distill-weight < 1 mixes in the labelled loss: give --data-files too")
        if self.fit_passage_tower:
            if not self.distill_from:
                raise ValueError("--fit-passage-tower fits the passage tower to a teacher's vectors: give --distill-from")
            if (self.passage_tower or self.tower) != "mean" or self.passage_base_model not in (None, self.base_model):
                raise ValueError("--fit-passage-tower fits a mean passage tower on the query tower's base: use --tower "
                                 "mean without --passage-tower / --passage-base-model")
            if self.fit_ridge <= 0:
                raise ValueError(f"--fit-ridge must be > 0, got {self.fit_ridge}")
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --output-dir, --overwrite replaces it: give one")

    # Defaults that depend on other settings: one rule each (the towers' from the registry in twotowers/towers.py).
    @property
    def distilling(self) -> bool:
        return bool(self.distill_from)

    @property
    def objective_name(self) -> str:
        """The objective this run trains: --objective, else distillation where a teacher is named, else labelled."""
        return self.objective or ("distillation" if self.distilling else "labelled")

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else TOWERS[self.tower].learning_rate

    def widths(self, passage_hidden: int) -> tuple[int | None, int | None]:
        """(query projection, passage projection) widths, None = no projection. The query side: --projection-dim
        (0 = none), else its tower's default, or under another --passage-tower that side's width (its tower's
        default, else `passage_hidden`, its base's hidden size), so the two sides' vectors meet."""
        if self.passage_tower is None or self.passage_tower == self.tower:
            return (TOWERS[self.tower].projection_dim if self.projection_dim is None else self.projection_dim or None), None
        passage = TOWERS[self.passage_tower].projection_dim
        return (passage or passage_hidden if self.projection_dim is None else self.projection_dim or None), passage

    @property
    def out_dir(self) -> str:
        if self.output_dir:
            return self.output_dir
        if os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):  # a run `wandb agent` started
            return f"runs/sweep-{os.environ['WANDB_RUN_ID']}"
        short = {"labelled": self.loss, "distillation": "distill"}.get(self.objective_name, self.objective_name)
        return f"runs/{self.tower}-{short}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_parser() -> ArgumentParser:
    """`python -m train`'s flags: one per TrainConfig field."""
    ap = ArgumentParser(prog="python -m train", description="Train two-tower retrieval models on MS MARCO: "
                        "labelled pairs, distillation from a teacher, or both mixed.")
    add_dataclass_arguments(ap, TrainConfig)
    return ap


def parse_config(argv=None) -> TrainConfig:
    """Command-line arguments -> a validated config (a bad value exits with the flag's name)."""
    ap = build_parser()
    return dataclass_from_args(TrainConfig, ap.parse_args(argv), ap)
