"""``lookalike`` command line: load, embed, similar, embeddings, run, app, models, and a verb per registered
finder (mislabels, duplicates, map, ...: see :mod:`lookalike.finders`), made from its options."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from . import warm
from .config import Config, load_config
from .exceptions import LookalikeError
from .families import NORMALIZE
from .finders.base import Option


@contextmanager
def _bar(*stages: str) -> Iterator[Callable[[int, int], None]]:
    """tqdm bars driven by ``progress(done, total)`` callbacks (on stderr, so --json stays clean): one per
    stage, in turn; each call with ``done == 0`` starts the next stage (the last one's name is reused)."""
    from tqdm import tqdm

    bars: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not bars or done == 0:
            if bars:
                bars[-1].close()
            desc = stages[min(len(bars), len(stages) - 1)]
            bars.append(tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=total == 0))
        bars[-1].update(done - bars[-1].n)

    try:
        yield progress
    finally:
        if bars:
            bars[-1].close()


def _config(args: argparse.Namespace, **sections: dict[str, Any]) -> Config:
    index = {"url": getattr(args, "qdrant_url", None), "api_key": getattr(args, "qdrant_api_key", None)}
    engine = {"name": getattr(args, "engine", None), "address": getattr(args, "ray_address", None)}
    return load_config(getattr(args, "config", None), {"index": index, "engine": engine, **sections})


def cmd_load(args: argparse.Namespace) -> int:
    from .datasets import load

    dataset = load(args.source, name=args.name, format=args.format, label_field=args.label_field, progress=True)
    print(f"dataset {dataset.name!r}: {len(dataset)} samples")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from .api import embed, import_vectors
    from .exceptions import ConfigError

    config = _config(args, embed={"model": args.model, "pretrained": args.pretrained, "image_size": args.image_size,
                                  "batch_size": args.batch_size, "device": args.device,
                                  "precision": args.precision, "patches": args.patches, "margin": args.margin,
                                  "normalize": args.normalize})
    imported = args.vectors or args.from_field
    if imported and args.margin is not None:
        raise ConfigError("--margin crops boxes for a model; imported vectors have none")
    if not imported and (args.ids or args.model_name):
        raise ConfigError("--ids and --model-name go with --vectors or --from-field")
    if imported and (args.model or args.pretrained or args.image_size or args.normalize):
        raise ConfigError("imported vectors have no model: --model, --pretrained, --image-size and --normalize do "
                          "not apply (name the run with --model-name)")
    if imported:
        with _bar("thumbnails") as progress:
            s = import_vectors(args.name, args.vectors, args.ids, from_field=args.from_field,
                               model_name=args.model_name, patches=args.patches, config=config,
                               rebuild=args.rebuild, progress=progress)
    else:
        with _bar("embedding") as progress:
            s = embed(args.name, config=config, rebuild=args.rebuild, progress=progress)
    rows = f"boxes of {s.patches!r}" if s.patches else "samples"
    print(f"{s.model} ({s.model_key}, {s.dim}-d): {s.embedded}/{s.samples} {rows} embedded "
          f"({s.computed} computed, {s.cached} cached); {s.upserted} upserted, {s.relabelled} relabelled, "
          f"{s.deleted} removed in {s.collection}")
    for path, err in list(s.failed.items())[:20]:
        print(f"  skipped {path}: {err}", file=sys.stderr)
    if len(s.failed) > 20:
        print(f"  ... and {len(s.failed) - 20} more (field embed_error)", file=sys.stderr)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    from .api import similar, similar_view
    from .tables import format_matches

    matches = similar(
        args.name, image=args.image, sample=args.sample, text=args.text, like=args.like or (),
        unlike=args.unlike or (), k=args.k, min_score=args.min_score, label=args.label, split=args.split,
        tag=args.tag, patches=args.patches, model=args.model, config=_config(args),
    )
    if args.json:
        print(json.dumps([m.to_dict() for m in matches], indent=2))
    else:
        print(format_matches(matches))
        print(f"(saved as view {similar_view(args.patches)!r} of dataset {args.name!r})")
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    """Any registered finder: run it, then print its table or its JSON."""
    from . import finders
    from .api import find
    from .datasets import split_view

    finder = finders.get(args.finder)
    options = {o.name: getattr(args, o.name) for o in finder.options}
    if args.json:  # FiftyOne draws its progress bars on stdout, where the JSON goes
        import fiftyone as fo

        fo.config.show_progress_bars = False
    with _bar(*finder.stages or ("working",)) as progress:
        target = split_view(args.name, args.split) if args.split else args.name
        findings = find(finder.name, target, patches=getattr(args, "patches", None), model=args.model,
                        config=_config(args), progress=progress, **options)
    if args.json:
        print(json.dumps(finder.json(findings, everything=getattr(args, "all", False)), indent=2))
    else:
        print(finder.table(findings, args.limit))
    return 0


def cmd_embeddings(args: argparse.Namespace) -> int:
    import numpy as np

    from .api import embeddings

    ids, vectors = embeddings(args.name, patches=args.patches, model=args.model, config=_config(args))
    out = Path(args.out)
    np.save(out, vectors)
    ids_path = out.with_suffix(".ids.json")
    ids_path.write_text(json.dumps(ids))
    what = "label ids" if args.patches else "sample ids"
    print(f"{vectors.shape[0]} x {vectors.shape[1]} vectors -> {out}; {what}, row by row -> {ids_path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .demo import run

    config = load_config(args.config_file, {"index": {"url": args.qdrant_url}})
    with _bar("embedding") as progress:
        run(config=config, progress=progress)
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from .app import launch

    session = launch(args.name, port=args.port, address=args.address)
    print(f"FiftyOne App serving {args.name!r} at http://{args.address}:{args.port} (Ctrl-C to stop)")
    session.wait(-1)
    return 0


MODEL_HELP = {"clip": "any open_clip architecture, e.g. clip:ViT-B-32",
              "timm": "any timm architecture, e.g. timm:resnet50, timm:vit_small_patch14_dinov2.lvd142m",
              "hf": "a Hugging Face vision model, hub id or local directory: hf:facebook/dinov2-small",
              "torchscript": "your own model, saved with torch.jit.save",
              "python": "your own model: a function returning a torch.nn.Module"}


def cmd_models(args: argparse.Namespace) -> int:
    from .models import FAMILY_ARGS, list_models

    for name in list_models():
        print(name + FAMILY_ARGS.get(name, "") + (f"  ({MODEL_HELP[name]})" if name in MODEL_HELP else ""))
    return 0


def _add_option(sp: argparse.ArgumentParser, option: Option) -> None:
    """A finder's option as a flag; unset flags are None, so the finder's own default applies."""
    names = [option.flag, *option.aliases] + ([f"-{option.name}"] if len(option.name) == 1 else [])
    default = f" (default {option.default})" if option.default is not None else ""
    text = (option.help + default).replace("%", "%%")  # argparse formats help with %
    if option.kind is bool:
        if option.default:
            sp.add_argument(f"--no-{option.flag[2:]}", dest=option.name, action="store_false", default=None,
                            help=option.off_help.replace("%", "%%") or f"do not {text[0].lower()}{text[1:]}")
        else:
            sp.add_argument(*names, dest=option.name, action="store_true", default=None, help=text)
        return
    sp.add_argument(*names, dest=option.name, type=option.kind, choices=option.choices or None,
                    nargs="+" if option.many else None, default=None, help=text)


class _Parser(argparse.ArgumentParser):
    """argparse, whose errors are one line (not the usage block above them): what was wrong and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lookalike", description="Curate and debug labeled image datasets: "
                                "FiftyOne + CLIP embeddings + Qdrant.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    def on_run(sp: argparse.ArgumentParser) -> None:
        """Options of every command that reads an embedding run."""
        sp.add_argument("--model", help="which embedding run to use (default: the latest)")
        common(sp)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="YAML settings file (see configs/)")
        sp.add_argument("--engine", choices=["local", "ray"],
                        help="where embedding, the kNN graph and duplicate verification run (default local)")
        sp.add_argument("--ray-address", help="with --engine ray: the Ray cluster (default: start a local one)")
        sp.add_argument("--qdrant-url", help="Qdrant server URL (default: the embedded store)")
        sp.add_argument("--qdrant-api-key", help="Qdrant API key (or $LOOKALIKE_QDRANT_API_KEY)")

    sp = sub.add_parser("load", help="load a dataset into FiftyOne")
    sp.add_argument("source", help="image folder tree, a file/folder in --format, or an existing dataset name")
    sp.add_argument("--name", help="dataset name (default: the folder's name)")
    sp.add_argument("--format", help="coco, yolo, voc, csv, fiftyone, image-tree, images, ... (default: a folder)")
    sp.add_argument("--label-field", default="ground_truth", help="field for the labels (default ground_truth)")
    sp.set_defaults(func=cmd_load)

    sp = sub.add_parser("embed", help="embed a dataset and index it in Qdrant")
    sp.add_argument("name", help="FiftyOne dataset name")
    sp.add_argument("--model", help="clip:ARCH, timm:ARCH, hf:MODEL_ID, torchscript:PATH, python:MODULE:FUNCTION, "
                    "efficientnet-lite0 (`lookalike models`; default clip:ViT-B-32)")
    sp.add_argument("--pretrained", help="open_clip / timm pretrained tag, a local checkpoint file, or random")
    sp.add_argument("--image-size", type=int, help="input size for models that take one (timm, efficientnet-lite0, "
                    "your own)")
    sp.add_argument("--normalize", choices=list(NORMALIZE),
                    help="input normalisation of your own model (torchscript:, python:; default imagenet)")
    sp.add_argument("--batch-size", type=int)
    sp.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: GPU when present)")
    sp.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                    help="model arithmetic (default fp32; auto: bf16 where the CPU/GPU runs it fast)")
    sp.add_argument("--rebuild", action="store_true", help="drop and refill the collection")
    sp.add_argument("--patches", metavar="FIELD",
                    help="embed the boxes of this Detections field (e.g. ground_truth_detections), not whole images")
    sp.add_argument("--margin", type=float,
                    help="with --patches: context kept around each box, a share of its sides (default 0.1)")
    own = sp.add_mutually_exclusive_group()
    own.add_argument("--vectors", help="import these vectors (.npy, one row per sample) instead of computing them")
    own.add_argument("--from-field", help="import the vectors in this FiftyOne embeddings field")
    sp.add_argument("--ids", help="with --vectors: JSON array of the sample id of each row (default: dataset order)")
    sp.add_argument("--model-name", help="name of an imported run (default vectors:FILE-STEM or field:FIELD)")
    common(sp)
    sp.set_defaults(func=cmd_embed)

    sp = sub.add_parser("similar", help="find similar samples by image, sample, text or examples")
    sp.add_argument("name", help="FiftyOne dataset name")
    q = sp.add_mutually_exclusive_group(required=True)
    q.add_argument("--image", help="query image file")
    q.add_argument("--sample", help="query sample id (with --patches: a label id)")
    q.add_argument("--text", help="query text prompt (CLIP models)")
    q.add_argument("--like", action="append", help="positive example: sample id or image file (repeatable)")
    sp.add_argument("--unlike", action="append", help="negative example for --like (repeatable)")
    sp.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    sp.add_argument("--min-score", type=float, help="only results with at least this score")
    sp.add_argument("--label", help="only samples with this label")
    sp.add_argument("--split", help="only samples of this split")
    sp.add_argument("--tag", help="only samples with this tag")
    sp.add_argument("--patches", metavar="FIELD", help="search the boxes of this Detections field (its patch run)")
    sp.add_argument("--json", action="store_true", help="print a JSON array")
    on_run(sp)
    sp.set_defaults(func=cmd_similar)

    from .finders import FINDERS

    for finder in FINDERS.values():
        sp = sub.add_parser(finder.name, help=finder.help, description=f"{finder.help}. Writes {finder.score!r}: "
                            f"{finder.score_doc}.")
        sp.add_argument("name", help="FiftyOne dataset name")
        for option in finder.options:
            _add_option(sp, option)
        if finder.on_boxes:
            sp.add_argument("--patches", metavar="FIELD",
                            help="run on the boxes of this Detections field (its patch run), writing to the labels")
        sp.add_argument("--split", help="run on the samples of this split only (e.g. test)")
        sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
        if finder.lists_samples:
            sp.add_argument("--all", action="store_true", help="with --json: every scored sample, not only the flagged")
        sp.add_argument("--limit", type=int, default=20, help="rows in the table (default 20)")
        on_run(sp)
        sp.set_defaults(func=cmd_find, finder=finder.name)

    sp = sub.add_parser("embeddings", help="export an embedding run's vectors and sample ids")
    sp.add_argument("name", help="FiftyOne dataset name")
    sp.add_argument("--out", required=True, help="FILE.npy for the vectors (ids go to FILE.ids.json)")
    sp.add_argument("--patches", metavar="FIELD", help="the boxes of this Detections field (its patch run)")
    on_run(sp)
    sp.set_defaults(func=cmd_embeddings)

    sp = sub.add_parser("run", help="run the main job from a config file")
    sp.add_argument("config_file", help="e.g. configs/demo.yaml")
    sp.add_argument("--qdrant-url", help="Qdrant server URL (default: the embedded store)")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("app", help="open a dataset in the FiftyOne App")
    sp.add_argument("name")
    sp.add_argument("--port", type=int, default=5151)
    sp.add_argument("--address", default="localhost")
    sp.set_defaults(func=cmd_app)

    sp = sub.add_parser("models", help="list the model registry")
    sp.set_defaults(func=cmd_models)
    return p


class _Stderr(logging.StreamHandler):
    """Logs to whatever ``sys.stderr`` is when a record comes (a notebook or a test may swap it between calls)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """The command line. From the shell (``argv`` None), a quick query is answered by a warm process where one
    is up, and leaves one behind where none was (:mod:`lookalike.warm`)."""
    args = build_parser().parse_args(argv)
    _logging(args.verbose)
    if argv is None and args.command in warm.WARM_COMMANDS and warm.seconds() > 0:
        environ, path = dict(os.environ), warm.socket_path()
        answered = warm.ask(sys.argv[1:], path)
        if answered is not None:
            return answered
        rc = _run(args)
        warm.start(path, environ)
        return rc
    return _run(args)


def _logging(verbose: bool) -> None:
    ours = logging.getLogger("lookalike")  # FiftyOne configures its own loggers; leave them be
    if not any(isinstance(h, _Stderr) for h in ours.handlers):  # main() called again in one process adds none
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        ours.addHandler(handler)
    ours.setLevel(logging.INFO if verbose else logging.WARNING)
    ours.propagate = False


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except LookalikeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished batches are cached; rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
