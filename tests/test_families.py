"""The models users already have: timm architectures (random weights, a local checkpoint the test writes, hub
weights out of reach), a user's TorchScript file and Python entry point. Nothing is downloaded."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import write_blobs
from lookalike.cli import main
from lookalike.exceptions import ConfigError, ModelError, UnknownModelError
from lookalike.models import get_embedder, list_models

ARCH = "resnet10t"  # a small timm architecture: 512-d features


def _images(tmp_path: Path) -> list[Image.Image]:
    return [Image.open(p) for p in write_blobs(tmp_path / "blobs", "red", 3, seed=1, size=40)]


def test_a_timm_checkpoint_gives_its_models_pooled_features(tmp_path: Path) -> None:
    """A fine-tuned classifier's checkpoint (7 classes): its features before the classifier, timm's own
    preprocessing; another architecture's checkpoint is named as not fitting."""
    import timm
    import torch

    torch.manual_seed(5)
    model = timm.create_model(ARCH, num_classes=7).eval()
    checkpoint = tmp_path / "finetuned.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, checkpoint)
    embedder = get_embedder(f"timm:{ARCH}", pretrained=str(checkpoint), image_size=64)
    assert embedder.dim == 512 and embedder.key.startswith(f"timm-{ARCH}-file-") and embedder.key.endswith("64px")
    images = _images(tmp_path)
    batch = embedder.prepare(images)
    assert batch.shape == (3, 3, 64, 64)
    with torch.inference_mode():
        expected = model.forward_head(model.forward_features(batch), pre_logits=True).numpy()  # type: ignore[operator]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed_pil(images), expected, atol=1e-4)
    assert embedder.spec == {"name": f"timm:{ARCH}", "pretrained": str(checkpoint), "image_size": 64}
    rebuilt = get_embedder(**embedder.spec)  # what a run records rebuilds the same model
    np.testing.assert_allclose(rebuilt.embed_pil(images), expected, atol=1e-4)

    other = tmp_path / "other.pt"
    torch.save(timm.create_model("resnet18").state_dict(), other)
    with pytest.raises(ModelError, match="does not fit the architecture"):
        get_embedder(f"timm:{ARCH}", pretrained=str(other))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a checkpoint torch can read"):
        get_embedder(f"timm:{ARCH}", pretrained=str(tmp_path / "junk.pt"))


def test_timm_names_and_weights_out_of_reach_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import lookalike.models as models

    assert {"timm", "torchscript", "python"} <= set(list_models())
    with pytest.raises(UnknownModelError, match="unknown timm architecture 'resnet9000'"):
        get_embedder("timm:resnet9000")
    with pytest.raises(ConfigError, match="timm:ARCH"):
        get_embedder("timm")
    monkeypatch.setattr(models, "_hub_reachable", lambda endpoint: False)  # as on these machines, for sure
    t = time.perf_counter()
    with pytest.raises(ModelError) as err:
        get_embedder(f"timm:{ARCH}.a1_in1k")
    assert time.perf_counter() - t < 30  # no minute of retries
    assert "\n" not in str(err.value) and "--pretrained PATH" in str(err.value)
    random = get_embedder(f"timm:{ARCH}", pretrained="random")
    assert random.key == f"timm-{ARCH}-random-176px"  # timm's own input size for the architecture
    np.testing.assert_array_equal(random.embed_pil([Image.new("RGB", (32, 32), "red")]),
                                  get_embedder(f"timm:{ARCH}", pretrained="random").embed_pil(
                                      [Image.new("RGB", (32, 32), "red")]))  # seeded: the same weights each time


class _Net:
    """A user's own model: a small convnet whose output is a feature map (pooled by lookalike)."""

    @staticmethod
    def build() -> object:
        import torch

        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                   torch.nn.Conv2d(8, 16, 3, stride=2)).eval()


def test_a_users_torchscript_file_and_python_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    net = _Net.build()
    assert isinstance(net, torch.nn.Module)
    path = tmp_path / "mine.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    embedder = get_embedder(f"torchscript:{path}", image_size=32, normalize="half")
    assert embedder.dim == 16 and embedder.key.endswith("-32px-half")
    images = _images(tmp_path)
    pixels = torch.stack([torch.from_numpy(np.asarray(im.resize((32, 32), Image.Resampling.BICUBIC), np.float32))
                          .permute(2, 0, 1) / 255 for im in images])
    with torch.inference_mode():
        expected = net((pixels - 0.5) / 0.5).mean(dim=(2, 3)).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed_pil(images), expected, atol=1e-3)

    module = tmp_path / "user_models.py"
    module.write_text("import torch\n\ndef build():\n    torch.manual_seed(0)\n"
                      "    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),\n"
                      "                               torch.nn.Conv2d(8, 16, 3, stride=2)).eval()\n"
                      "\ndef not_a_model():\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = get_embedder("python:user_models:build", image_size=32, normalize="half")
    np.testing.assert_allclose(entry.embed_pil(images), expected, atol=1e-3)  # the same weights, the same vectors
    assert entry.key.startswith("python-user_models-build-")

    with pytest.raises(ModelError, match=r"not a torch\.nn\.Module"):
        get_embedder("python:user_models:not_a_model")
    with pytest.raises(ModelError, match="cannot import 'nope'"):
        get_embedder("python:user_models:nope")
    with pytest.raises(ModelError, match="not a file"):
        get_embedder(f"torchscript:{tmp_path / 'missing.pt'}")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelError, match="not a TorchScript file"):
        get_embedder(f"torchscript:{tmp_path / 'junk.pt'}")
    with pytest.raises(ConfigError, match="normalize must be one of"):
        get_embedder(f"torchscript:{path}", normalize="weird")
    with pytest.raises(ConfigError, match="has its own preprocessing"):
        get_embedder("random-tiny-clip", normalize="imagenet")
    flat = tmp_path / "flat.pt"
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))),
                   str(flat))
    with pytest.raises(ModelError, match="does not take a batch of 3 x 224 x 224"):
        get_embedder(f"torchscript:{flat}")


def test_the_cli_embeds_with_a_timm_model_and_searches_by_it(tmp_path: Path, dataset_name: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The whole path: a dataset embedded with a timm architecture, its run rebuilt for an image query."""
    write_blobs(tmp_path / "tree" / "red", "red", 4, seed=2)
    write_blobs(tmp_path / "tree" / "blue", "blue", 4, seed=3)
    assert main(["load", str(tmp_path / "tree"), "--name", dataset_name]) == 0
    assert main(["embed", dataset_name, "--model", f"timm:{ARCH}", "--pretrained", "random",
                 "--image-size", "48"]) == 0
    capsys.readouterr()
    query = tmp_path / "tree" / "red" / "red-2-0.png"
    assert main(["similar", dataset_name, "--image", str(query), "-k", "1", "--json"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)
    assert hit["filepath"] == str(query)  # the image itself, embedded again by the rebuilt model
    assert main(["models"]) == 0
    assert "timm:ARCH" in capsys.readouterr().out


def test_hugging_face_models_from_a_local_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny CLIP and a tiny DINOv2 built from configs here and saved as a user's fine-tune would be: the
    model's own processor, CLIP's projected image features, DINOv2's pooled output; a hub id out of reach is
    one line."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, Dinov2Config, Dinov2Model, ViTImageProcessor

    import lookalike.models as models

    torch.manual_seed(0)
    tiny: dict[str, Any] = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                            "num_attention_heads": 2}
    clip = CLIPModel(CLIPConfig(vision_config={**tiny, "image_size": 32, "patch_size": 8},
                                text_config={**tiny, "vocab_size": 99}, projection_dim=16)).eval()
    clip.save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "clip")
    dino = Dinov2Model(Dinov2Config(**tiny, image_size=32, patch_size=8)).eval()
    dino.save_pretrained(tmp_path / "dino")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "dino")

    images = _images(tmp_path)
    embedder = get_embedder(f"hf:{tmp_path / 'clip'}")
    assert embedder.dim == 16 and not embedder.has_text  # no tokenizer saved with it: image only
    pixels = CLIPImageProcessor.from_pretrained(tmp_path / "clip")(images=images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        out = clip.get_image_features(pixel_values=pixels)
    expected = (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed_pil(images), expected, atol=1e-4)
    assert embedder.key.startswith("hf-") and "-dir-" in embedder.key

    image_only = get_embedder(f"hf:{tmp_path / 'dino'}")
    assert image_only.dim == 32 and image_only.embed_pil(images).shape == (3, 32)
    random = get_embedder(f"hf:{tmp_path / 'dino'}", pretrained="random")
    assert random.key.endswith("-random") and not np.allclose(random.embed_pil(images), image_only.embed_pil(images))

    monkeypatch.setattr(models, "_hub_reachable", lambda endpoint: False)
    t = time.perf_counter()
    with pytest.raises(ModelError) as err:
        get_embedder("hf:nobody/no-such-model")
    assert time.perf_counter() - t < 30 and "\n" not in str(err.value) and "save_pretrained" in str(err.value)
