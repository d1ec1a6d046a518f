"""Held-out questions as data: a JSONL file and a documented rule that reads an answer out of generated text.

One question per line:
  {"question": "Q: 7 ciqx\n", "answer": 5}                      required: the text a model is asked, the answer
  "prompt": "7 ciqx:"             optional: how a *raw* model is asked to reason (default: the question)
  "answer_regex": "A: (\\d+)"     optional: the rule for text generated after the question (or after the latent)
  "prompt_regex": "..."           optional: the rule for text generated after "prompt"
  "prompt_stop": "\n"             optional: text (one token) that ends the generation after "prompt"
  "chunks": ["Start from 7. ", ...]  optional: the question as a document's chunks (non-empty strings that
                                  concatenate to "question"), for an evaluation that lays it out as in training
  "open": true                    optional: the last chunk is the start of the chunk that holds the answer, so
                                  the thought goes before it and the answer continues it (training puts a
                                  chunk's latent before the chunk holding the result); default false: the
                                  answer opens a chunk of its own, after every chunk of the question
  "answer_text": "5."             optional: the answer as documents write it where the model answers (default
                                  the answer's own text), scored for the answer NLL (em.py ans_nll)

The rule (`extract`), applied to the text a model generated (a latent model: the text after its last thought,
and after the open chunk's text for an open question; a raw model: the text after its prompt):
  - a regex (--answer-regex, else the line's own): the first match; its group 1 if it has groups, else the whole
    match. Correct when that text equals the answer's text (both stripped).
  - default, when the answer is a number: the first number in the text (integer or decimal, a leading minus
    allowed). Correct when the two are equal as numbers ("5.0" answers 5).
  - default, otherwise: the first non-empty line, stripped. Correct when it equals the answer's text.
  No text (a latent model that never closed its thought), or no match: no answer, scored wrong.
"""
import json
import math
import os
import re

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def answer_text(answer):
    """The answer as the text a model should write (JSON numbers: 5, not 5.0 for an int)."""
    return answer if isinstance(answer, str) else json.dumps(answer)


def is_number(answer):
    return isinstance(answer, (int, float)) and not isinstance(answer, bool) or \
        isinstance(answer, str) and NUMBER.fullmatch(answer.strip()) is not None


def extract(text, answer, regex=None):
    """The answer a generated text states under the rule above, or None."""
    if regex:
        m = re.search(regex, text)
        return None if m is None else (m.group(1) if m.re.groups else m.group(0))
    if is_number(answer):
        m = NUMBER.search(text)
        return None if m is None else m.group(0)
    line = text.strip().split("\n", 1)[0].strip()
    return line or None


def correct(got, answer, regex=None):
    """Whether an extracted answer (from `extract` with the same regex) is the right one."""
    if got is None:
        return False
    if not regex and is_number(answer):
        return float(got) == float(answer)
    return got.strip() == answer_text(answer).strip()


def read_questions(path, tok=None):
    """Validated question records from a JSONL file; ValueError names the file and line. Every field is checked:
    a non-blank question, a non-blank or finite answer, string options and regexes that compile, chunks that
    tile the question; with `tok`, a "prompt_stop" that is one token (where generation stops)."""
    out = []
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not a questions JSONL file")
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                q = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                raise ValueError(f"not UTF-8 ({path}:{n})") from None
            except json.JSONDecodeError as e:
                raise ValueError(f"not JSON ({path}:{n}): {e.msg}") from None
            bad = (not isinstance(q, dict) or not isinstance(q.get("question"), str) or "answer" not in q
                   or not isinstance(q["answer"], (str, int, float)) or isinstance(q["answer"], bool))
            if bad:
                raise ValueError(f'a question needs a "question" string and an "answer" string or number '
                                 f"({path}:{n})")
            if not q["question"].strip():
                raise ValueError(f'"question" is blank: a model would be asked nothing ({path}:{n})')
            a = q["answer"]
            if not answer_text(a).strip() or isinstance(a, float) and not math.isfinite(a):
                raise ValueError(f'"answer" is {json.dumps(a)}: no generated text could match it ({path}:{n})')
            if not isinstance(q.get("open", False), bool):
                raise ValueError(f'"open" must be true or false ({path}:{n})')
            for key in ("prompt", "answer_regex", "prompt_regex", "prompt_stop", "answer_text"):
                if key in q and not isinstance(q[key], str):
                    raise ValueError(f'"{key}" must be a string ({path}:{n})')
                if key.endswith("regex") and key in q:
                    check_regex(q[key], f"{path}:{n}")
            if tok is not None and "prompt_stop" in q and len(tok.encode(q["prompt_stop"])) != 1:
                raise ValueError(f'"prompt_stop" {q["prompt_stop"]!r} is not one token of the {tok.name} tokenizer '
                                 f"({path}:{n})")
            chunks = q.get("chunks", [q["question"]])
            if not (isinstance(chunks, list) and chunks and all(isinstance(c, str) and c for c in chunks)
                    and "".join(chunks) == q["question"]):
                raise ValueError(f'"chunks" must be a list of non-empty strings that concatenate to "question" '
                                 f"({path}:{n})")
            out.append(q)
    if not out:  # an empty file would run every arm and report no accuracy at all
        raise ValueError(f"{path} holds no questions")
    return out


def check_regex(regex, where):
    try:
        re.compile(regex)
    except re.error as e:
        raise ValueError(f"bad answer regex {regex!r}: {e} ({where})") from None


def load_prepared(ddir, name="questions"):
    """The questions a run prepared under ddir (the world's test questions; name "dev_questions": its dev split),
    [] if none."""
    path = os.path.join(ddir, f"{name}.jsonl")
    return read_questions(path) if os.path.exists(path) else []
