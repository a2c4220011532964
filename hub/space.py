"""Deploy the Gradio app as a Hugging Face Space, in one commit.

    python -m hub deploy-space --space-id OWNER/SPACE --model-repo OWNER/NAME [--dry-run --out DIR]

The Space's files are computed, not listed by hand: `app.py` and every repo-local module it
imports (its import graph, lazy imports inside functions included), data directories those
modules name (e.g. `demo/`), a `requirements.txt` pinned from the project's for the third-party
packages the graph imports, and a README whose front matter Spaces reads. Which model the Space
loads is the Space variable `TWOTOWERS_MODEL_REPO`, so changing it needs no code edit.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import logging
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from huggingface_hub import SpaceCard, SpaceCardData

# A Space has no GPU unless paid for: PyPI's Linux torch is the multi-GB CUDA build, so ask for the CPU one.
from twotowers.project import TORCH_CPU_INDEX

from .connect import PublishError, explain, hub_api, upload_tree
from .tree import check_empty, check_repo_id, describe, files_under, place

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_REPO_VARIABLE = "TWOTOWERS_MODEL_REPO"
MODEL_REVISION_VARIABLE = "TWOTOWERS_MODEL_REVISION"
# Installed by the Space itself (sdk_version), so never listed in its requirements.txt.
_SDK_PROVIDED = {"gradio", "gradio-client"}

_log = logging.getLogger(__name__).info  # the default `log` of the functions below


def import_graph(entry: Path, root: Path) -> tuple[set[Path], set[str]]:
    """Walk `entry`'s imports -> (repo-local .py files it needs, third-party top-level module names).

    Every `import` node counts, including ones inside functions (lazy imports). Importing `a.b.c`
    also runs `a/__init__.py` and `a/b/__init__.py`, so those are included.
    """
    root = root.resolve()
    local: set[Path] = set()
    external: set[str] = set()
    todo = [entry.resolve()]
    while todo:
        path = todo.pop()
        if path in local:
            continue
        local.add(path)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError as e:
            raise PublishError(f"{path}:{e.lineno}: cannot parse ({e.msg})") from None
        package = _package_of(path, root)
        if path != entry.resolve():  # an imported module's `if __name__ == "__main__":` block never runs
            tree.body = [n for n in tree.body if not _is_main_guard(n)]
        for node in ast.walk(tree):
            names: list[tuple[str, bool]] = []  # (module, must it be a module?)
            if isinstance(node, ast.Import):
                names = [(a.name, True) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node.module, node.level, package)
                if base is None:
                    continue
                # `from pkg import sub` imports the submodule pkg.sub when there is one (else an attribute)
                names = [(base, True)] + [(f"{base}.{a.name}", False) for a in node.names if a.name != "*"]
            for name, required in names:
                files = _module_files(name, root, required, where=f"{path.relative_to(root)}:{node.lineno}")
                if files is None:
                    top = name.split(".")[0]
                    if top and top not in sys.stdlib_module_names:
                        external.add(top)
                    continue
                todo += [f for f in files if f not in local]
    return local, external


def space_files(root: Path = REPO_ROOT, app_file: str = "app.py") -> tuple[list[Path], set[str]]:
    """The files the Space needs from `root` (sorted, absolute) and the third-party modules imported."""
    root = root.resolve()
    entry = root / app_file
    if not entry.is_file():
        raise PublishError(f"{entry} not found: the Space needs the app")
    modules, external = import_graph(entry, root)
    keep = _not_ignored(root)
    files = set(modules)
    packages = {p.parent for p in modules if p.name == "__init__.py"}
    for pkg in packages:  # data files shipped inside imported packages (not their other modules)
        files |= {f for f in files_under(pkg) if f.suffix not in (".py", ".pyc") and f.parent == pkg}
    for name in _named_paths(modules, root):  # directories/files the code names, e.g. "demo"
        target = root / name
        files |= set(files_under(target)) if target.is_dir() else {target}
    files = {f for f in files if keep is None or f.relative_to(root).as_posix() in keep}
    return sorted(files), external


def space_requirements(external: set[str], root: Path = REPO_ROOT) -> list[str]:
    """Pinned requirement lines for the third-party modules the app imports (gradio excepted)."""
    pins = {}
    req = root / "requirements.txt"
    if req.is_file():
        for line in req.read_text().splitlines():
            m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s#;]+)", line)
            if m:
                pins[_norm(m.group(1))] = f"{m.group(1)}=={m.group(2)}"
    dists = md.packages_distributions()
    lines = []
    for module in sorted(external):
        for dist in dists.get(module, [module]):
            if _norm(dist) in _SDK_PROVIDED:
                continue
            try:
                line = pins.get(_norm(dist)) or f"{dist}=={md.version(dist)}"
            except md.PackageNotFoundError:
                raise PublishError(f"the app imports {module!r}, which is not installed here: "
                                   "install it (and pin it in requirements.txt) before deploying") from None
            if _norm(dist) == "torch" and "+" not in line:
                line += "+cpu"  # from TORCH_CPU_INDEX, named by the file's --extra-index-url line
            if line not in lines:
                lines.append(line)
    lines = sorted(lines, key=str.lower)
    return ([f"--extra-index-url {TORCH_CPU_INDEX}"] if any(x.startswith("torch==") for x in lines) else []) + lines


def space_card(space_id: str, model_repo: str, revision: str | None = None, files: list[str] | None = None,
               hardware: str | None = None) -> SpaceCard:
    """README.md with the front matter Spaces reads (sdk, sdk_version = the installed gradio, app_file, ...).

    `preload_from_hub` downloads the model repo while the Space is built, not at every start: the `files`
    the app reads when they are known (pinned to `revision` when it is), else the whole repo at main.
    `hardware`: the flavor the index needs (`suggested_hardware`, what a duplicate of the Space asks for)."""
    preload = f"{model_repo} {','.join(files)}" + (f" {revision}" if revision else "") if files else model_repo
    data = SpaceCardData(
        title="twotowers passage search", sdk="gradio", sdk_version=md.version("gradio"),
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}", app_file="app.py",
        license="apache-2.0", models=[model_repo], datasets=["microsoft/ms_marco"],
        tags=["dense-retrieval", "two-tower", "ms-marco"], preload_from_hub=[preload],
        emoji="🔎", colorFrom="indigo", colorTo="green", pinned=False,
        short_description="Two-tower dense passage search over an hnswlib index", suggested_hardware=hardware,
    )
    pinned = f" at commit `{revision}`" if revision else ""
    body = (f"# twotowers passage search\n\nQuery-to-passage search with the two-tower model "
            f"[`{model_repo}`](https://huggingface.co/{model_repo}){pinned} and its prebuilt hnswlib index.\n\n"
            f"The model repo and its commit are the Space variables `{MODEL_REPO_VARIABLE}` and "
            f"`{MODEL_REVISION_VARIABLE}` (set by `python -m hub deploy-space`): the Space serves that commit until it "
            "is deployed again, and change them in the Space settings to serve another model, no code edit needed.\n\n"
            "From Python, through Gradio's API:\n\n"
            "```python\nfrom gradio_client import Client\n\n"
            f"client = Client(\"{space_id}\")\n"
            "print(client.predict(\"what is the reserve bank of australia\", 10, api_name=\"/search\"))\n```\n\n"
            "Or as plain JSON over HTTP (the Space's own URL):\n\n"
            "```bash\ncurl 'https://SPACE-HOST/v1/search?q=what+is+the+reserve+bank+of+australia&k=10'\n"
            "curl -X POST https://SPACE-HOST/v1/search -H 'Content-Type: application/json' \\\n"
            "     -d '{\"queries\": [\"what is rba\", \"who sets the cash rate\"], \"k\": 5}'\n"
            "curl https://SPACE-HOST/v1/info\n```\n")
    return SpaceCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def model_files(names: list[str]) -> list[str]:
    """The files of a model repo the app reads (what `load_pretrained` fetches), in repo order."""
    from twotowers.layout import INDEX_SUBFOLDER, REPO_FILES

    return [n for n in names if n in REPO_FILES or n.startswith(f"{INDEX_SUBFOLDER}/")]


def stage_space(out, space_id: str, model_repo: str, root: Path = REPO_ROOT, revision: str | None = None,
                preload: list[str] | None = None, hardware: str | None = None) -> list[str]:
    """Write the Space's tree into `out` (empty or absent) -> its relative paths."""
    out = Path(out)
    check_empty(out, "Space")
    files, external = space_files(root)
    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        place(f, out / f.relative_to(root.resolve()))
    reqs = space_requirements(external, root)
    (out / "requirements.txt").write_text(
        "# The Space's runtime (computed from app.py's imports by `python -m hub deploy-space`;\n"
        "# gradio itself comes from sdk_version in README.md).\n" + "\n".join(reqs) + "\n")
    (out / "README.md").write_text(str(space_card(space_id, model_repo, revision, preload, hardware)), encoding="utf-8")
    return sorted(p.relative_to(out).as_posix() for p in files_under(out))


def check_hardware(hardware: str | None) -> None:
    """PublishError unless `hardware` is a Space hardware flavor huggingface_hub knows (cpu-basic, cpu-upgrade, ...)."""
    from huggingface_hub import SpaceHardware

    flavors = [h.value for h in SpaceHardware]
    if hardware is not None and hardware not in flavors:
        raise PublishError(f"--hardware {hardware!r} is not a Space hardware flavor: one of {', '.join(flavors)}")


def deploy_space(space_id: str, model_repo: str, *, revision: str | None = None, private: bool = False,
                 dry_run: bool = False, out=None, root: Path = REPO_ROOT, endpoint: str | None = None, log=_log,
                 model_tree=None, hardware: str | None = None) -> str:
    """Create/update the Space in one commit, pinned to the model repo's commit -> its URL (or the out dir).

    The commit is `revision` resolved on the Hub (default: what `main` is now); the Space variables
    name the repo and that commit, and its front matter preloads exactly the files of that commit the
    app reads. A dry run cannot ask the Hub: it lists the files of `model_tree` (a local copy of the
    model repo, e.g. the tree `hub push --dry-run` wrote), pinned to `revision` if given; without a
    tree it preloads the whole repo, unpinned, and says so. `hardware`: the flavor to run on (requested
    after the commit: an index of 8.8M passages needs more memory than the free tier's, docs/benchmarks.md).
    """
    check_repo_id(space_id)
    check_repo_id(model_repo)
    check_hardware(hardware)
    if dry_run:
        if out is None:
            raise PublishError("--dry-run needs --out DIR to write the Space tree into")
        files = None
        if model_tree is not None:
            tree = Path(model_tree)
            if not tree.is_dir():
                raise PublishError(f"--model-tree {tree}: no such directory")
            files = model_files([p.relative_to(tree).as_posix() for p in files_under(tree)])
            if not files:
                raise PublishError(f"--model-tree {tree} holds no model files: give the tree `python -m hub push "
                                   "--dry-run --out DIR` wrote")
        elif revision:
            raise PublishError("a dry run cannot list the model repo's files at a commit: pass --model-tree DIR, the "
                               "tree `python -m hub push --dry-run --out DIR` wrote for it")
        names = stage_space(out, space_id, model_repo, root, revision, files, hardware)
        describe(log, "would create (exist_ok) gradio Space", space_id, private, None, Path(out), names)
        if hardware:
            log(f"would request the hardware {hardware}")
        log(f"would set Space variable {MODEL_REPO_VARIABLE}={model_repo}")
        log(f"would set Space variable {MODEL_REVISION_VARIABLE}={revision}" if revision else
            f"not pinned: a dry run cannot resolve {model_repo}'s commit (pass --model-revision COMMIT to pin)")
        log(f"would preload {len(files)} files of {model_repo} (those of {model_tree} the app reads)" if files else
            f"would preload all of {model_repo} (pass --model-tree DIR to list the files a deploy preloads)")
        log(f"dry run: nothing was sent; the tree above is in {out}")
        return str(out)

    api = hub_api(endpoint)
    try:
        info = api.model_info(model_repo, revision=revision)
    except Exception as e:  # noqa: BLE001
        raise PublishError(explain(e, api, f"model repo {model_repo}" + (f" at {revision}" if revision else ""))) from None
    sha, files = info.sha, model_files([s.rfilename for s in info.siblings or []])
    with tempfile.TemporaryDirectory(prefix="twotowers-space-") as tmp:
        names = stage_space(tmp, space_id, model_repo, root, sha, files, hardware)
        describe(log, "creating (exist_ok) gradio Space", space_id, private, None, Path(tmp), names)
        url = upload_tree(api, Path(tmp), names, space_id, repo_type="space", private=private, space_sdk="gradio",
                          message=f"Deploy twotowers app ({len(names)} files), serving {model_repo}@{sha[:12]}",
                          prune=tuple(sorted({f.split("/")[0] + "/" for f in names if "/" in f})), log=log)
    try:
        api.add_space_variable(space_id, MODEL_REPO_VARIABLE, model_repo,
                               description="Hub model repo (model + index/) the app loads")
        api.add_space_variable(space_id, MODEL_REVISION_VARIABLE, sha,
                               description="the model repo's commit the Space serves (set at deploy time)")
    except Exception as e:  # noqa: BLE001
        raise PublishError(explain(e, api, f"Space {space_id} (setting its variables)")) from None
    if hardware:
        try:
            api.request_space_hardware(space_id, hardware)
        except Exception as e:  # noqa: BLE001 - e.g. paid hardware without billing set up
            raise PublishError(explain(e, api, f"Space {space_id} (requesting {hardware})")) from None
        log(f"requested the hardware {hardware}")
    log(f"deployed {len(names)} files in one commit: {url}")
    log(f"set {MODEL_REPO_VARIABLE}={model_repo}, {MODEL_REVISION_VARIABLE}={sha}; the Space: "
        f"{api.endpoint}/spaces/{space_id}")
    return url


# -- helpers -------------------------------------------------------------------------------------------
def _is_main_guard(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":`"""
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.left, ast.Name)
            and node.test.left.id == "__name__" and len(node.test.comparators) == 1
            and isinstance(node.test.comparators[0], ast.Constant) and node.test.comparators[0].value == "__main__")


def _package_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    else:
        parts = parts[:-1]
    return ".".join(parts)


def _absolute(module: str | None, level: int, package: str) -> str | None:
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else [])) or None


def _module_files(name: str, root: Path, required: bool = True, where: str = "") -> list[Path] | None:
    """Repo-local files executed by importing `name` (package __init__s included); None if not local.

    A local module that `required` names but the repo lacks is an error: the Space would fail to import it.
    """
    parts = name.split(".")
    files = []
    for i in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:i])
        if (base / "__init__.py").is_file():
            files.append((base / "__init__.py").resolve())
        elif base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py").resolve())
            break  # attributes of a module from here on
        elif i == 1:
            return None  # not a module of this repo
        elif required:
            raise PublishError(f"{where}: imports {name}, but {base.relative_to(root)}(.py) is not in the repo")
        else:
            break  # `from pkg import name` where name is an attribute, not a module
    return files


def _named_paths(modules: set[Path], root: Path) -> set[str]:
    """Top-level repo entries (other than code) named by a string literal in the imported modules."""
    # Code is found by the import walk, so packages and modules are not data even when named.
    entries = {p.name for p in root.iterdir() if not p.name.startswith(".") and p.name != "__pycache__"
               and p.suffix != ".py" and not (p / "__init__.py").is_file()}
    found = set()
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                head = node.value.strip().strip("./").split("/")[0]
                if head in entries and not head.endswith(".py"):
                    found.add(head)
    return found


def _not_ignored(root: Path) -> set[str] | None:
    """Paths git would commit (tracked + untracked, not ignored); None outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {p for p in out.decode().split("\0") if p}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
