"""The map of an embedding space as a finder: ``uniqueness`` (0..1, higher = fewer look-alikes), ``cluster``
(-1: in none), a 2-D UMAP layout stored as the FiftyOne visualization brain run ``lookalike_map`` (the
App's Embeddings panel) and a PNG plot; the method is :mod:`lookalike.maps`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import maps
from ..exceptions import ConfigError
from .base import Finder, Findings, Option, Record

if TYPE_CHECKING:
    import pandas as pd

    from ..context import Context
    from ..embedding import Progress

MAP_BRAIN_KEY = "lookalike_map"
MAP_REFIT_ABOVE = 0.1  # share of rows placed since a map was last fitted beyond which it is fitted anew


@dataclass
class EmbeddingMap(Record):
    """What the map finder made: the layout's brain key, the plot, cluster sizes and the most unique
    samples."""

    dataset: str
    brain_key: str
    samples: int
    plot: str
    clusters: dict[int, int]  # cluster number -> size; -1: in no cluster
    most_unique: list[tuple[str, float]]  # (sample id, uniqueness), most unique first

    def to_pandas(self) -> pd.DataFrame:
        """The clusters by size: ``cluster``, ``size`` (cluster -1: samples in none)."""
        import pandas as pd

        return pd.DataFrame(sorted(self.clusters.items(), key=lambda kv: -kv[1]), columns=["cluster", "size"])

    def _repr_html_(self) -> str:
        from ..display import image_uri

        uri = image_uri(self.plot, 640) if self.plot else None
        plot = f'<img src="{uri}" style="max-width:640px">' if uri else ""
        sizes = ", ".join(f"{c}: {n}" for c, n in sorted(self.clusters.items(), key=lambda kv: -kv[1])[:20])
        return (f"<p><b>map</b> of {self.samples} samples (brain run {self.brain_key!r}, the App's Embeddings "
                f"panel); clusters by size: {sizes}</p>{plot}")


def _earlier_map(path: Path | None, keys: list[str], seed: int, min_size: int | None
                 ) -> tuple[np.ndarray | None, np.ndarray | None, int | None]:
    """The points and clusters of the last map of these rows, NaN / ``maps.UNKNOWN`` where a row is new, and
    the rows that map was fitted on; all None (fit anew) where there is none, it was made with other
    settings, or more than ``MAP_REFIT_ABOVE`` of the rows would be placed rather than fitted."""
    if path is None or not path.is_file():
        return None, None, None
    with np.load(path) as old:
        if int(old["seed"]) != seed or int(old["min_size"]) != (min_size or 0):
            return None, None, None
        fitted = int(old["fitted"])
        if len(keys) > (1 + MAP_REFIT_ABOVE) * fitted:
            return None, None, None
        row = {key: r for r, key in enumerate(old["keys"].tolist())}
        at = np.array([row.get(key, -1) for key in keys])
        if (at < 0).mean() > MAP_REFIT_ABOVE:
            return None, None, None
        known = at >= 0
        points = np.full((len(keys), 2), np.nan, dtype=np.float32)
        points[known] = old["points"][at[known]]
        clusters = np.full(len(keys), maps.UNKNOWN)
        clusters[known] = old["cluster"][at[known]]
    return points, clusters, fitted


class Map(Finder):
    name = "map"
    label = "lookalike: compute the map"
    help = "uniqueness, a UMAP layout and clusters, for the App and as a PNG"
    score_doc = "0..1, higher = fewer look-alikes (mean cosine distance to the 5 nearest, over the largest)"
    score_field = "uniqueness"
    app_panel = "Embeddings"
    on_boxes = True
    options = (
        Option("colour_by", str, "label", "what colours the PNG", choices=maps.COLOUR_FIELDS, aliases=("--color-by",)),
        Option("out", str, None, "PNG file (default $LOOKALIKE_HOME/maps/NAME.png)"),
        Option("seed", int, 0, "UMAP seed; the same seed gives the same map"),
        Option("min_cluster_size", int, None, "smallest cluster (default 1% of the samples)"),
    )

    @property
    def operator(self) -> str:
        return "compute_map"

    def compute(self, ctx: Context, progress: Progress | None = None, **options: Any) -> Findings:
        import fiftyone as fo

        rows = ctx.rows
        ids, keys, seed, min_size = rows.ids, rows.keys, options["seed"], options["min_cluster_size"]
        if len(ids) < 4:
            raise ConfigError(f"{ctx.name!r} has {len(ids)} embedded samples here; a map needs at least 4")
        vectors, graph = rows.vectors(), rows.graph(maps.UMAP_K)
        unique = maps.uniqueness(graph)
        state = ctx.state_path("maps")
        known_points, known_clusters, fitted = _earlier_map(state, keys, seed, min_size)
        points = maps.layout(vectors, graph, seed=seed, known=known_points)
        cluster = maps.clusters(points, min_size, seed=seed, known=known_clusters)
        if state is not None:
            state.parent.mkdir(parents=True, exist_ok=True)
            np.savez(state, keys=np.array(keys), points=points, cluster=cluster, seed=seed, min_size=min_size or 0,
                     fitted=fitted or len(keys))
        colour_by, boxes = options["colour_by"], ctx.patches
        if colour_by == "label":
            colours = ctx.table["label"]
        elif colour_by in ("cluster", "uniqueness"):
            colours = list(cluster if colour_by == "cluster" else unique)
        else:
            colours = ctx.row_values(colour_by)
        stem = ctx.name if boxes is None else f"{ctx.name}-{boxes}"
        path = Path(options["out"]) if options["out"] else ctx.config.index.home_path() / "maps" / f"{stem}.png"
        maps.plot(points, colours, path,
                  title=f"{ctx.name}: {ctx.run.model} embeddings of {ctx.run.rows} (UMAP), coloured by {colour_by}")
        sizes = dict(sorted(zip(*(x.tolist() for x in np.unique(cluster, return_counts=True)), strict=True)))
        order = np.argsort(-unique)[:10]
        result = EmbeddingMap(dataset=ctx.name, brain_key=map_key(boxes), samples=len(ids), plot=str(path),
                              clusters=sizes, most_unique=[(ids[i], float(unique[i])) for i in order])
        return Findings(finder=self.name, ids=ids, scores=unique, flags=None, records=[result],
                        summary={"samples": len(ids), "clusters": sum(c >= 0 for c in sizes), "plot": str(path)},
                        fields={"cluster": (fo.IntField, {sid: int(c) for sid, c in zip(ids, cluster, strict=True)})},
                        arrays={"points": points})

    def after_write(self, ctx: Context, findings: Findings) -> None:
        import fiftyone.brain as fob

        ids, dataset, points, boxes = findings.ids, ctx.dataset, findings.arrays["points"], ctx.patches
        row = {sid: i for i, sid in enumerate(ids)}
        key = map_key(boxes)
        if key in dataset.list_brain_runs():
            dataset.delete_brain_run(key)
        # The whole collection where every row is embedded: a view selecting a million ids is too large a
        # request.
        present = ctx.row_ids_in(ctx.collection)
        mapped = ctx.collection if all(i in row for i in present) else ctx.select_rows(ids)
        in_mapped = [row[i] for i in ctx.row_ids_in(mapped)]
        fob.compute_visualization(mapped, points=points[in_mapped], patches_field=boxes, brain_key=key,
                                  progress=False)

    def table(self, findings: Findings, limit: int) -> str:
        from ..tables import format_clusters

        m = findings.records[0]
        return "\n".join([
            f"UMAP of {m.samples} samples -> brain run {m.brain_key!r} (the App's Embeddings panel) and {m.plot}",
            f"clusters (field 'cluster', size by number): {format_clusters(m.clusters)}",
            "most unique (field 'uniqueness'): " + ", ".join(f"{sid} {u:.2f}" for sid, u in m.most_unique[:5])])

    def json(self, findings: Findings, everything: bool = False) -> Any:
        return findings.records[0].to_dict()

    def message(self, findings: Findings) -> str:
        return f"{findings.summary['clusters']} clusters; brain key {findings.records[0].brain_key}"


def map_key(patches: str | None = None) -> str:
    """The brain key of the map of samples, or of the boxes of ``patches`` (the App's Embeddings panel)."""
    return MAP_BRAIN_KEY if patches is None else f"{MAP_BRAIN_KEY}__{patches}"
