"""Will a saved index fit in this machine's memory? Asked before loading it, so a server refuses in one line
instead of being killed by the kernel halfway through reading a 10 GB graph.

    need, parts = serving_bytes(meta)    # from index.json alone
    have, where = available_bytes()      # MemAvailable, or the container's (cgroup) limit less what it holds
    check_fits(meta, directory)          # IndexTooLarge naming both

What stays resident once loaded: hnswlib's graph (hnsw.bin's bytes, read whole into memory, plus
~110 bytes an element of its own: a lock, a label-map entry, a level, a visited-list slot per search
thread; measured: 99-101 bytes at 300k elements), the row -> record map of the vectors (4 bytes a
passage) and the BM25 vocabulary as a Python dict (~150 bytes a term). Texts, ids and BM25's arrays are
memory-mapped: the page cache holds what searches touch, and gives it back under pressure.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..writing import human_size

HNSWLIB_BYTES_PER_ELEMENT = 110
ROW_MAP_BYTES = 4
VOCAB_BYTES_PER_TERM = 150
# (directory, limit file, usage file, the page-cache line of memory.stat): cgroup v2, then v1
CGROUP_ROOTS = ((Path("/sys/fs/cgroup"), "memory.max", "memory.current", "file"),
                (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes", "memory.usage_in_bytes", "cache"))


class IndexTooLarge(OSError):
    """The index needs more memory than this machine has available; the message names both."""


def serving_bytes(meta: dict) -> tuple[int, dict]:
    """About how much memory serving the index of `meta` (index.json) holds -> (bytes, {part: bytes})."""
    count = int(meta["count"])
    parts = {"graph": int(meta["files"]["hnsw.bin"]["bytes"]) + count * (HNSWLIB_BYTES_PER_ELEMENT + ROW_MAP_BYTES)}
    if meta.get("keyword"):
        parts["BM25 vocabulary"] = int(meta["keyword"].get("vocab_size", 0)) * VOCAB_BYTES_PER_TERM
    return sum(parts.values()), parts


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_available() -> tuple[int, int] | None:
    """(limit, what is free under it) of this process's memory cgroup, v2 or v1; None where there is no limit.
    Page cache counts as free: the kernel reclaims it before it kills anything."""
    for root, limit_name, usage_name, file_key in CGROUP_ROOTS:
        limit, usage = _read_int(root / limit_name), _read_int(root / usage_name)
        if limit is None or usage is None or limit >= 1 << 60:  # "max" or v1's huge number: no limit
            continue
        cache = 0
        try:
            for line in (root / "memory.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == file_key:
                    cache = int(value)
        except (OSError, ValueError):
            pass
        return limit, max(limit - usage + cache, 0)
    return None


def available_bytes() -> tuple[int | None, str]:
    """(bytes this process could still take, how that was found); (None, why) where it cannot be told."""
    have, where = None, "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                have, where = int(line.split()[1]) * 1024, "MemAvailable"
    except (OSError, ValueError, IndexError):
        pass
    cgroup = _cgroup_available()
    if cgroup is not None and (have is None or cgroup[1] < have):
        have, where = cgroup[1], f"under the container's limit of {human_size(cgroup[0])}"
    return have, where


def check_fits(meta: dict, directory) -> None:
    """IndexTooLarge (one line naming both sizes) when serving the index needs more memory than is available."""
    need, parts = serving_bytes(meta)
    have, where = available_bytes()
    if have is None or need <= have:
        return
    detail = " + ".join(f"{name} {human_size(n)}" for name, n in parts.items())
    err = IndexTooLarge(f"the index {directory} needs about {human_size(need)} of memory to serve ({detail}), and this "
                        f"machine has {human_size(have)} available ({where}): serve it on a machine with more memory "
                        "(docs/benchmarks.md lists which hardware holds which index), or build a smaller one (a "
                        "lower dim or M)")
    err.errno = errno.ENOMEM
    raise err
