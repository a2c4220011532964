"""`TrainConfig`: every training setting, one dataclass. Field names are the CLI flags
(`learning_rate` -> `--learning-rate`) and the W&B sweep parameter names, so a sweep needs no glue.
"""

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field

from twotowers import MINILM_ID, TOWER_TYPES
from twotowers.losses import LOSSES

MIXED_PRECISION = ("auto", "bf16", "fp16", "no")
SWEEPS = ("basic", "extensive", "quick")


@dataclass
class TrainConfig:
    # -- data ----------------------------------------------------------------------------------------
    dataset: str = field(default="microsoft/ms_marco", metadata={
        "help": "Hugging Face dataset id, used when no --data-files are given (needs the network)"})
    dataset_config: str = field(default="v1.1", metadata={"help": "configuration of --dataset"})
    data_files: list[str] = field(default_factory=list, metadata={
        "help": "local training files: v1.1-schema JSONL/parquet rows, or query<TAB>pos<TAB>neg .tsv triples"})
    validation_files: list[str] = field(default_factory=list, metadata={
        "help": "v1.1-schema rows re-ranked after every epoch (and the retrieval test's corpus if no --test-*)"})
    test_queries: str | None = field(default=None, metadata={"help": "retrieval test: qid<TAB>query file"})
    test_qrels: str | None = field(default=None, metadata={"help": "retrieval test: TREC qrels"})
    test_collection: str | None = field(default=None, metadata={"help": "retrieval test: pid<TAB>passage corpus"})
    max_samples: int = field(default=-1, metadata={"help": "use the first N training examples (-1 = all)"})
    num_negatives: int = field(default=1, metadata={"help": "hard negatives per query per batch (from unselected passages / triples)"})
    num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes"})
    # -- model ---------------------------------------------------------------------------------------
    tower: str = field(default="mean", metadata={"help": f"tower type: {', '.join(TOWER_TYPES)}"})
    base_model: str = field(default=MINILM_ID, metadata={"help": "base encoder (Hub id or local dir)"})
    projection_dim: int | None = field(default=None, metadata={
        "help": "output width; default 256 for mean/gru/lstm, none for transformer; 0 = no projection"})
    passage_tower: str | None = field(default=None, metadata={
        "help": f"a different passage tower ({', '.join(TOWER_TYPES)}; default: same as --tower), e.g. transformer "
                "under a mean query tower; its width must match (--projection-dim 384 for MiniLM)"})
    freeze_passage_tower: bool = field(default=False, metadata={
        "help": "train the query tower only (with distillation the frozen passage tower must be the teacher)"})
    max_query_length: int = field(default=64, metadata={"help": "query token limit"})
    max_passage_length: int = field(default=256, metadata={"help": "passage token limit (saved with the model)"})
    train_passage_length: int | None = field(default=None, metadata={
        "help": "truncate training passages to N tokens (speed); the saved model keeps --max-passage-length"})
    dropout: float = field(default=0.0, metadata={"help": "dropout inside the towers while training"})
    freeze_embeddings: bool = field(default=False, metadata={"help": "keep the token embeddings fixed"})
    init_from: str | None = field(default=None, metadata={"help": "start from a saved TwoTowers model (dir or repo)"})
    # -- optimisation --------------------------------------------------------------------------------
    loss: str = field(default="infonce", metadata={"help": f"loss: {', '.join(LOSSES)} (in-batch negatives)"})
    margin: float = field(default=0.2, metadata={"help": "triplet loss margin on cosine distance"})
    scale: float = field(default=20.0, metadata={"help": "infonce: similarity scale (1 / temperature)"})
    epochs: int = field(default=1, metadata={"help": "passes over the training data"})
    batch_size: int = field(default=32, metadata={"help": "queries per batch per process"})
    learning_rate: float | None = field(default=None, metadata={
        "help": "AdamW learning rate; default 2e-5 for transformer, 1e-3 for mean/gru/lstm"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps with linear warm-up"})
    accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0 = off)"})
    mixed_precision: str = field(default="auto", metadata={
        "help": "auto (bf16, else fp16, on CUDA; none on CPU), bf16, fp16 or no"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N (torchrun sets the rank's GPU)"})
    seed: int = field(default=42, metadata={"help": "random seed (data order, negatives, init)"})
    # -- checkpoints and output ----------------------------------------------------------------------
    output_dir: str | None = field(default=None, metadata={"help": "where the model and checkpoints go (default runs/<tower>-<loss>)"})
    resume: bool = field(default=False, metadata={"help": "continue from the checkpoint in --output-dir"})
    overwrite: bool = field(default=False, metadata={"help": "start afresh even if --output-dir holds a checkpoint"})
    save_steps: int = field(default=200, metadata={"help": "mid-epoch checkpoint every N optimizer steps (0 = epoch ends only)"})
    no_save: bool = field(default=False, metadata={"help": "write no model or checkpoints"})
    # -- logging and evaluation ----------------------------------------------------------------------
    no_wandb: bool = field(default=False, metadata={"help": "do not log to Weights & Biases"})
    wandb_project: str = field(default="twotowers", metadata={"help": "W&B project"})
    wandb_entity: str | None = field(default=None, metadata={"help": "W&B entity (team or user)"})
    log_steps: int = field(default=10, metadata={"help": "log loss / lr / throughput every N optimizer steps"})
    no_comprehensive_test: bool = field(default=False, metadata={"help": "skip the final retrieval test"})
    eval_batch_size: int = field(default=64, metadata={"help": "passage batch size for validation encoding"})
    sweep: str | None = field(default=None, metadata={"help": f"run a Bayesian W&B sweep: {', '.join(SWEEPS)}"})
    sweep_count: int = field(default=10, metadata={"help": "runs per sweep agent"})
    push_to_hub: str | None = field(default=None, metadata={"help": "after training, push the model to this Hub repo (hub/push.py)"})
    # -- teacher distillation (see train/distill.py) -------------------------------------------------
    distill_from: str | None = field(default=None, metadata={
        "help": "teacher distillation, see train/distill.py: teacher model (TwoTowers dir or sentence-transformers id)"})
    distill_data: list[str] = field(default_factory=list, metadata={
        "help": "teacher distillation, see train/distill.py: unlabelled text files"})
    distill_weight: float = field(default=1.0, metadata={
        "help": "teacher distillation, see train/distill.py: weight of the distillation loss"})
    # -- distill_* fields added by train/distill.py's owner go below this line ----------------------
    distill_cache_dir: str | None = field(default=None, metadata={
        "help": "teacher distillation: teacher-vector cache dir (default ~/.cache/twotowers/teacher)"})
    distill_weight_cosine: float = field(default=1.0, metadata={
        "help": "teacher distillation: weight of 1 - cos(student, teacher) on queries and passages"})
    distill_weight_kl: float = field(default=0.2, metadata={
        "help": "teacher distillation: weight of KL(teacher || student) over each query's candidate scores"})
    distill_weight_mse: float = field(default=0.0, metadata={
        "help": "teacher distillation: weight of MSE between student and teacher score matrices"})
    distill_temperature: float = field(default=0.05, metadata={"help": "teacher distillation: softmax temperature of the KL"})
    distill_candidates: int = field(default=1, metadata={
        "help": "teacher distillation: teacher-mined top-20 passages drawn per query per step"})
    distill_embedding_lr: float | None = field(default=None, metadata={
        "help": "teacher distillation: learning rate of the word embeddings (default: --learning-rate)"})
    distill_max_seconds: float | None = field(default=None, metadata={"help": "teacher distillation: stop after this long"})

    def __post_init__(self):
        if self.tower not in TOWER_TYPES:
            raise ValueError(f"--tower must be one of {TOWER_TYPES}, got {self.tower!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {LOSSES}, got {self.loss!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"--mixed-precision must be one of {MIXED_PRECISION}")
        if self.sweep is not None and self.sweep not in SWEEPS:
            raise ValueError(f"--sweep must be one of {SWEEPS}, got {self.sweep!r}")
        for name in ("epochs", "batch_size", "accumulation_steps", "log_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.num_negatives < 0 or self.num_workers < 0 or self.save_steps < 0:
            raise ValueError("--num-negatives, --num-workers and --save-steps must be >= 0")

    # Resolved defaults that depend on the tower.
    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-5 if self.tower == "transformer" else 1e-3

    @property
    def projection(self) -> int | None:
        if self.projection_dim is None:
            return None if self.tower == "transformer" else 256
        return self.projection_dim or None

    @property
    def out_dir(self) -> str:
        return self.output_dir or f"runs/{self.tower}-{self.loss}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _str2bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "y"):
        return True
    if v.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {v!r}")


def _none_or(typ):
    def parse(v: str):
        return None if v.lower() in ("none", "null", "") else typ(v)

    parse.__name__ = typ.__name__
    return parse


def build_parser(cls=TrainConfig) -> argparse.ArgumentParser:
    """argparse from the dataclass: `--field-name`, help from metadata, types from annotations."""
    ap = argparse.ArgumentParser(prog="python -m train", description="Train two-tower retrieval models on MS MARCO.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ, flag = hints[f.name], "--" + f.name.replace("_", "-")
        kwargs = {"help": f.metadata.get("help", ""), "dest": f.name}
        args = typing.get_args(typ)
        if typ is bool:  # --flag, or --flag=true/false as W&B sweep agents pass it
            kwargs.update(nargs="?", const=True, default=f.default, type=_str2bool)
        elif typing.get_origin(typ) is list:
            kwargs.update(nargs="+", default=[], type=args[0])
        elif type(None) in args:  # X | None
            inner = next(a for a in args if a is not type(None))
            kwargs.update(default=f.default, type=_none_or(inner))
        else:
            kwargs.update(default=f.default, type=typ)
        ap.add_argument(flag, **kwargs)
    return ap


def parse_config(argv=None, cls=TrainConfig) -> TrainConfig:
    """Command-line arguments -> a validated config (a bad value exits with the flag's name)."""
    ap = build_parser(cls)
    ns = ap.parse_args(argv)
    try:
        return cls(**vars(ns))
    except ValueError as e:
        ap.error(str(e))
