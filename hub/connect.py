"""Talking to the Hub: the token from the usual places, and every failure as one clear line.

The token comes from `HF_TOKEN` or the login cache (`hf auth login`) via `huggingface_hub.get_token()`.
It is passed to `HfApi` and never printed: messages go through `redact` before they are shown.
"""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

LOGIN_HINT = "set HF_TOKEN to a write token or run `hf auth login`"

_log = logging.getLogger(__name__).info  # the default `log` of the functions below


class PublishError(RuntimeError):
    """A publishing step failed; the message is one line, safe to print (no token, no traceback)."""


def hub_api(endpoint: str | None = None) -> HfApi:
    """An authenticated `HfApi`, or PublishError when offline mode is on or no token is found."""
    if constants.is_offline_mode():
        raise PublishError("HF_HUB_OFFLINE is set, so nothing can be published: unset it (or use --dry-run)")
    token = get_token()
    if not token:
        raise PublishError(f"no Hugging Face token found: {LOGIN_HINT}")
    return HfApi(endpoint=endpoint, token=token)


def explain(err: BaseException, api: HfApi | None = None, what: str = "the Hub") -> str:
    """One line saying what went wrong talking to the Hub (token redacted)."""
    endpoint = api.endpoint if api is not None else constants.ENDPOINT
    if isinstance(err, PublishError):
        msg = str(err)
    elif isinstance(err, OfflineModeIsEnabled):
        msg = "HF_HUB_OFFLINE is set, so nothing can be published: unset it (or use --dry-run)"
    elif isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        server = (getattr(err, "server_message", None) or "").strip().replace("\n", " ")
        if status == 401:
            msg = f"{endpoint} rejected the token (401 Unauthorized) for {what}: {LOGIN_HINT}"
        elif status == 403:
            msg = f"the token has no write access to {what} (403 Forbidden): use a write token for that namespace"
        elif status == 404:
            msg = f"{what} not found on {endpoint} (404)"
        else:
            msg = f"{endpoint} answered {status} for {what}" + (f": {server}" if server else "")
    elif _is_network_error(err):
        msg = f"cannot reach {endpoint} ({_root(err)}): check the network connection or HF_ENDPOINT"
    elif isinstance(err, (ValueError, FileNotFoundError, PermissionError, IsADirectoryError)):
        msg = str(err)  # our own checks and the loaders': they already name the file
    else:
        msg = f"{type(err).__name__}: {err}"
    return redact(" ".join(msg.split()), api)


def redact(text: str, api: HfApi | None = None) -> str:
    """`text` with any known token replaced by `***`."""
    for token in {get_token(), getattr(api, "token", None)}:
        if isinstance(token, str) and token:
            text = text.replace(token, "***")
    return text


def _is_network_error(err: BaseException) -> bool:
    import httpx2

    e: BaseException | None = err
    while e is not None:
        if isinstance(e, (httpx2.TransportError, ConnectionError, TimeoutError)):
            return True
        e = e.__cause__ or e.__context__
    return False


def _root(err: BaseException) -> str:
    while (err.__cause__ or err.__context__) is not None:
        err = err.__cause__ or err.__context__
    return f"{type(err).__name__}: {err}".strip().rstrip(":")


# The Hub's limit on one file (huggingface_hub 2.4.0: `HfApi.upload_file` "up to 50 GB", and
# `constants.MAX_HTTP_DOWNLOAD_SIZE`, the most a plain HTTP download fetches).
HUB_FILE_LIMIT = 50 * 1000**3


def check_file_sizes(tree: Path, files: list[str]) -> None:
    """PublishError naming the first file over the Hub's per-file limit."""
    from twotowers.writing import human_size

    for f in files:
        size = (tree / f).stat().st_size
        if size > HUB_FILE_LIMIT:
            hint = ("build the index with a lower dim or M (docs/benchmarks.md gives each one's size)"
                    if f.startswith("index/") else "nothing of that size can be pushed")
            raise PublishError(f"{f} is {human_size(size)}, over the Hub's limit of 50 GB for one file: {hint}; "
                               "nothing was sent")


def upload_tree(api, tree: Path, files: list[str], repo_id: str, *, repo_type: str, message: str,
                private: bool = False, revision: str | None = None, space_sdk: str | None = None,
                prune: tuple[str, ...] = (), large: bool = False, log=_log) -> str:
    """create_repo(exist_ok) [+ branch], then the files in one commit -> the (last) commit URL.

    Files already in the repo under a `prune` folder (e.g. `index/`) but not in `files` are deleted
    in the same commit, so the folder on the Hub is exactly the new tree, not a mix of two pushes.
    `large`: through `HfApi.upload_folder`, huggingface_hub 2.4's path for large folders: with hf_xet
    (installed with huggingface_hub) files are chunked, deduplicated and uploaded in the background,
    and a run interrupted halfway resumes when called again (what was uploaded is not sent twice); a
    folder of thousands of files would be committed in several batches. Else one `create_commit`.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    what = f"{repo_type} repo {repo_id}"
    check_file_sizes(tree, files)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        stale = []
        if prune:
            try:
                remote = api.list_repo_files(repo_id, repo_type=repo_type, revision=revision)
            except HfHubHTTPError as e:  # a brand-new repo or branch has nothing to prune
                if e.response is None or e.response.status_code != 404:
                    raise
                remote = []
            stale = sorted(f for f in remote if f.startswith(prune) and f not in set(files))
            if stale:
                log(f"deleting {len(stale)} stale file(s) in the same commit: {', '.join(stale)}")
        if large:
            info = api.upload_folder(repo_id=repo_id, folder_path=str(tree), repo_type=repo_type, revision=revision,
                                     commit_message=message, delete_patterns=stale or None)
        else:
            ops = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(tree / f)) for f in files]
            ops += [CommitOperationDelete(path_in_repo=f) for f in stale]
            info = api.create_commit(repo_id, ops, commit_message=message, repo_type=repo_type, revision=revision)
    except Exception as e:  # noqa: BLE001 - every failure becomes one line
        raise PublishError(explain(e, api, what)) from None
    return info.commit_url
