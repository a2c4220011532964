"""`python -m hub`: publish model + index to the Hub, and deploy the Gradio Space.

    python -m hub push --model DIR --index DIR --repo-id OWNER/NAME [--metrics EVAL.json ...]
                       [--private] [--revision BRANCH] [--space-id OWNER/SPACE] [--dry-run --out DIR]
    python -m hub deploy-space --space-id OWNER/SPACE --model-repo OWNER/NAME [--model-revision COMMIT]
                               [--hardware cpu-upgrade] [--private] [--dry-run --out DIR [--model-tree PUSH_DRY_RUN_DIR]]

The token comes from HF_TOKEN or `hf auth login`; it is never printed. Any failure is one line on
stderr and exit code 1 (2 for bad arguments).
"""

from __future__ import annotations

import sys
from pathlib import Path

from twotowers.cli import ArgumentParser, run_main

from .connect import PublishError, explain


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m hub", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    push = sub.add_parser("push", help="upload model + index + model card in one commit")
    push.add_argument("--model", required=True, help="directory written by TwoTowers.save_pretrained")
    push.add_argument("--index", help="directory written by PassageIndex.save (uploaded under index/)")
    push.add_argument("--repo-id", required=True, help="OWNER/NAME of the model repo (created if needed)")
    push.add_argument("--metrics", nargs="+", default=[], metavar="JSON",
                      help="evaluation JSON files (python -m twotowers.evaluate ... --json OUT) for the card")
    push.add_argument("--train-config", metavar="JSON", help="the run's config as JSON, shown in the card")
    push.add_argument("--space-id", help="OWNER/SPACE named in the card's gradio_client example")
    push.add_argument("--example-queries", metavar="FILE",
                      help="qid<TAB>query (or one query a line) file: its first 12 become examples.json, the "
                           "example queries the Space shows")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to commit to (created if needed; default main)")
    push.add_argument("--dry-run", action="store_true", help="write the tree to --out; no network")
    push.add_argument("--out", help="where --dry-run writes the repo tree (empty or new directory)")

    space = sub.add_parser("deploy-space", help="create/update the Gradio Space serving a model repo")
    space.add_argument("--space-id", required=True, help="OWNER/SPACE (created if needed)")
    space.add_argument("--model-repo", required=True, help="OWNER/NAME the Space loads (Space variable)")
    space.add_argument("--model-revision", help="the model repo's commit (or branch/tag, resolved to a commit) the "
                                                "Space serves; default: what main is at deploy time")
    space.add_argument("--private", action="store_true", help="create the Space private")
    space.add_argument("--hardware", help="Space hardware flavor to request, e.g. cpu-upgrade (32 GB): what the index "
                                          "needs, docs/benchmarks.md (default: the Space's current, cpu-basic if new)")
    space.add_argument("--dry-run", action="store_true", help="write the tree to --out; no network")
    space.add_argument("--model-tree", metavar="DIR",
                       help="dry run: a local copy of the model repo (the tree `hub push --dry-run --out DIR` wrote), "
                            "whose files the Space's preload list names, as a deploy names the repo's")
    space.add_argument("--out", help="where --dry-run writes the Space tree (empty or new directory)")
    return p


def _read_queries(path: str | None, limit: int = 12) -> list[str] | None:
    """The first `limit` queries of a qid<TAB>query file (or a file of one query a line)."""
    if path is None:
        return None
    from twotowers.checks import is_blank
    from twotowers.textfiles import text_lines

    if not Path(path).is_file():
        raise FileNotFoundError(f"--example-queries {path}: no such file")
    queries = [q for q in (line.split("\t", 1)[-1].strip() for _, line in text_lines(path)) if not is_blank(q)]
    if not queries:
        raise ValueError(f"--example-queries {path}: no queries in it")
    return queries[:limit]


def main(argv: list[str] | None = None) -> int:
    """`python -m hub`: 0 on success; any failure is one line on stderr and exit status 1."""
    return run_main(lambda: _run(_parser().parse_args(argv)), also=(PublishError,), describe=explain)


def _run(args) -> None:
    if args.command == "push":
        from .push import push

        from twotowers.textfiles import read_json

        train_config = read_json(args.train_config, "the training run's settings (JSON)") if args.train_config else None
        push(args.model, args.index, args.repo_id, metrics_files=args.metrics, private=args.private,
             revision=args.revision, dry_run=args.dry_run, out=args.out, train_config=train_config,
             space_id=args.space_id, example_queries=_read_queries(args.example_queries))
    else:
        from .space import deploy_space

        if args.model_tree and not args.dry_run:
            raise PublishError("--model-tree is for --dry-run: a deploy lists the model repo's own files")
        deploy_space(args.space_id, args.model_repo, revision=args.model_revision, private=args.private,
                     dry_run=args.dry_run, out=args.out, model_tree=args.model_tree, hardware=args.hardware)


if __name__ == "__main__":
    sys.exit(main())
