"""`python -m train` end to end on tiny synthetic data and a tiny base model: CLI with W&B offline,
data errors before training, NaN stop, SIGKILL + --resume (labelled and distillation), what an output
directory held is never replaced without --overwrite, and two-process DDP (gloo)."""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tinymodel import make_tiny_base, synthetic_rows
from train.__main__ import train as main
from train.config import TrainConfig, parse_config
from train.loop import run

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false",
       "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    base = make_tiny_base(d / "base")
    train = d / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(25, seed=1)))  # 200 rows
    val = d / "val.jsonl"
    val.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(1, seed=2)))
    return {"base": str(base), "train": str(train), "val": str(val), "dir": d}


def args(data, out, *extra):
    return ["--tower", "mean", "--base-model", data["base"], "--data-files", data["train"], "--batch-size", "8",
            "--num-workers", "0", "--output-dir", str(out), "--log-steps", "5", "--seed", "3", *extra]


@pytest.mark.slow  # a fresh process (python -m train)
def test_cli_end_to_end_with_wandb_offline(data, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "train", *args(data, out, "--validation-files", data["val"], "--epochs", "2",
                                                                "--max-samples", "64")],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 2 * 8  # 64 examples / batch 8, two epochs
    for key in ("val/ndcg@10", "val/random_ndcg@10", "test/ndcg@10", "test/recall@100"):
        assert 0.0 <= metrics[key] <= 1.0
    log = proc.stderr  # the run's log lines
    assert "200 rows -> 200 examples" in log and "texts/s" in log
    # stderr is not a terminal here: one progress line per --log-steps (5) and at the last step
    steps = [line.split()[1] for line in log.splitlines() if line.startswith("step ")]
    assert steps == ["5/16", "10/16", "15/16", "16/16"], log[-2000:]
    assert all(w in log for w in ("steps/s", "elapsed, ETA ", "loss ")) and "\r" not in proc.stdout + log
    assert not (out / "checkpoint").exists() and "--keep-checkpoint keeps it" in log  # finished: removed
    from twotowers import TwoTowers

    model = TwoTowers.from_pretrained(out)  # the final model loads as a normal saved model
    assert model.encode_queries(["piano keys"]).shape == (1, 256)
    assert list(out.glob("wandb/offline-run-*")), "WANDB_MODE=offline should leave an offline run"


def test_unparsable_file_stops_before_training(data, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(Path(data["train"]).read_text().splitlines()[0] + "\n{oops\n")
    from twotowers.textfiles import DataFormatError

    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2"):
        run(parse_config(args(data, tmp_path / "o", "--no-wandb") + ["--data-files", str(bad)]))
    assert "tokenised" not in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_training_data_of_blank_queries_is_one_error_line(data, tmp_path, capsys):
    from conftest import one_error_line, run_cli

    blank = tmp_path / "blank.jsonl"
    rows = synthetic_rows(1)
    blank.write_text("".join(json.dumps({**r, "query": "\u200b\u200d"}) + "\n" for r in rows))
    status, _, err = run_cli(lambda argv: main(parse_config(argv)),
                             args(data, tmp_path / "o", "--no-wandb") + ["--data-files", str(blank)], capsys)
    assert status == 1 and "no training examples in" in one_error_line(err)
    assert f"{len(rows)} malformed rows (query with no letters or digits: {len(rows)})" in err
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_nan_loss_stops_with_clear_message(data, tmp_path):
    from twotowers import TwoTowers

    broken = TwoTowers(tower="mean", base_model=data["base"])
    with torch.no_grad():
        broken.query_tower.projection.weight.fill_(float("nan"))
    broken.save_pretrained(tmp_path / "nan")
    cfg = parse_config(args(data, tmp_path / "o", "--no-wandb", "--init-from", str(tmp_path / "nan")))
    with pytest.raises(ValueError, match=r"loss is nan at epoch 1, batch 1"):
        main(cfg)


def _state(out: Path):
    for name in ("checkpoint", "checkpoint.old"):
        f = out / name / "trainer_state.json"
        if f.is_file():
            try:
                return json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                return None
    return None


@pytest.mark.slow  # fresh processes, one killed
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(data, tmp_path):
    extra = ("--no-wandb", "--epochs", "2", "--batch-size", "4", "--max-samples", "96", "--save-steps", "4",
             "--no-comprehensive-test")
    full = run(parse_config(args(data, tmp_path / "full", *extra)))
    steps = 2 * math.ceil(96 / 4)
    assert full["global_step"] == steps

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "train", *args(data, out, *extra)], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        s = _state(out)
        if s and s["global_step"] >= 4:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"run was not killed mid-way: {proc.stderr.read()[-2000:]}"
    killed_at = _state(out)
    assert killed_at is not None and 0 < killed_at["global_step"] < steps
    assert not (out / "metrics.json").exists()

    with pytest.raises(FileExistsError, match="--resume"):  # a plain rerun would clobber the checkpoint
        run(parse_config(args(data, out, *extra)))
    with pytest.raises(ValueError, match=r"--projection-dim None \(now 128\)"):  # other settings: named, refused
        run(parse_config(args(data, out, *extra, "--resume", "--projection-dim", "128")))
    resumed = run(parse_config(args(data, out, *extra, "--resume")))
    assert resumed["global_step"] == full["global_step"]
    assert resumed["texts_seen"] == full["texts_seen"]
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(out / "model.safetensors")
    for k in a:  # same data order, optimizer and schedule: the same weights
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # two fresh processes (torchrun)
def test_two_process_ddp_with_gloo(data, tmp_path):
    out = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
                           "-m", "train", *args(data, out, "--no-wandb", "--device", "cpu", "--max-samples", "48",
                                             "--no-comprehensive-test")],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == math.ceil(48 / 2 / 8)  # each process takes half of every epoch
    assert metrics["texts_seen"] == 48
    assert "2 process(es)" in proc.stderr and proc.stderr.count("2 process(es)") == 1  # rank 0 alone logs


def test_progress_bar_on_a_terminal_and_lines_elsewhere():
    import io

    from train.checkpoint import TrainState
    from train.progress import Progress

    term = io.StringIO()
    bar = Progress(10, batches_per_epoch=7, epochs=1, total=7, stream=term, bar=True)
    lines = io.StringIO()
    plain = Progress(10, batches_per_epoch=7, epochs=1, total=7, stream=lines)  # StringIO is not a tty: lines
    assert plain.bar is None
    for step in range(1, 8):  # a 7-step run with --log-steps 10 still reports, at its last step
        state = TrainState(global_step=step, batch_in_epoch=step, planned_steps=7)
        for p in (bar, plain):
            p.micro_batch(0.5, 32)
            p.step(state, 1e-3, 7)
    bar.close()
    shown = term.getvalue().split("\r")[-1]
    assert "7/7" in shown and "step/s" in shown and "loss=0.5000" in shown and "lr=1.00e-03" in shown
    assert "<00:00" in shown  # elapsed < remaining (the ETA)
    assert lines.getvalue() == ""  # lines go to the log (logging), not the bar's stream


def test_help_shows_every_default():
    from train.config import build_parser

    text = " ".join(build_parser().format_help().split())
    for flag, default in (("--batch-size BATCH_SIZE", "(default: 32)"), ("--epochs EPOCHS", "(default: 1)"),
                          ("--keep-checkpoint [KEEP_CHECKPOINT]", "(default: false)"), ("--tower TOWER", "(default: mean)")):
        after = text.split(flag + " ", 2)[-1]  # the flag's help entry (after its usage mention)
        assert default in after[:400], (flag, after[:400])
    assert "learning rate; default: the tower's" in text  # a default the help names itself is not repeated


def test_a_finished_run_removes_its_checkpoint_unless_kept(data, tmp_path):
    extra = ("--no-wandb", "--max-samples", "16", "--no-comprehensive-test", "--save-steps", "1")
    run(parse_config(args(data, tmp_path / "gone", *extra)))
    assert (tmp_path / "gone" / "model.safetensors").is_file() and not (tmp_path / "gone" / "checkpoint").exists()
    run(parse_config(args(data, tmp_path / "kept", *extra, "--keep-checkpoint")))
    assert (tmp_path / "kept" / "checkpoint" / "optimizer.pt").is_file()


def test_config_flags_are_field_names():
    cfg = parse_config(["--learning-rate", "3e-4", "--no-wandb", "--data-files", "a.jsonl", "b.tsv",
                        "--projection-dim", "0", "--resume=false"])
    assert cfg.learning_rate == 3e-4 and cfg.no_wandb and cfg.data_files == ["a.jsonl", "b.tsv"]
    assert cfg.widths(384) == (None, None) and cfg.resume is False
    assert TrainConfig(tower="gru").widths(384) == (256, None) and TrainConfig(tower="transformer").lr == 2e-5
    assert TrainConfig(tower="mean", passage_tower="transformer").widths(384) == (384, None)  # the sides meet
    assert TrainConfig(tower="mean", passage_tower="gru", projection_dim=128).widths(384) == (128, 256)
    assert TrainConfig(tower="mean").lr == 1e-3 and TrainConfig(tower="mean", distill_from="minilm",
                                                                distill_data=["q.tsv"]).lr == 1e-3  # one default
    assert parse_config(["--no-sparse-embeddings"]).sparse_embeddings is False
    with pytest.raises(SystemExit):
        parse_config(["--tower", "cnn"])


@pytest.mark.parametrize("name", ["quick", "basic", "extensive"])
def test_sweep_yaml_runs_under_the_wandb_agent_and_in_process(name):
    """`wandb sweep X.yaml` + `wandb agent`: every trial becomes the YAML's command with the agent's own
    formatting (wandb's create_sweep_command_args), which `python -m train` parses into those values;
    `python -m train --sweep X` builds the same search space with this command line's flags fixed."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    from train.sweep import field_name, load_sweep, sweep_config

    spec = load_sweep(name)
    assert spec["metric"] == {"name": "test/ndcg@10", "goal": "maximize"} and spec["program"]
    assert "early_terminate" not in spec  # test/ndcg@10 is logged once, at the end of a run
    choices = {p: d["values"] if "values" in d else [d["value"]] if "value" in d else [d["min"], d["max"]]
               for p, d in spec["parameters"].items()}
    for i in range(max(map(len, choices.values()))):  # each listed value and each end of each range
        trial = {p: {"value": v[i % len(v)]} for p, v in choices.items()}
        macros = {**create_sweep_command_args({"args": trial}), "env": [], "interpreter": ["python"]}
        argv = [a for c in create_sweep_command(list(spec["command"]))
                for a in (macros[c[2:-1]] if c.startswith("${") else [c])]
        assert argv[:3] == ["python", "-m", "train"], argv
        cfg = parse_config(argv[3:])
        for p, d in trial.items():
            assert getattr(cfg, field_name(p)) == d["value"], (p, argv)
        # the swept recipe reads every swept parameter: labelled training with the default loss
        assert not cfg.distilling and cfg.loss == "infonce" and "margin" not in trial
    sc = sweep_config(TrainConfig(sweep=name, data_files=["x.jsonl"]))
    assert sc["parameters"]["data-files"] == {"value": ["x.jsonl"]} and "command" not in sc
    assert {field_name(p) for p in sc["parameters"]} <= {f.name for f in dataclasses.fields(TrainConfig)}


def test_a_run_the_wandb_agent_starts_saves_to_its_own_directory(monkeypatch):
    assert TrainConfig().out_dir == "runs/mean-infonce"
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    monkeypatch.setenv("WANDB_RUN_ID", "r9")
    assert TrainConfig().out_dir == "runs/sweep-r9" and TrainConfig(output_dir="mine").out_dir == "mine"


def _kill_after(out: Path, argv: list[str], step: int) -> dict:
    """Start `python -m train argv`, SIGKILL it once a checkpoint past `step` exists -> that state."""
    proc = subprocess.Popen([sys.executable, "-m", "train", *argv], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        s = _state(out)
        if s and s["global_step"] >= step:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"run was not killed mid-way: {proc.stderr.read()[-2000:]}"
    return _state(out)


@pytest.mark.slow  # fresh processes, one killed
def test_sigkill_mid_distillation_then_resume_matches_uninterrupted_run(data, tmp_path):
    from twotowers import TwoTowers

    TwoTowers(tower="transformer", projection_dim=None, base_model=data["base"]).save_pretrained(tmp_path / "teacher")
    rows = [json.loads(line) for line in Path(data["train"]).read_text().splitlines()]
    (tmp_path / "queries.tsv").write_text("".join(f"{i}\t{r['query']} {i}\n" for i, r in enumerate(rows)))
    passages = sorted({t for r in rows for t in r["passages"]["passage_text"]})
    (tmp_path / "collection.tsv").write_text("".join(f"p{i}\t{t}\n" for i, t in enumerate(passages)))

    def argv(out, *more):
        return ["--distill-from", str(tmp_path / "teacher"), "--distill-data", str(tmp_path / "queries.tsv"),
                str(tmp_path / "collection.tsv"), "--distill-cache-dir", str(tmp_path / "cache"), "--tower", "mean",
                "--base-model", data["base"], "--projection-dim", "32", "--batch-size", "16", "--epochs", "2",
                "--num-workers", "0", "--save-steps", "3", "--no-wandb", "--no-comprehensive-test", "--seed", "5",
                "--output-dir", str(out), *more]

    full = run(parse_config(argv(tmp_path / "full")))
    out = tmp_path / "killed"
    killed_at = _kill_after(out, argv(out), 3)
    assert killed_at is not None and 0 < killed_at["global_step"] < full["global_step"]
    resumed = run(parse_config(argv(out, "--resume")))
    assert resumed["global_step"] == full["global_step"] and resumed["texts_seen"] == full["texts_seen"]
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(out / "model.safetensors")
    for k in a:  # the same batches from (seed, epoch, batch), optimizers and schedule: the same weights
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_an_output_dir_holding_another_model_is_not_replaced(data, tmp_path, capsys):
    from conftest import one_error_line

    from twotowers import TwoTowers
    from twotowers.cli import run_main

    theirs = tmp_path / "their-model"
    TwoTowers(tower="mean", projection_dim=16, base_model=data["base"]).save_pretrained(theirs)
    before = (theirs / "model.safetensors").read_bytes()
    status = run_main(lambda: main(parse_config(args(data, theirs, "--no-wandb", "--max-samples", "16"))))
    assert status == 1 and "already holds a saved model: pass --overwrite" in one_error_line(capsys.readouterr().err)
    with pytest.raises(FileExistsError, match="no checkpoint to resume"):
        run(parse_config(args(data, theirs, "--no-wandb", "--max-samples", "16", "--resume")))
    assert (theirs / "model.safetensors").read_bytes() == before
    run(parse_config(args(data, theirs, "--no-wandb", "--max-samples", "16", "--overwrite", "--no-comprehensive-test")))
    assert (theirs / "model.safetensors").read_bytes() != before  # replaced only when asked


def cli(data, out, *extra):
    return lambda argv: main(parse_config(argv)), args(data, out, "--no-wandb", "--max-samples", "16",
                                                        "--no-comprehensive-test", *extra)


def test_an_unwritable_output_dir_is_refused_before_training(data, tmp_path, capsys):
    from conftest import one_error_line, run_cli

    (tmp_path / "a-file").write_text("not a directory")
    status, out, err = run_cli(*cli(data, tmp_path / "a-file" / "run"), capsys)
    assert status == 1 and one_error_line(err) == (f"error: cannot write the training run's --output-dir {tmp_path}/a-file/run: "
                                                   f"{tmp_path}/a-file is a file, not a directory")
    assert "training data" not in out  # refused before reading data or building anything


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_last_one(data, tmp_path, capsys, monkeypatch):
    from conftest import one_error_line, run_cli

    import train.checkpoint as checkpoint

    real, calls = torch.save, []

    def save(obj, path, *a, **k):  # the second checkpoint finds the disk full
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"PK")
            raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file "
                               "data/0: file write failed")
        return real(obj, path, *a, **k)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    monkeypatch.setattr("twotowers.writing.free_bytes", lambda path: 0)
    out = tmp_path / "run"
    status, _, err = run_cli(*cli(data, out, "--batch-size", "4", "--save-steps", "2"), capsys)
    line = one_error_line(err)
    assert status == 1 and line.startswith(f"error: disk full: could not write {out}/checkpoint.tmp/optimizer.pt (0 bytes free")
    assert f"the last complete checkpoint ({out}/checkpoint) is kept: free space, then --resume" in line
    assert checkpoint.find_checkpoint(out) == out / "checkpoint" and not (out / "checkpoint.tmp").exists()
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["global_step"] == 2


def test_a_failed_push_to_hub_is_exit_status_1_naming_the_saved_model(data, tmp_path, capsys):
    from conftest import one_error_line, run_cli

    out = tmp_path / "run"
    status, _, err = run_cli(*cli(data, out, "--push-to-hub", "me/tiny"), capsys)  # HF_HUB_OFFLINE=1 in tests
    line = one_error_line(err)
    assert status == 1 and line.startswith("error: push to the Hub failed: HF_HUB_OFFLINE is set")
    assert f"the trained model is saved in {out}: push it with `python -m hub push --model {out} --repo-id me/tiny`" in line
    assert (out / "model.safetensors").is_file()


def test_a_cut_train_config_json_is_one_line_naming_it(data, tmp_path, capsys):
    from conftest import one_error_line, run_cli

    out = tmp_path / "run"
    run(parse_config(cli(data, out, "--batch-size", "4", "--save-steps", "2", "--max-seconds", "0.001")[1]))
    saved = out / "checkpoint" / "train_config.json"
    saved.write_text(saved.read_text()[:50])
    status, _, err = run_cli(*cli(data, out, "--batch-size", "4", "--save-steps", "2", "--resume"), capsys)
    assert status == 1 and f"{saved} is not valid JSON" in one_error_line(err)


@pytest.mark.slow  # a second process holds the lock
def test_a_second_run_into_the_same_output_dir_is_refused_at_once(data, tmp_path, capsys):
    from conftest import one_error_line, run_cli
    from test_index_save import hold_lock

    out = tmp_path / "run"
    holder = hold_lock(out)  # another process writing there, as a running training run does
    try:
        status, stdout, err = run_cli(*cli(data, out), capsys)
        assert status == 1 and f"another process (pid {holder.pid}) is writing the training run's --output-dir {out}" \
            in one_error_line(err)
        assert "training data" not in stdout
    finally:
        holder.kill()
        holder.wait()
