"""The shared training positives whose title is "-": written without it, as raw MS MARCO passages.

    python bench/untitled_positives.py runs/untitled_positives.hf.jsonl

`dev-small/train_positives.hf.jsonl` holds each passage as `<title> <passage>` (SOURCES.md); where
the title is `-` (1,766 of 6,380 rows) the rest is the raw passage byte for byte, so those rows can
be trained on in the format of the dev600 corpus, which has no titles. Other titles cannot be cut off
reliably and are left out.
"""

import json
import sys
from pathlib import Path

from common import MSMARCO


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    src, out = MSMARCO / "dev-small" / "train_positives.hf.jsonl", Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = total = 0
    with open(src, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as w:
        for line in f:
            row = json.loads(line)
            total += 1
            texts = row["passages"]["passage_text"]
            if texts and texts[0].startswith("- "):
                row["passages"]["passage_text"] = [texts[0][2:]] + texts[1:]
                w.write(json.dumps(row, ensure_ascii=False) + "\n")
                kept += 1
    print(f"{kept:,} of {total:,} rows have the title '-': written without it to {out}")


if __name__ == "__main__":
    main()
