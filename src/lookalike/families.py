"""Model families for the models users already have, registered beside ``clip:`` (see :mod:`lookalike.models`):

- ``timm:ARCH`` — any timm architecture (``timm:resnet50``, ``timm:vit_small_patch14_dinov2.lvd142m``): the pooled
  features before its classifier. ``pretrained``: none (timm's own weights for the tag, fetched from the model
  hub once and cached), a local checkpoint file (a state dict, or one under ``state_dict`` / ``model``; its
  classifier may differ), or ``random``. Preprocessing is timm's own for the model, at ``image_size`` if given.
- ``hf:MODEL_ID`` — a Hugging Face vision model, by hub id or local directory (``save_pretrained``): CLIP and
  SigLIP with their text towers (where a tokenizer comes with it), DINOv2, ViT and other image-only backbones
  (their pooled output, else the first token). ``pretrained``: ``random`` builds the architecture from its
  config with random weights. Preprocessing is the model's own image processor.
- ``torchscript:PATH`` — a TorchScript file (``torch.jit.save``) of a user's own model, e.g. their trained
  classifier cut at its penultimate layer; ``python:MODULE:FUNCTION`` — a function returning a
  ``torch.nn.Module``. Both take images at ``image_size`` (default 224) normalised by ``normalize`` (``imagenet``,
  the default; ``clip``; ``half``: 0.5 / 0.5; ``none``); a feature map output is average-pooled.

Each gives L2-normalised float32 vectors (image only: no text tower), and a key that names its weights and
preprocessing, so other weights or another input never mix into a cache or a collection.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigError, ModelError, UnknownModelError
from .models import Embedder, _file_digest, _to_rgb, hub_weights, register_model

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

NORMALIZE = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
             "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
             "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
             "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))}
DEFAULT_SIZE = 224
MIN_VOCABULARY = 100  # a tokenizer with fewer words knows none


def _timm(arch: str | None, pretrained: str | None, image_size: int | None, device: str) -> Embedder:
    import timm
    import torch
    from timm.data import create_transform, resolve_data_config

    if not arch:
        raise ConfigError("timm needs an architecture: timm:ARCH, e.g. timm:resnet50 (timm.list_models() lists them)")
    base = arch.split(".", 1)[0]
    if not timm.is_model(base):
        raise UnknownModelError(f"unknown timm architecture {base!r}; see timm.list_models(), e.g. resnet50, "
                                "convnext_tiny, vit_small_patch14_dinov2")
    if pretrained == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = timm.create_model(arch, pretrained=False, num_classes=0)
        weights = "random"
        log.warning("timm:%s has random weights: fine for testing plumbing, meaningless for search", arch)
    elif pretrained:
        if not Path(pretrained).is_file():
            raise ModelError(f"timm:{arch} checkpoint {pretrained!r} is not a file")
        model = timm.create_model(arch, pretrained=False)
        _load_checkpoint(model, pretrained, f"timm:{arch}")
        model.reset_classifier(0)  # type: ignore[operator]  # timm types it loosely
        weights = f"file-{_file_digest(pretrained)}"
    else:
        model = _hub_timm(arch)
        weights = "hub"
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    config = resolve_data_config({"input_size": (3, image_size, image_size)} if image_size else {}, model=model)
    size = int(config["input_size"][-1])
    preprocess = create_transform(**config)
    dim = int(model.num_features)  # type: ignore[arg-type]  # timm types it loosely
    return Embedder(name=f"timm:{arch}", key=f"timm-{arch}-{weights}-{size}px", dim=dim,
                    preprocess=_rgb_first(preprocess), image_tower=model, device=device,
                    spec={"name": f"timm:{arch}", "pretrained": pretrained, "image_size": image_size})


def _hub_timm(arch: str) -> Any:
    """timm's pretrained weights for ``arch`` (from the model hub once, then its cache)."""
    import timm

    with hub_weights(f"timm:{arch} pretrained weights", "give a local checkpoint with --pretrained PATH, or "
                     "--pretrained random to test plumbing"):
        return timm.create_model(arch, pretrained=True, num_classes=0)


def _load_checkpoint(model: torch.nn.Module, path: str, name: str) -> None:
    """Load a state dict (or one under ``state_dict`` / ``model``) into ``model``; the classifier may differ (it
    is dropped), any other missing or unexpected tensor is a ModelError naming it."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelError(f"{name}: {path} is not a checkpoint torch can read ({str(err).splitlines()[0][:160]})") \
            from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelError(f"{name}: {path} holds no state dict")
    head = _classifier_prefix(model)  # dropped: features are read before it, and a fine-tuned one differs
    try:
        missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if not k.startswith(head)},
                                                    strict=False)
    except RuntimeError as err:  # tensors of other shapes
        detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), "")[:200]
        raise ModelError(f"{name}: {path} does not fit the architecture ({detail})") from err
    missing = [k for k in missing if not k.startswith(head)]
    if missing or unexpected:
        raise ModelError(f"{name}: {path} does not fit the architecture ({len(missing)} tensors missing, e.g. "
                         f"{(missing or ['-'])[0]}; {len(unexpected)} unexpected, e.g. {(unexpected or ['-'])[0]})")


def _classifier_prefix(model: Any) -> str:
    """The state-dict prefix of a timm model's classifier (``fc.``, ``head.fc.``)."""
    name = getattr(model, "default_cfg", {}).get("classifier")
    name = name[0] if isinstance(name, list | tuple) else name
    return f"{name}." if name else "\0"


def _rgb_first(transform: Callable[[Any], Any]) -> Callable[[Any], Any]:
    from torchvision import transforms

    return transforms.Compose([transforms.Lambda(_to_rgb), transform])


def _hf(arch: str | None, pretrained: str | None, image_size: int | None, device: str) -> Embedder:
    import torch

    if not arch:
        raise ConfigError("hf needs a model: hf:MODEL_ID (a hub id such as facebook/dinov2-small, or a local "
                          "directory written by save_pretrained)")
    local = Path(arch).is_dir()
    with hub_weights(f"hf:{arch}", "give a local directory written by save_pretrained (hf:/path/to/model)", local):
        model, processor, tokenizer = _hf_parts(arch, pretrained == "random")
    model = model.to(device).eval()
    size = {} if image_size is None else {"size": {"height": image_size, "width": image_size},
                                          "crop_size": {"height": image_size, "width": image_size}}

    def preprocess(image: Any) -> torch.Tensor:
        return processor(images=_to_rgb(image), return_tensors="pt", **size)["pixel_values"][0]

    def image_tower(batch: torch.Tensor) -> torch.Tensor:
        if hasattr(model, "get_image_features"):  # CLIP, SigLIP: the projected image embedding
            out = model.get_image_features(pixel_values=batch)
            return out if isinstance(out, torch.Tensor) else out.pooler_output  # transformers 5: an output
        out = model(pixel_values=batch)
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]

    text_tower = None
    if tokenizer is not None and hasattr(model, "get_text_features"):
        def text_tower(texts: list[str]) -> torch.Tensor:
            tokens = tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt").to(device)
            out = model.get_text_features(**tokens)
            return out if isinstance(out, torch.Tensor) else out.pooler_output

    with torch.inference_mode():
        dim = int(image_tower(preprocess(_blank()).unsqueeze(0).to(device)).shape[1])
    weights = "random" if pretrained == "random" else (
        f"dir-{_folder_digest(Path(arch))}" if local else str(getattr(model.config, "_commit_hash", None) or "hub"))
    key = f"hf-{arch.strip('/').replace('/', '--')}-{weights}" + (f"-{image_size}px" if image_size else "")
    return Embedder(name=f"hf:{arch}", key=key, dim=dim, preprocess=preprocess, image_tower=image_tower,
                    text_tower=text_tower, device=device,
                    spec={"name": f"hf:{arch}", "pretrained": pretrained, "image_size": image_size})


def _hf_parts(source: str, random: bool) -> tuple[Any, Any, Any]:
    """A Hugging Face model (random weights from its config where asked), its image processor, its tokenizer
    (None where it has none: image only)."""
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

    if random:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = AutoModel.from_config(AutoConfig.from_pretrained(source))
        log.warning("hf:%s has random weights: fine for testing plumbing, meaningless for search", source)
    else:
        model = AutoModel.from_pretrained(source)
    processor = AutoImageProcessor.from_pretrained(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError):
        tokenizer = None
    if tokenizer is not None and len(tokenizer) < MIN_VOCABULARY:  # transformers 5 builds an empty one (every
        tokenizer = None                                          # word unknown) where no tokenizer files are
    return model, processor, tokenizer


def _blank() -> Any:
    from PIL import Image

    return Image.new("RGB", (64, 64))


def _folder_digest(folder: Path) -> str:
    """The weights and settings of a local model directory: another fine-tune is another model."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.name.encode())
        h.update(_file_digest(str(path)).encode())
    return h.hexdigest()[:12]


def _user_model(module: torch.nn.Module, name: str, key: str, spec: dict[str, Any], image_size: int | None,
                normalize: str | None, device: str) -> Embedder:
    """An embedder around a user's own module: resized, centre-cropped, normalised; its output pooled to a vector."""
    import torch
    from torchvision import transforms

    normalize = normalize or "imagenet"
    if normalize not in NORMALIZE:
        raise ConfigError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
    size = image_size or DEFAULT_SIZE
    mean, std = NORMALIZE[normalize]
    preprocess = transforms.Compose([
        transforms.Lambda(_to_rgb), transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(size), transforms.ToTensor(), transforms.Normalize(mean, std)])
    module = module.to(device).eval()

    def tower(batch: torch.Tensor) -> torch.Tensor:
        out = module(batch)
        if isinstance(out, tuple | list):
            out = out[0]
        return out.mean(dim=(2, 3)) if out.ndim == 4 else out.flatten(1)

    try:
        with torch.inference_mode():
            dim = int(tower(torch.zeros(1, 3, size, size, device=device)).shape[1])
    except Exception as err:
        raise ModelError(f"{name} does not take a batch of 3 x {size} x {size} images "
                         f"({str(err).splitlines()[0][:200]}); set embed.image_size to its input size") from err
    return Embedder(name=name, key=f"{key}-{size}px-{normalize}", dim=dim, preprocess=preprocess, image_tower=tower,
                    device=device, spec={**spec, "image_size": image_size, "normalize": normalize})


def _torchscript(arch: str | None, pretrained: str | None, image_size: int | None, device: str,
                 normalize: str | None = None) -> Embedder:
    import torch

    if not arch or not Path(arch).is_file():
        raise ModelError(f"torchscript:PATH needs a TorchScript file (torch.jit.save); {arch!r} is not a file")
    try:
        module = torch.jit.load(arch, map_location="cpu")
    except Exception as err:
        raise ModelError(f"torchscript:{arch} is not a TorchScript file ({str(err).splitlines()[0][:160]})") from err
    return _user_model(module, f"torchscript:{arch}", f"torchscript-{_file_digest(arch)}",
                       {"name": f"torchscript:{arch}"}, image_size, normalize, device)


def _python(arch: str | None, pretrained: str | None, image_size: int | None, device: str,
            normalize: str | None = None) -> Embedder:
    import torch

    where, _, function = (arch or "").rpartition(":")
    if not where or not function:
        raise ConfigError(f"python:MODULE:FUNCTION names a function returning a torch.nn.Module; got {arch!r}")
    try:
        factory = getattr(importlib.import_module(where), function)
    except (ImportError, AttributeError) as err:
        raise ModelError(f"python:{arch}: cannot import {function!r} from {where!r} ({err})") from err
    module = factory()
    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"python:{arch} returned a {type(module).__name__}, not a torch.nn.Module")
    digest = hashlib.sha256()  # its weights name the vectors: retrained weights are another model
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return _user_model(module, f"python:{arch}", f"python-{where}-{function}-{digest.hexdigest()[:12]}",
                       {"name": f"python:{arch}"}, image_size, normalize, device)


register_model("timm", _timm)
register_model("hf", _hf)
register_model("torchscript", _torchscript)
register_model("python", _python)
