"""Questions with the result sentence in a chunk of its own: the second way to lay out an open question.

    python docs/result_apart.py out/em/data/questions.jsonl out/apart.jsonl          # "The result is " (prose)
    python docs/result_apart.py own/questions.jsonl own/apart.jsonl --marker "The display read "
    python em.py --eval --ckpt out/em/iter3/model/ckpt --questions out/apart.jsonl --val out/em/data/heldout.jsonl

A question laid out as training lays out its document (data/world.prose_question, the headline) puts the
thought before the chunk that holds the result; when the chunker put the problem's last operators in that chunk
too, the thought is written before the model has read them, as a prior-mode latent is in training, and the walk
can only guess them. Here the open chunk is cut at `--marker`, so the text before it becomes a chunk of its own
(its own thought) and the last thought comes after the whole problem statement, as it does for every question
whose chunker already cut there. Questions already cut there, or not open, are copied unchanged.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data.corpus import write_atomic  # noqa: E402


def result_apart(q, marker):
    """One question record -> the same with its open last chunk split before `marker` (when text precedes it)."""
    last = q["chunks"][-1] if q.get("open") and q.get("chunks") else ""
    cut = last.rfind(marker)
    if cut <= 0:
        return q
    return {**q, "chunks": [*q["chunks"][:-1], last[:cut], last[cut:]]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("questions", help="questions JSONL (data/questions.py format) with open last chunks")
    ap.add_argument("out", help="where the questions with the result chunk apart go")
    ap.add_argument("--marker", default="The result is ", help="the text that opens the result sentence")
    a = ap.parse_args(argv)
    try:
        if not a.marker:
            raise ValueError("--marker must not be empty")
        with open(a.questions) as f:
            qs = [json.loads(line) for line in f if line.strip()]
        if not qs or not all(isinstance(q, dict) for q in qs):
            raise ValueError(f"{a.questions}: must hold one question object per line")
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    out = [result_apart(q, a.marker) for q in qs]
    write_atomic(a.out, "".join(json.dumps(q) + "\n" for q in out))
    print(f"wrote {a.out}: {sum(o is not q for o, q in zip(out, qs))} of {len(qs)} questions cut before {a.marker!r}")


if __name__ == "__main__":
    main()
