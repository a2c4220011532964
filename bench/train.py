"""Training throughput (examples/s: query + positive + hard negatives, forward + backward + AdamW step)
per tower, through the real training path (`train.loop`: tokenised dataset, collator, DataLoader, loss).

    python bench/train.py [--towers mean gru lstm transformer] [--steps 5] [--batch-size 32]
    python bench/train.py --device cuda                # GPU: bf16 autocast (fp16 where unsupported)

Real MS MARCO training rows from the shared data; each figure is the median over `--repeats` timed
windows of `--steps` optimizer steps, after one warm-up step, all towers in the same process.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from common import MSMARCO, print_table  # noqa: F401  (puts the repo on sys.path)

import torch  # noqa: E402

from train.config import TrainConfig  # noqa: E402
from train.loop import (TrainContext, TrainState, autocast_dtype, build_model, build_train_dataloader,  # noqa: E402
                        labelled_batch_loss, setup_optimizer, train_one_epoch)
from twotowers.data import load_examples  # noqa: E402
from twotowers.losses import build_loss  # noqa: E402


def bench_tower(tower: str, args, examples) -> tuple[list[float], str]:
    cfg = TrainConfig(tower=tower, batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
                      max_passage_length=args.max_passage_length, mixed_precision=args.mixed_precision,
                      num_negatives=1, no_wandb=True, no_save=True)
    device = torch.device(args.device)
    model = build_model(cfg, device)
    n = args.batch_size * (1 + args.steps * args.repeats)
    loader, dataset = build_train_dataloader(cfg, model, examples=examples[:n])
    batches = loader.sampler.batches_per_epoch()
    optimizer, scheduler = setup_optimizer(cfg, model, batches)
    amp = autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    marks: list[tuple[float, int]] = []

    def on_step(ctx, loss, bs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        marks.append((time.perf_counter(), ctx.state.examples_seen))

    ctx = TrainContext(model, optimizer, scheduler, TrainState(), cfg, device, amp, scaler, on_step)
    loader.sampler.set_epoch(0)
    train_one_epoch(ctx, loader, labelled_batch_loss(build_loss("infonce")), batches)
    rates = []
    for r in range(args.repeats):  # marks[0] ends the warm-up step
        (t0, e0), (t1, e1) = marks[r * args.steps], marks[(r + 1) * args.steps]
        rates.append((e1 - e0) / (t1 - t0))
    return rates, str(amp).replace("torch.", "") if amp else "fp32"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--towers", nargs="+", default=["mean", "gru", "lstm", "transformer"])
    ap.add_argument("--steps", type=int, default=5, help="optimizer steps per timed window")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-passage-length", type=int, default=256)
    ap.add_argument("--num-workers", type=int, default=1)
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
    print(f"device {args.device} ({dev}), torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size} "
          f"queries + positives + 1 hard negative where the row has one, passages <= {args.max_passage_length} tokens, "
          f"{args.steps} steps x {args.repeats} repeats")
    print_table(["tower", "precision", "examples/s (median)", "min", "max", f"vs {rows[0][0]}"],
                [r + [f"{r[2] / base:.2f}x"] for r in rows])


if __name__ == "__main__":
    main()
