"""Training throughput per tower through the real training path (`train.loop` + `train.objectives`):
texts/s of forward + backward + optimizer step, labelled or distillation objective.

    python bench/train.py [--towers mean gru lstm transformer] [--steps 5] [--batch-size 32]
    python bench/train.py --objective distill --batch-size 128      # teacher vectors from the cache
    python bench/train.py --device cuda                             # GPU: bf16 autocast (fp16 where unsupported)

Real MS MARCO rows from the shared data (labelled: train_sample200 + train_positives; distill: the
49k unlabelled training queries + the dev600 collection, teacher all-MiniLM-L6-v2, its vectors from
the cache: the first run encodes them). Each figure is the median over `--repeats` timed windows of
`--steps` optimizer steps, after one warm-up step, all towers in the same process.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from common import MSMARCO, print_table  # noqa: F401  (puts the repo on sys.path)

import torch  # noqa: E402

from train.config import TrainConfig  # noqa: E402
from train.loop import autocast_dtype, build_model, forward_backward, to_device  # noqa: E402
from train.objectives import build_objective  # noqa: E402
from train.optim import Optimizers  # noqa: E402
from twotowers.data import load_examples  # noqa: E402


def bench_tower(tower: str, args, examples) -> tuple[list[float], str]:
    distill = {"distill_from": "minilm", "distill_data": [str(MSMARCO / "train" / "queries.unlabelled.tsv"),
                                                         str(MSMARCO / "dev-small" / "collection.bm25top20_sample600.tsv")],
               "projection_dim": 384} if args.objective == "distill" else {}
    cfg = TrainConfig(tower=tower, batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
                      max_passage_length=args.max_passage_length, mixed_precision=args.mixed_precision,
                      no_wandb=True, no_save=True, sparse_embeddings=not args.dense_embeddings, **distill)
    device = torch.device(args.device)
    model = build_model(cfg, device)
    n = args.batch_size * (1 + args.steps * args.repeats)
    objective = build_objective(cfg, model, examples[:n]).to(device)
    optimizers = Optimizers(model, list(objective.parameters()), lr=cfg.lr, embedding_lr=None, weight_decay=cfg.weight_decay,
                            warmup_ratio=cfg.warmup_ratio, total_steps=objective.batches_per_epoch(),
                            sparse=cfg.sparse_embeddings)
    amp = autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    marks: list[tuple[float, int]] = []
    texts = 0
    for batch in objective.batches(0, 0):
        batch = to_device(batch, device)
        forward_backward(objective, model, batch, amp, scaler)
        optimizers.step(cfg.max_grad_norm, scaler)
        optimizers.zero_grad()
        texts += objective.count(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        marks.append((time.perf_counter(), texts))
        if len(marks) > args.steps * args.repeats:
            break
    rates = []
    for r in range(args.repeats):  # marks[0] ends the warm-up step
        (t0, e0), (t1, e1) = marks[r * args.steps], marks[(r + 1) * args.steps]
        rates.append((e1 - e0) / (t1 - t0))
    return rates, str(amp).replace("torch.", "") if amp else "fp32"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--towers", nargs="+", default=["mean", "gru", "lstm", "transformer"])
    ap.add_argument("--objective", choices=("labelled", "distill"), default="labelled")
    ap.add_argument("--steps", type=int, default=5, help="optimizer steps per timed window")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-passage-length", type=int, default=256)
    ap.add_argument("--num-workers", type=int, default=1)
    ap.add_argument("--dense-embeddings", action="store_true", help="dense gradients for the embedding tables")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--mixed-precision", default="auto", choices=("auto", "bf16", "fp16", "no"))
    args = ap.parse_args()
    examples = load_examples([MSMARCO / "v1.1" / "train_sample200.hf.jsonl", MSMARCO / "dev-small" / "train_positives.hf.jsonl"])
    rows = []
    for tower in args.towers:
        rates, precision = bench_tower(tower, args, examples)
        rows.append([tower, precision, statistics.median(rates), min(rates), max(rates)])
    base = rows[0][2]
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else (platform.processor() or platform.machine())
    print(f"device {args.device} ({dev}), torch {torch.__version__}, {torch.get_num_threads()} threads, {args.objective}, "
          f"batch {args.batch_size}, passages <= {args.max_passage_length} tokens, "
          f"{'dense' if args.dense_embeddings else 'sparse'} embedding updates, {args.steps} steps x {args.repeats} repeats")
    print_table(["tower", "precision", "texts/s (median)", "min", "max", f"vs {rows[0][0]}"],
                [r + [f"{r[2] / base:.2f}x"] for r in rows])


if __name__ == "__main__":
    main()
