"""Corpus input: JSONL documents in, chunked documents out (Ruan et al. 2025, BoLT; ../shared/docs/BOLT.md).

A corpus is JSONL, one document per line, in either form (unknown fields are ignored):
  {"id": ..., "text": "..."}                                    chunked here by `chunk_text`
  {"id": ..., "chunks": [{"suffix": X_i, "latent": Z_i}, ...]}  the authors' released format (latent optional)
and is returned as {"id": str, "chunks": [{"suffix": X_i, "latent": Z_i or None}, ...]}, the input of
data/layout.encode_doc. Without an "id" a document gets a stable one from a sha256 of its content. A repeated
id (the same document twice, as real corpora have) is kept as a distinct document "<id>#2", "<id>#3", ... and
the repeats are counted on stderr. A chunk may also carry "latent_ids", the latent's exact token ids (em.py's
E-step writes them beside the text, which a decode cannot always round-trip); layout.encode_doc uses them.

The chunker follows the authors' recipe (1 + Poisson(lambda - 1) sentences per chunk, capped at 20) without NLTK:
sentences keep their trailing whitespace, so the chunks concatenate back to the text byte for byte, and the RNG
is seeded by a hashlib hash of the text (never Python's salted hash()), so boundaries are the same in every EM
iteration, process and machine. A chunk never crosses a blank line (a departure from the authors' sentence-only
packing: a paragraph break is the document's own boundary; README, "Departures"). With a token budget, an
over-long sentence is split at word boundaries (inside a word only when one word alone is over budget) and no
chunk exceeds the budget.
"""
import contextlib
import hashlib
import json
import math
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import time

# A sentence ends at terminal punctuation (plus closing quotes/brackets) followed by whitespace that is not
# followed by a lowercase letter ("e.g. this" stays whole), at CJK full stops, or at a blank line. The
# whitespace belongs to the sentence it ends, so concatenating sentences reproduces the text.
_SENT_END = re.compile(
    r"[.!?\u2026]+[\"'\u2019\u201d)\]]*\s+(?=[^\sa-z]|$)"
    r"|[\u3002\uff01\uff1f]+[\"'\u2019\u201d)\]\u300d\u300f]*\s*"
    r"|\n[ \t]*\n\s*")
_PARA_END = re.compile(r"\n[ \t]*\n\s*$")  # a unit that ends a paragraph
_WORD = re.compile(r"\s*\S+\s*|\s+")  # a word with the whitespace around it; pieces tile the string


def content_id(text):
    """Stable id of a document from a sha256 of its raw text (the same for its {"text"} and {"chunks"} forms,
    whatever its latents, in every process and machine)."""
    return "h" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def split_sentences(text):
    """text -> sentences, each with its trailing whitespace; ''.join(result) == text."""
    out, start = [], 0
    for m in _SENT_END.finditer(text):
        if m.end() > start:
            out.append(text[start:m.end()])
            start = m.end()
    if start < len(text):
        out.append(text[start:])
    return out


def _poisson(rng, lam):
    """Knuth's Poisson sampler on random.Random (stable across Python/numpy versions, unlike numpy's)."""
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _length_fn(tok):
    """The measure a budget is counted in: a callable, a Tokenizer's token count, or characters."""
    if callable(tok):
        return tok
    if tok is not None:
        return lambda s: len(tok.encode(s))
    return len


def _split_long(s, length, max_tokens):
    """Split one over-budget string into pieces of <= max_tokens each, whole words where possible."""
    pieces, cur = [], ""
    for w in _WORD.findall(s):
        if length(cur + w) <= max_tokens:
            cur += w
            continue
        if cur:
            pieces.append(cur)
        cur = w
        while length(cur) > max_tokens:  # one word alone is over budget: cut it at the longest prefix that fits
            lo, hi = 0, min(max_tokens, len(cur))  # gallop first, so a huge word costs linear, not quadratic, time
            while hi < len(cur) and length(cur[:hi]) <= max_tokens:
                lo, hi = hi, min(2 * hi, len(cur))
            while hi - lo > 1:  # now length(cur[:lo]) <= max_tokens < length(cur[:hi])
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if length(cur[:mid]) <= max_tokens else (lo, mid)
            if lo == 0:
                raise ValueError(f"token budget {max_tokens} is smaller than the single character {cur[0]!r}")
            pieces.append(cur[:lo])
            cur = cur[lo:]
    if cur:
        pieces.append(cur)
    return pieces


def chunk_text(text, tok=None, max_tokens=None, mean_sentences=8, max_sentences=20):
    """Split text into chunks of 1 + Poisson(mean_sentences - 1) sentences (at most max_sentences), each of at
    most max_tokens tokens when a budget is given. `tok` is a Tokenizer or a length function (default: len, i.e.
    characters). Deterministic in the text alone; ''.join(chunks) == text."""
    if mean_sentences < 1 or max_sentences < 1:
        raise ValueError("mean_sentences and max_sentences must be >= 1")
    units = split_sentences(text)
    length = _length_fn(tok)
    if max_tokens is not None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        units = [p for s in units for p in (_split_long(s, length, max_tokens) if length(s) > max_tokens else [s])]
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    chunks, i = [], 0
    while i < len(units):
        n = min(1 + _poisson(rng, mean_sentences - 1), max_sentences)
        cur, j = units[i], i + 1
        # measure the joined string, not a sum of parts: BPE token counts are not additive across a join;
        # a blank line ends the chunk: a paragraph is the document's own boundary, a thought never spans two
        while j < len(units) and j - i < n and not _PARA_END.search(cur) and \
                (max_tokens is None or length(cur + units[j]) <= max_tokens):
            cur += units[j]
            j += 1
        chunks.append(cur)
        i = j
    return chunks


def _parse_doc(obj, chunk_kw):
    """One decoded JSON line -> doc dict; raises ValueError with the reason when it is not a document."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "chunks" in obj:
        raw = obj["chunks"]
        if not isinstance(raw, list) or not raw:
            raise ValueError('"chunks" must be a non-empty list')
        chunks = []
        for k, c in enumerate(raw):
            if not isinstance(c, dict) or not isinstance(c.get("suffix"), str):
                raise ValueError(f'chunk {k} must be an object with a string "suffix"')
            z = c.get("latent")
            if z is not None and not isinstance(z, str):
                raise ValueError(f'chunk {k}: "latent" must be a string or null')
            if z is not None and not c["suffix"].strip():  # a thought about no text: nothing to score it on
                raise ValueError(f'chunk {k}: a chunk with a "latent" needs text in its "suffix"')
            ids = c.get("latent_ids")
            if ids is not None:
                if z is None or not isinstance(ids, list) or \
                        not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids):
                    raise ValueError(f'chunk {k}: "latent_ids" must be a list of token ids beside a "latent"')
                chunks.append({"suffix": c["suffix"], "latent": z, "latent_ids": ids})
            else:
                chunks.append({"suffix": c["suffix"], "latent": z})
        text = "".join(c["suffix"] for c in chunks)
    elif "text" in obj:
        if not isinstance(obj["text"], str) or not obj["text"]:
            raise ValueError('"text" must be a non-empty string')
        chunks = [{"suffix": s, "latent": None} for s in chunk_text(obj["text"], **chunk_kw)]
        text = obj["text"]
    else:
        raise ValueError('a document needs "text" or "chunks"')
    doc_id = obj.get("id")
    if doc_id is not None and (isinstance(doc_id, bool) or not isinstance(doc_id, (str, int))):
        raise ValueError('"id" must be a string or an integer')
    return {"id": content_id(text) if doc_id is None else str(doc_id), "chunks": chunks}


def parse_line(line, **chunk_kw):
    """One JSONL line (bytes) -> doc dict; ValueError when it is not a document (bad JSON or UTF-8 included)."""
    return _parse_doc(json.loads(line.decode("utf-8")), chunk_kw)


def unique_id(doc_id, ids, occurrences):
    """A repeated document keeps its place under the next free "<id>#n" (n >= 2), so its coins and RNG keys are
    its own; -> (id, whether it was a repeat). `ids` (all ids so far) and `occurrences` are updated."""
    repeat = doc_id in ids
    if repeat:
        base, n = doc_id, occurrences.get(doc_id, 1)
        while f"{base}#{n}" in ids or n == 1:
            n += 1
        occurrences[base], doc_id = n, f"{base}#{n}"
    ids.add(doc_id)
    return doc_id, repeat


def odd_doc(doc):
    """Why a parsed document holds nothing to learn from (None: it does): its text is whitespace only, or it holds
    a NUL character (binary debris from extraction, never prose). Such documents are skipped and counted, as
    repeated ones are kept and counted (note_stats). Latents are not looked at: a sampled latent (the E-step's
    latents.jsonl) may hold any byte, and what trains is its latent_ids."""
    if any("\0" in c["suffix"] for c in doc["chunks"]):
        return "NUL"
    return None if any(c["suffix"].strip() for c in doc["chunks"]) else "whitespace"


def scan_docs(path, skip_bad=False, stats=None, check=None, **chunk_kw):
    """A JSONL corpus one document at a time (memory of one line plus the set of ids seen, whatever the file's
    size): the documents read_docs returns, in order. A malformed line (bad JSON or UTF-8, not a document, or a
    document `check(doc)` refuses by raising ValueError) raises ValueError naming the file and line; with
    skip_bad=True it is skipped. A document of whitespace only or with a NUL character (odd_doc) is skipped. A
    repeated id is kept under "<id>#<occurrence>". Blank lines are ignored. When the generator is exhausted, a
    `stats` dict gets 'skipped', 'skipped_lines', 'odd_lines' and 'repeated' (note_stats reports them).
    chunk_kw (tok, max_tokens, mean_sentences, max_sentences) go to chunk_text for {"text"} lines."""
    ids, occurrences, bad, odd, repeated = set(), {}, [], [], 0
    with open(path, "rb") as f:
        # split on b"\n" only: str.splitlines would also break at U+2028 etc. inside a JSON string
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = parse_line(line, **chunk_kw)
                if odd_doc(doc):
                    odd.append(lineno)
                    continue
                if check:
                    check(doc)
            except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
                if not skip_bad:
                    raise ValueError(f"{e} ({path}:{lineno})") from None
                bad.append(lineno)
                continue
            doc["id"], new = unique_id(doc["id"], ids, occurrences)
            repeated += new
            yield doc
    if stats is not None:
        stats["skipped"], stats["skipped_lines"], stats["repeated"] = len(bad), bad, repeated
        stats["odd_lines"] = odd


def shown_lines(lines):
    return ", ".join(map(str, lines[:10])) + (", ..." if len(lines) > 10 else "")


def note_stats(path, stats):
    """scan_docs' stats on stderr: the malformed lines skipped and the repeated documents kept."""
    bad, odd = stats["skipped_lines"], stats.get("odd_lines", [])
    if bad:
        print(f"read_docs: skipped {len(bad)} malformed line(s) in {path} (lines {shown_lines(bad)})", file=sys.stderr)
    if odd:
        print(f"read_docs: skipped {len(odd)} document(s) of whitespace only or with NUL characters in {path} "
              f"(lines {shown_lines(odd)})", file=sys.stderr)
    if stats["repeated"]:
        print(f"read_docs: {stats['repeated']} repeated document(s) in {path} kept as distinct documents "
              "(id#2, id#3, ...)", file=sys.stderr)


def read_docs(path, skip_bad=False, stats=None, check=None, **chunk_kw):
    """Read a JSONL corpus whole -> list of {'id', 'chunks': [{'suffix', 'latent'}]}: scan_docs' documents, the
    skipped lines and repeats reported on stderr (and in `stats` if a dict is passed)."""
    stats = {} if stats is None else stats
    docs = list(scan_docs(path, skip_bad, stats, check, **chunk_kw))
    note_stats(path, stats)
    return docs


def iter_docs(path):
    """A JSONL corpus this project wrote (out/data, latents.jsonl) one document at a time: memory of one line,
    whatever the file's size. A malformed line raises ValueError naming file:line (no repeated-id handling:
    read_docs is the reader for inputs)."""
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield parse_line(line)
                except ValueError as e:
                    raise ValueError(f"{e} ({path}:{lineno})") from None


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


LOCK = "LOCK"


def _alive(pid):
    """Whether process `pid` runs on this host (a zombie counts: its parent has not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _lock_holder(path):
    """LOCK's {'pid', 'host'}, None when it names a dead process on this host (stale) or was left empty by a
    kill between its create and its write (a minute old or more)."""
    try:
        with open(path, encoding="utf-8") as f:
            holder = json.loads(f.read())
        pid, host = int(holder["pid"]), str(holder["host"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError):  # being written, or debris
        try:
            fresh = time.time() - os.path.getmtime(path) < 60
        except OSError:
            return None
        return {"pid": "?", "host": "?"} if fresh else None
    if host == socket.gethostname() and not _alive(pid):
        return None
    return {"pid": pid, "host": host}


@contextlib.contextmanager
def out_lock(out, flag="--out"):
    """`with out_lock(out):` this process owns `out`: out/LOCK, created with O_EXCL, holds its pid and host until
    the block ends (by return or by exception). A second process on the same directory is refused at once with a
    ValueError naming the holder; a LOCK whose process is dead (a killed run) is moved aside and taken, so a resume
    is never blocked. Creates `out` if needed and, when the block leaves it empty, removes what it created (a
    refused or failed command leaves --out as it was). Under torchrun only rank 0 should take it."""
    path, created, p = os.path.join(out, LOCK), [], os.path.abspath(out)
    while not os.path.exists(p):
        created.append(p)
        p = os.path.dirname(p)
    os.makedirs(out, exist_ok=True)
    try:
        for attempt in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                holder = _lock_holder(path)
                if holder is not None:
                    raise ValueError(f"{out} is in use by process {holder['pid']} on {holder['host']} (it holds "
                                     f"{path}); wait for it, or use another {flag} ({flag})") from None
                _drop_stale(path)
        else:
            raise ValueError(f"{path} keeps coming back: another process is taking {out} ({flag})")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
        try:
            yield path
        finally:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                with open(path, encoding="utf-8") as f:
                    mine = json.loads(f.read())["pid"] == os.getpid()
                if mine:  # never another process's lock
                    os.unlink(path)
    finally:
        for d in created:  # deepest first; one that holds anything stays
            try:
                os.rmdir(d)
            except OSError:
                break


def _drop_stale(path):
    """Move a stale LOCK aside and delete it. If, between the look and the move, another process replaced it
    with its own live lock, that one is put back (os.link fails rather than overwrite a newer one)."""
    aside = f"{path}.stale{os.getpid()}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if _lock_holder(aside) is not None:  # a live lock was moved: restore it
        with contextlib.suppress(OSError):
            os.link(aside, path)
    with contextlib.suppress(OSError):
        os.unlink(aside)


class atomic_dir:
    """`with atomic_dir(path) as tmp:` write files into tmp; on success tmp replaces path. A kill at any moment
    leaves either the old or the new directory (the old one renamed to path + '.old' for an instant, which
    checkpoint.py's `resolve_checkpoint` falls back to)."""

    def __init__(self, path):
        self.path = os.path.normpath(path)
        self.tmp = f"{self.path}.tmp{os.getpid()}"

    def __enter__(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        old = self.path + ".old"
        if os.path.exists(self.path):  # else a lone .old (an earlier interrupted save) stays until the rename
            shutil.rmtree(old, ignore_errors=True)
            os.rename(self.path, old)
        os.rename(self.tmp, self.path)
        shutil.rmtree(old, ignore_errors=True)
        return False


@contextlib.contextmanager
def atomic_open(path):
    """`with atomic_open(path) as f:` write bytes to f, as much as you like; on success f is fsynced and renamed
    over path (a temp file in the same directory until then), so a kill at any moment leaves the old file or the
    new one, never half of one. An exception inside the block removes the temp file and leaves path as it was."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; an ordinary file gets 0666 minus the umask
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_atomic(path, data):
    """Write str (UTF-8) or bytes to path atomically (atomic_open)."""
    with atomic_open(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def _umask():
    mask = os.umask(0o22)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_jsonl(path):
    """A JSONL file's records, blank lines skipped (files this code wrote; input corpora go through scan_docs)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path, obj):
    write_atomic(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def doc_line(doc):
    """One document as a JSONL line (bytes, with its newline) in the authors' chunk format plus an id."""
    rec = {"id": doc["id"], "chunks": [{"suffix": c["suffix"], "latent": c.get("latent"),
                                        **({"latent_ids": c["latent_ids"]} if c.get("latent_ids") is not None
                                           else {})} for c in doc["chunks"]]}
    try:  # readable UTF-8; \u escapes only for a string holding a lone surrogate (not encodable)
        return json.dumps(rec, ensure_ascii=False).encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return json.dumps(rec).encode("ascii") + b"\n"


def write_docs(path, docs):
    """Write docs (any iterable: a list, scan_docs) as JSONL in the authors' chunk format plus an id, atomically
    and one line at a time (memory of one document)."""
    with atomic_open(path) as f:
        for doc in docs:
            f.write(doc_line(doc))
