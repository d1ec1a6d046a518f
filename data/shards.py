"""Token shards: a chunked corpus tokenised once into flat arrays on disk, read back with np.memmap.

A shard directory holds (n_docs = D, n_chunks = C; `tok` is uint16 when the vocabulary fits, else uint32):
  x.bin        tok   (sum |X_i|,)   every chunk's text tokens, document after document
  z.bin        tok   (sum |Z_i|,)   every chunk's latent tokens, in the same order
  doc_off.bin  int64 (D + 1,)       document d's chunks are d_off[d]:d_off[d+1]
  x_off.bin    int64 (C + 1,)       chunk c's X tokens are x[x_off[c]:x_off[c+1]]
  z_off.bin    int64 (C + 1,)       chunk c's Z tokens are z[z_off[c]:z_off[c+1]] ...
  has_z.bin    uint8 (C,)           ... when has_z[c] is 1; 0 means "no latent" (an empty latent is 1 + empty span)
  id.bin       uint8 (sum |id|,)    document ids, UTF-8, concatenated
  id_off.bin   int64 (D + 1,)       document d's id is id[id_off[d]:id_off[d+1]]
  manifest.json  tokenizer name, n_vocab, dtype, per-file element counts and sha256, a content hash, counts
The manifest is written last, after every array is complete: a directory without one is unfinished. A writer
builds everything in a hidden temporary directory beside the destination and moves it in at the end, so a kill
leaves either the old complete directory or one without a manifest (plus the temporary directory), never a
manifest describing half-written arrays.

Opening costs O(1): nothing is read until a document is asked for, so memory and start-up do not grow with the
corpus (the OS pages in what is touched). `Shards` also wraps in-memory arrays (`from_docs`), which is how
train.py holds a small JSONL corpus, so both inputs go through the same code.
"""
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from data.corpus import read_json, write_json

FORMAT = "bolt-shards-1"
ARRAYS = ("x", "z", "doc_off", "x_off", "z_off", "has_z", "id", "id_off")
INDEX_DTYPES = {"doc_off": np.int64, "x_off": np.int64, "z_off": np.int64, "has_z": np.uint8, "id": np.uint8,
                "id_off": np.int64}


def token_dtype(n_vocab):
    """uint16 when every id fits (n_vocab <= 65536, e.g. GPT-2's 50261), else uint32 (e.g. Llama 3's 128k)."""
    if n_vocab < 1 or n_vocab > 2 ** 32:
        raise ValueError(f"vocabulary size {n_vocab} does not fit a uint32 token array")
    return np.uint16 if n_vocab <= 2 ** 16 else np.uint32


def flatten(edoc, dtype=np.int64):
    """An encoded document {'id', 'x': [ids], 'z': [ids or None]} -> (id, x tokens, x lengths, z tokens,
    z lengths with -1 for "no latent"), the form a writer appends (and a worker process sends cheaply)."""
    if len(edoc["x"]) != len(edoc["z"]) or not edoc["x"]:
        raise ValueError(f"document {edoc['id']!r}: needs one latent slot per chunk and at least one chunk")
    zs = [z for z in edoc["z"] if z is not None]
    cat = lambda parts: np.concatenate([np.asarray(p, dtype=dtype) for p in parts]) if parts else np.zeros(0, dtype)
    return (str(edoc["id"]), cat(edoc["x"]), np.array([len(x) for x in edoc["x"]], np.int64), cat(zs),
            np.array([-1 if z is None else len(z) for z in edoc["z"]], np.int64))


class ShardWriter:
    """Append documents, then `finish()` moves the arrays into `out` and writes the manifest last. Used as a
    context manager, an exception (or KeyboardInterrupt) before finish deletes the temporary directory and
    leaves `out` as it was. Holds at most `flush_tokens` tokens in memory."""

    def __init__(self, out, tokenizer, n_vocab, flush_tokens=1 << 22):
        self.out, self.tokenizer, self.n_vocab = out, tokenizer, n_vocab
        self.dtype = token_dtype(n_vocab)
        parent = os.path.dirname(os.path.abspath(out))
        os.makedirs(parent, exist_ok=True)
        self.tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(os.path.abspath(out))}.tmp-")
        self.files = {n: open(os.path.join(self.tmp, f"{n}.bin"), "wb") for n in ARRAYS}
        self.hash = {n: hashlib.sha256() for n in ARRAYS}
        self.count = {n: 0 for n in ARRAYS}
        self.buf = {n: [] for n in ARRAYS}
        self.buffered, self.flush_tokens = 0, flush_tokens
        self.ends = {"doc_off": 0, "x_off": 0, "z_off": 0, "id_off": 0}  # running ends of the offset arrays
        self.stats = {"docs": 0, "chunks": 0, "tokens": 0, "latents": 0, "latent_tokens": 0, "max_chunk_tokens": 0}
        for n in ("doc_off", "x_off", "z_off", "id_off"):
            self.buf[n].append(np.zeros(1, np.int64))  # every offset array starts at 0

    def add(self, doc_id, x, x_len, z, z_len):
        """One document in `flatten`'s form."""
        top = int(max(x.max(initial=0), z.max(initial=0)))
        if top >= self.n_vocab or min(x.min(initial=0), z.min(initial=0)) < 0:
            raise ValueError(f"document {doc_id!r}: token id {top} outside the vocabulary of {self.n_vocab}")
        if x_len.sum() != len(x) or np.maximum(z_len, 0).sum() != len(z) or len(x_len) != len(z_len):
            raise ValueError(f"document {doc_id!r}: chunk lengths do not add up to its token arrays")
        b = doc_id.encode("utf-8", "surrogatepass")
        has = z_len >= 0
        for name, lens in (("x_off", x_len), ("z_off", np.maximum(z_len, 0))):
            self.buf[name].append(self.ends[name] + np.cumsum(lens))
            self.ends[name] += int(lens.sum())
        for name, n in (("doc_off", len(x_len)), ("id_off", len(b))):
            self.ends[name] += n
            self.buf[name].append(np.array([self.ends[name]], np.int64))
        self.buf["x"].append(x.astype(self.dtype))
        self.buf["z"].append(z.astype(self.dtype))
        self.buf["has_z"].append(has.astype(np.uint8))
        self.buf["id"].append(np.frombuffer(b, np.uint8))
        s = self.stats
        s["docs"], s["chunks"], s["tokens"] = s["docs"] + 1, s["chunks"] + len(x_len), s["tokens"] + len(x)
        s["latents"], s["latent_tokens"] = s["latents"] + int(has.sum()), s["latent_tokens"] + len(z)
        s["max_chunk_tokens"] = max(s["max_chunk_tokens"], int(x_len.max()))
        self.buffered += len(x) + len(z)
        if self.buffered >= self.flush_tokens:
            self._flush()

    def _flush(self):
        for name, parts in self.buf.items():
            if parts:
                a = np.concatenate(parts).astype(INDEX_DTYPES.get(name, self.dtype), copy=False)
                data = a.tobytes()
                self.files[name].write(data)
                self.hash[name].update(data)
                self.count[name] += len(a)
                parts.clear()
        self.buffered = 0

    def finish(self, extra=None):
        """Close the arrays, move them (and any other file the caller put in self.tmp) into out, then write
        out/manifest.json = {tokenizer, n_vocab, counts, shards: {...}, **extra}. -> the manifest."""
        if self.stats["docs"] == 0:
            raise ValueError("no documents to write")
        self._flush()
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())  # the arrays are on disk before a manifest can say they are complete
            f.close()
        files = {n: {"dtype": np.dtype(INDEX_DTYPES.get(n, self.dtype)).name, "count": self.count[n],
                     "sha256": self.hash[n].hexdigest()} for n in ARRAYS}
        content = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        manifest = {"tokenizer": self.tokenizer, "n_vocab": self.n_vocab, "counts": dict(self.stats),
                    **(extra or {}), "shards": {"format": FORMAT, "content_sha256": content, "files": files}}
        os.makedirs(self.out, exist_ok=True)
        mpath = os.path.join(self.out, "manifest.json")
        if os.path.exists(mpath):  # from here until the new manifest exists, out is visibly incomplete
            os.unlink(mpath)
        for name in os.listdir(self.tmp):
            os.replace(os.path.join(self.tmp, name), os.path.join(self.out, name))
        write_json(mpath, manifest)
        os.rmdir(self.tmp)
        return manifest

    def abort(self):
        for f in self.files.values():
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        if kind is not None:
            self.abort()


def write_shards(out, edocs, tok, extra=None):
    """Encoded documents (any iterable of {'id', 'x': [ids], 'z': [ids or None]}, e.g. with the E-step's chosen
    latents as token ids) -> a shard directory `out`; -> its manifest."""
    with ShardWriter(out, tok.name, tok.n_vocab) as w:
        for d in edocs:
            w.add(*flatten(d))
        return w.finish(extra)


def is_shard_dir(path):
    """A directory whose manifest says it holds complete shards."""
    try:
        with open(os.path.join(path, "manifest.json")) as f:
            return "shards" in json.load(f)
    except (OSError, ValueError):
        return False


class Shards:
    """A corpus as flat token arrays (memmapped from a shard directory, or in memory): len(), doc(i), lens(i)."""

    def __init__(self, arrays, tokenizer, n_vocab, path=None):
        self.a, self.tokenizer, self.n_vocab, self.path = arrays, tokenizer, n_vocab, path

    def __len__(self):
        return len(self.a["doc_off"]) - 1

    def doc_id(self, i):
        a = self.a
        return a["id"][a["id_off"][i]:a["id_off"][i + 1]].tobytes().decode("utf-8", "surrogatepass")

    def lens(self, i):
        """Document i without reading its tokens: (id, X lengths, Z lengths with -1 for no latent), (n_chunks,)."""
        a = self.a
        c0, c1 = a["doc_off"][i], a["doc_off"][i + 1]
        zl = np.diff(a["z_off"][c0:c1 + 1])
        return self.doc_id(i), np.diff(a["x_off"][c0:c1 + 1]), np.where(a["has_z"][c0:c1] == 1, zl, -1)

    def doc(self, i):
        """Document i as data/layout.encode_doc returns it: {'id', 'x': [ids], 'z': [ids or None]}."""
        a = self.a
        c0, c1 = a["doc_off"][i], a["doc_off"][i + 1]
        xo, zo, has = a["x_off"][c0:c1 + 1], a["z_off"][c0:c1 + 1], a["has_z"][c0:c1]
        x, z = a["x"][xo[0]:xo[-1]].tolist(), a["z"][zo[0]:zo[-1]].tolist()  # one read per array
        xo, zo = (xo - xo[0]).tolist(), (zo - zo[0]).tolist()
        return {"id": self.doc_id(i), "x": [x[xo[k]:xo[k + 1]] for k in range(c1 - c0)],
                "z": [z[zo[k]:zo[k + 1]] if has[k] else None for k in range(c1 - c0)]}


def open_shards(path):
    """Memmap a shard directory (O(1): checks the manifest and file sizes, reads no tokens). ValueError when
    it is incomplete, of another format, or its files do not match the manifest."""
    try:
        with open(os.path.join(path, "manifest.json")) as f:
            m = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: no manifest.json (not a shard directory, or its writing never finished: "
                         "run python -m data.prepare)") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}/manifest.json: unreadable ({e})") from None
    sh = m.get("shards")
    if not isinstance(sh, dict) or sh.get("format") != FORMAT:
        raise ValueError(f"{path}: manifest.json describes no {FORMAT} shards (re-run python -m data.prepare)")
    arrays = {}
    for name in ARRAYS:
        fp = os.path.join(path, f"{name}.bin")
        try:
            info = sh["files"][name]
            dt = np.dtype(info["dtype"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}/manifest.json: no valid entry for {name}.bin ({e})") from None
        size = os.path.getsize(fp) if os.path.exists(fp) else -1
        if size != info["count"] * dt.itemsize:
            raise ValueError(f"{fp}: {size} bytes, the manifest says {info['count']} x {dt.name}")
        # np.memmap refuses empty files; an empty array (e.g. no latents at all) needs no file mapping
        arrays[name] = np.memmap(fp, dtype=dt, mode="r") if info["count"] else np.zeros(0, dt)
    return Shards(arrays, m["tokenizer"], m["n_vocab"], path)


def verify_shards(path):
    """Re-hash every array against the manifest (reads the whole corpus once); ValueError on a mismatch."""
    m = read_json(os.path.join(path, "manifest.json"))
    for name, info in m["shards"]["files"].items():
        h = hashlib.sha256()
        with open(os.path.join(path, f"{name}.bin"), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != info["sha256"]:
            raise ValueError(f"{path}/{name}.bin: content differs from the manifest's sha256")
    return m


def from_docs(edocs, tok):
    """Encoded documents -> in-memory Shards (numpy arrays, ~2-4 bytes per token instead of a Python list's 8+)."""
    dtype = token_dtype(tok.n_vocab)
    parts = {n: [] for n in ("id", "x", "x_len", "z", "z_len")}
    for d in edocs:
        for n, v in zip(("id", "x", "x_len", "z", "z_len"), flatten(d, dtype)):
            parts[n].append(v)
    if not parts["id"]:
        raise ValueError("no documents")
    ids = [s.encode("utf-8", "surrogatepass") for s in parts["id"]]
    x_len, z_len = np.concatenate(parts["x_len"]), np.concatenate(parts["z_len"])
    cum = lambda v: np.concatenate([[0], np.cumsum(v)]).astype(np.int64)
    arrays = {"x": np.concatenate(parts["x"]), "z": np.concatenate(parts["z"]),
              "doc_off": cum([len(v) for v in parts["x_len"]]), "x_off": cum(x_len),
              "z_off": cum(np.maximum(z_len, 0)), "has_z": (z_len >= 0).astype(np.uint8),
              "id": np.frombuffer(b"".join(ids), np.uint8), "id_off": cum([len(b) for b in ids])}
    return Shards(arrays, tok.name, tok.n_vocab)
