"""Where an index build's memory goes: run `python -m twotowers.index build ARGS...` and sample the child's
resident memory (anonymous and file-backed, from /proc/PID/status) every 0.25 s, keyed by the last line the
build printed; print the largest sample of each phase (Linux only).

    python bench/build_memory.py --model DIR --collection FILE --out DIR [any other build flag]
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("VmRSS", "RssAnon", "RssFile")


def sample(pid: int) -> dict | None:
    """{field: MB} of a live process, None once it is gone (or a zombie, whose status lacks them)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    f = {ln.split(":")[0]: int(ln.split()[1]) // 1024 for ln in lines if ln.startswith(FIELDS)}
    return f if len(f) == len(FIELDS) else None


def main() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "twotowers.index", "build", *sys.argv[1:]], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    phase = ["start"]

    def read() -> None:
        for line in proc.stderr:
            # progress lines differ only in their figures: the phase is "inserting" until the last passage is in
            phase[0] = "inserting" if line.startswith("indexing passages") and "100.0%" not in line else \
                ("finishing (ef tuning, BM25 weighing, checksums)" if "100.0%" in line else line.strip()[:70])

    threading.Thread(target=read, daemon=True).start()
    peaks: dict[str, dict] = {}
    while proc.poll() is None:
        s = sample(proc.pid)
        if s and s["VmRSS"] > peaks.get(phase[0], {"VmRSS": -1})["VmRSS"]:
            peaks[phase[0]] = s
        time.sleep(0.25)
    print("| phase | RSS MB | anonymous MB | file-backed MB |\n| --- | --- | --- | --- |")
    for name, s in peaks.items():
        print(f"| {name} | {s['VmRSS']:,} | {s['RssAnon']:,} | {s['RssFile']:,} |")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
