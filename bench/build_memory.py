"""Where an index build's memory goes: run `python -m twotowers.index build ARGS...` and sample the child's
resident memory (anonymous and file-backed, from /proc/PID/status) every 0.25 s, keyed by the last line the
build printed (the chunk loop, then each step of the finish); print the largest sample of each phase
(Linux only).

    python bench/build_memory.py --model DIR --collection FILE --out DIR [any other build flag]
"""

from __future__ import annotations

import os
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


def sampled_build(args: list[str], log=None) -> tuple[int, int, dict[str, dict]]:
    """Run `python -m twotowers.index build ARGS` (its output echoed to `log`, default stderr) and sample its
    memory -> (exit status, the child's own peak RSS in bytes from wait4, {phase: the largest sample})."""
    log = log or sys.stderr
    proc = subprocess.Popen([sys.executable, "-m", "twotowers.index", "build", *args], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    phase = ["start"]
    peaks: dict[str, dict] = {}

    def read() -> None:
        for line in proc.stderr:
            log.write(line)
            log.flush()
            # progress lines differ only in their figures: "inserting" until the last passage is in, then the
            # last checkpoint, then the finish's steps by the words before their colon ("tuning ef", ...)
            if line.startswith("indexing passages"):
                phase[0] = "last checkpoint" if "100.0%" in line else "inserting"
            else:
                phase[0] = line.split(":")[0].strip()[:40]

    def watch() -> None:
        while (s := sample(proc.pid)) is not None:  # None once the child is gone or a zombie
            if s["VmRSS"] > peaks.get(phase[0], {"VmRSS": -1})["VmRSS"]:
                peaks[phase[0]] = s
            time.sleep(0.25)

    threads = [threading.Thread(target=read, daemon=True), threading.Thread(target=watch, daemon=True)]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in threads:
        t.join(timeout=5)
    return proc.returncode, usage.ru_maxrss * 1024, peaks


def phase_table(peaks: dict[str, dict]) -> None:
    print("| phase | RSS MB | anonymous MB | file-backed MB |\n| --- | --- | --- | --- |")
    for name, s in peaks.items():
        print(f"| {name} | {s['VmRSS']:,} | {s['RssAnon']:,} | {s['RssFile']:,} |")


def main() -> None:
    status, peak, peaks = sampled_build(sys.argv[1:])
    phase_table(peaks)
    print(f"peak RSS (wait4): {peak / 2**20:,.0f} MB")
    sys.exit(status)


if __name__ == "__main__":
    main()
