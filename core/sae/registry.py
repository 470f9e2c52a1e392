"""SAEs in the lake: `lake/saes/<sae_id>/`, trained here (core/sae/training.py) or brought by a user.

A folder holds the sae-lens inference files (`cfg.json`, `sae_weights.safetensors`, loaded with
`SAE.load_from_disk`) plus `sculpt.json` (model, layer, dataset, d_in, width, k, tokens, quality).
A folder is built hidden beside its place and swapped in, so a reader never sees half an SAE.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sculpt.errors import UserError
from sculpt.lake.store import Lake, check_name, slug, write_json_atomic

if TYPE_CHECKING:
    from sae_lens import SAE

SAE_DIR = "saes"
META_FILE = "sculpt.json"


def sae_dir(lake: Lake, sae_id: str) -> Path:
    return lake.root / SAE_DIR / slug(sae_id)


def _read_folder(folder: Path, device: str = "cpu") -> Any:
    """sae-lens's `SAE.load_from_disk`, with a bad or missing `cfg.json` or weights file as one
    line naming the file and the fix (a folder may come from someone else)."""
    from sae_lens import SAE

    config = folder / "cfg.json"
    if not config.is_file():
        raise UserError(f"sae {folder}: no cfg.json; pass a folder saved by sae-lens")
    try:
        json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(
            f"{config}: not readable JSON ({str(exc).splitlines()[0][:100]}); "
            "save the SAE again with sae-lens (`SAE.save_model`)"
        ) from None
    weights = folder / "sae_weights.safetensors"
    if not weights.is_file():
        raise UserError(
            f"sae {folder}: no sae_weights.safetensors; pass a folder saved by sae-lens"
        )
    try:
        return SAE.load_from_disk(folder, device=device)
    except Exception as exc:  # noqa: BLE001 — sae-lens reports bad files in many types
        raise UserError(
            f"sae {folder}: cfg.json or sae_weights.safetensors is not an SAE sae-lens can load "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}); "
            "save it again with sae-lens"
        ) from None


# ---- reading activations ----------------------------------------------------------------------


def _staging(lake: Lake, sae_id: str) -> Path:
    check_name(sae_id, "sae id")  # one id, one folder: `a b` and `a-b` never share an SAE
    lake.require_writable()
    folder = lake.root / SAE_DIR / f".{slug(sae_id)}.{uuid.uuid4().hex[:8]}.staging"
    folder.mkdir(parents=True)
    return folder


def _finish(lake: Lake, folder: Path, sae_id: str, info: dict[str, Any]) -> None:
    """Write sculpt.json into the staging folder and swap it into place."""
    write_json_atomic(info, folder / META_FILE)
    target = sae_dir(lake, sae_id)
    trash = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.trash")
    if target.exists():
        os.replace(target, trash)
    os.replace(folder, target)
    shutil.rmtree(trash, ignore_errors=True)


def load_sae(lake: Lake, sae_id: str, device: str | None = None) -> tuple[SAE[Any], dict[str, Any]]:
    """The SAE registered as `sae_id` (eval mode) and its sculpt.json."""
    folder = sae_dir(lake, sae_id)
    if not (folder / META_FILE).exists():
        known = ", ".join(s["sae_id"] for s in list_saes(lake)) or "none"
        raise UserError(
            f"sae {sae_id}: not in lake {lake.root} (known: {known}); "
            "train one with `sculpt sae train` or register one with `sculpt sae load`"
        )
    info = _read_meta(folder / META_FILE)
    sae = _read_folder(folder, device or "cpu")
    sae.eval()
    return sae, info


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        info = None
    if not isinstance(info, dict):
        raise UserError(
            f"{path}: not an SAE record (a JSON object); register the SAE again with "
            "`sculpt sae load FOLDER`"
        )
    info.setdefault("sae_id", path.parent.name)
    return info


def list_saes(lake: Lake) -> list[dict[str, Any]]:
    """sculpt.json of every SAE in the lake, by id."""
    base = lake.root / SAE_DIR
    if not base.exists():
        return []
    out = []
    for meta in sorted(base.glob(f"*/{META_FILE}")):
        if not meta.parent.name.startswith("."):
            out.append(_read_meta(meta))
    return out


def model_hidden_size(spec: str | None) -> tuple[str, int]:
    """(model name, hidden size) read from the model's config.json without loading weights."""
    from sculpt.scan import models

    if spec == models.TINY_MODEL:
        tiny = models.tiny_model()
        return tiny.name, tiny.d_model
    if spec in (None, models.DEFAULT_MODEL):
        folder, name = models.default_model_folder(), models.DEFAULT_MODEL_NAME
    elif Path(spec).expanduser().is_dir():
        folder, name = Path(spec).expanduser(), Path(spec).expanduser().resolve().name
    else:
        folder, name = Path(models._cached_hub_folder(spec)), spec
    config = json.loads((folder / "config.json").read_text())
    config = config.get("text_config", config)
    return name, int(config.get("hidden_size") or config.get("n_embd") or config["d_model"])


def register_sae(
    lake: Lake,
    source: str,
    sae_id: str | None = None,
    layer: int | None = None,
    model: str | None = None,
    release_id: str | None = None,
) -> dict[str, Any]:
    """Copy a local sae-lens folder or a sae-lens release into the lake as `sae_id`."""
    sae = _load_external(source, release_id)
    layer = layer if layer is not None else _layer_from_hook(sae.cfg.metadata.hook_name)
    if layer is None:
        raise UserError(f"sae {source}: cannot tell which layer it reads; pass --layer L")
    model_name, hidden = model_hidden_size(model)
    if sae.cfg.d_in != hidden:
        raise UserError(
            f"sae {source}: d_in {sae.cfg.d_in} does not match {model_name}'s hidden size "
            f"{hidden}; pass the --model it was trained on"
        )
    sae_id = check_name(sae_id, "--sae-id") if sae_id else None
    sae_id = sae_id or slug(f"{Path(source).name}-{release_id or ''}".strip("-"))[:100]
    info = {
        "sae_id": sae_id,
        "source": source,
        "release_id": release_id,
        "model": slug(model_name),
        "layer": layer,
        "dataset": None,
        "d_in": sae.cfg.d_in,
        "width": sae.cfg.d_sae,
        "k": getattr(sae.cfg, "k", None),
        "tokens": None,
        "quality": None,
        "created": time.time(),
    }
    folder = _staging(lake, sae_id)
    try:
        sae.save_model(folder)
        _finish(lake, folder, sae_id, info)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return info


def _load_external(source: str, release_id: str | None) -> Any:
    from sae_lens import SAE
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    path = Path(source).expanduser()
    if path.is_dir():
        return _read_folder(path)
    directory = get_pretrained_saes_directory()
    if source not in directory:
        raise UserError(
            f"sae {source}: neither a local folder nor a sae-lens release; pass a folder with "
            "cfg.json and sae_weights.safetensors"
        )
    ids = list(directory[source].saes_map)
    if release_id not in ids:
        raise UserError(
            f"sae {source}: pass --release-id, one of {', '.join(ids[:8])}"
            + (" …" if len(ids) > 8 else "")
        )
    try:
        return SAE.from_pretrained(source, release_id)
    except Exception as exc:  # noqa: BLE001 — offline hub errors come in many types
        raise UserError(
            f"sae {source}/{release_id}: cannot be fetched here ({type(exc).__name__}: sculpt "
            "runs offline); download it elsewhere and pass its local folder instead"
        ) from None


def _layer_from_hook(hook_name: str | None) -> int | None:
    """`blocks.8.hook_resid_post` → 8; `blocks.8.hook_resid_pre` → 7 (our acts follow block L)."""
    import re

    match = re.search(
        r"(?:blocks|layers)\.(\d+)\.(?:hook_)?(resid_pre|resid_post)?", hook_name or ""
    )
    if not match:
        return None
    layer = int(match.group(1))
    return layer - 1 if match.group(2) == "resid_pre" else layer
