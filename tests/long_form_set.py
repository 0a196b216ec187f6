"""A labelled set of long synthetic videos for moment retrieval (issue 14): several scenes of different lengths in each
video, training manifests, and `eval-moments` queries of four kinds with every correct span in the library.

- single: a scene's caption, phrased as training phrases it ("a red circle moving left");
- appearance: colour and shape only, in other word orders ("circle, red"); every scene of that colour and shape, in
  any direction, is a correct span;
- motion: a scene's colour, shape and direction, direction first ("moving left, a red circle"), asked only where the
  library also shows that colour and shape moving another way, so the direction is what picks the span;
- sequence: two consecutive scenes, "a red square moving up, then a blue circle moving left"; the span is both scenes.

A query's correct spans are all the spans in the set that it describes, so every query is answerable library-wide
(R@1 counts the top hit against any of them). Scenes draw their colour and shape from a few appearances, so each
appearance comes back in several scenes and directions (what makes direction matter across videos); consecutive
scenes never share an appearance, so every scene cut is visible and "a X, then a Y" names two different things.

Words stay within what the `tiny` model's text tower is trained on (the captions' words), plus a few function words
and commas: other orders, not synonyms, since a text tower trained from scratch on captions knows no synonyms.

Ground truth comes from here, not from vidsearch: the only vidsearch code used is the renderer (`vidsearch.synthetic`).
It lives in tests/ because the tests build it; bench/long_form.py imports it from here, as bench/fusion.py does
tests/fusion_set.py.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidsearch.synthetic import COLORS, DIRECTIONS, SHAPES, Scene, write_video

KINDS = ("single", "appearance", "motion", "sequence")
CAPTIONS = ("scene", "pair", "both")  # training manifests: a caption per scene, per two consecutive scenes, or both
APPEARANCE = ("{color} {shape}", "a {shape}, {color}", "the {color} {shape}")
MOTION = ("moving {direction}, a {color} {shape}", "{color} {shape}, moving {direction}")


def sequence_caption(first: Scene, then: Scene) -> str:
    """Two consecutive scenes in one caption, as sequence queries and the multi-scene training captions say them."""
    return f"{first.caption}, then {then.caption}"


@dataclass(frozen=True)
class SceneSpan:
    """Scene `index` of `video` (a file name in the set's folder), from `start` to `end` seconds."""

    video: str
    index: int
    start: float
    end: float
    scene: Scene


@dataclass(frozen=True)
class Truth:
    """A correct span: `video` (a file name in the set's folder) from `start` to `end` seconds."""

    video: str
    start: float
    end: float


@dataclass(frozen=True)
class Query:
    """What is typed, its kind, and every span of the set it describes (in video order, then time)."""

    kind: str
    text: str
    truths: tuple[Truth, ...]


@dataclass
class LongFormSet:
    folder: Path  # the videos
    scenes: dict[str, list[SceneSpan]]  # file name -> its scenes, in order; they tile the video
    queries: list[Query]

    def path(self, video: str) -> str:
        """A video's path as the index spells it (absolute, links kept)."""
        return os.path.abspath(self.folder / video)

    def duration(self, video: str) -> float:
        return self.scenes[video][-1].end

    def train_rows(self, captions: str = "scene") -> list[dict]:
        """Training pairs `{video (absolute), start, end, caption}`: one per scene ("scene"), one per two consecutive
        scenes under a sequence caption ("pair"), or both, each video's in time order."""
        if captions not in CAPTIONS:
            raise ValueError(f"captions must be one of {', '.join(CAPTIONS)}, got {captions!r}")
        rows = []
        for video, spans in self.scenes.items():
            if captions in ("scene", "both"):
                rows += [{"video": self.path(video), "start": s.start, "end": s.end, "caption": s.scene.caption}
                         for s in spans]
            if captions in ("pair", "both"):
                rows += [{"video": self.path(video), "start": a.start, "end": b.end,
                          "caption": sequence_caption(a.scene, b.scene)} for a, b in zip(spans, spans[1:])]
        return rows

    def write_manifest(self, path: Path, captions: str = "scene") -> Path:
        """train_rows as a `vidsearch train` manifest (JSONL), video paths relative to its folder."""
        rows = [{**row, "video": _relative(row["video"], path)} for row in self.train_rows(captions)]
        return _write_jsonl(path, rows)

    def query_lines(self) -> list[dict]:
        """`eval-moments` lines `{query, video (absolute), start, end, kind}`: one per correct span."""
        return [{"query": q.text, "video": self.path(t.video), "start": t.start, "end": t.end, "kind": q.kind}
                for q in self.queries for t in q.truths]

    def write_queries(self, path: Path, *, quoted: bool = False) -> Path:
        """query_lines as the JSONL file `vidsearch eval-moments` reads, video paths relative to its folder. `quoted`
        quotes every query whole: "A, then B" is then searched as one text (quotes are not sent to the encoder)."""
        return _write_jsonl(path, [{**line, "video": _relative(line["video"], path),
                                    "query": f'"{line["query"]}"' if quoted else line["query"]} for line in self.query_lines()])

    def save(self, out: Path) -> None:
        """The labels as JSON, for a reader who wants to check them."""
        out.write_text(json.dumps({
            "folder": str(self.folder),
            "scenes": {v: [{"start": s.start, "end": s.end, "caption": s.scene.caption} for s in spans]
                       for v, spans in self.scenes.items()},
            "queries": [{"kind": q.kind, "text": q.text, "truths": [[t.video, t.start, t.end] for t in q.truths]}
                        for q in self.queries]}, indent=1), encoding="utf-8")


def build_long_form_set(folder: Path, *, videos: int = 4, scenes_per_video: tuple[int, int] = (3, 5),
                        scene_seconds: tuple[int, int] = (6, 12), appearances: int | None = None, seed: int = 0,
                        size: int = 128, fps: float = 4.0) -> LongFormSet:
    """Write `videos` videos `long_NN.mp4` under `folder`, each of a number of scenes drawn from `scenes_per_video`
    (inclusive) lasting a whole number of seconds drawn from `scene_seconds` (inclusive), and return the set with
    every query of every kind its scenes allow.

    Scenes take their colour and shape from `appearances` of the 12 pairs (default: about one per three scenes,
    at least 2, at most 12), never the same as the scene before; directions are drawn freely."""
    lo, hi = scenes_per_video
    short, long = scene_seconds
    if videos < 1 or not 1 <= lo <= hi or not 1 <= short <= long:
        raise ValueError(f"need videos >= 1 and ranges low <= high >= 1: videos={videos}, "
                         f"scenes_per_video={scenes_per_video}, scene_seconds={scene_seconds}")
    rng = np.random.default_rng(seed)
    counts = [int(rng.integers(lo, hi + 1)) for _ in range(videos)]
    combos = [(c, s) for c in COLORS for s in SHAPES]
    chosen = appearances if appearances is not None else min(len(combos), max(2, sum(counts) // 3))
    if not 2 <= chosen <= len(combos):
        raise ValueError(f"appearances must be between 2 and {len(combos)}, got {chosen}")
    pool = [combos[int(i)] for i in rng.permutation(len(combos))[:chosen]]

    folder.mkdir(parents=True, exist_ok=True)
    scenes: dict[str, list[SceneSpan]] = {}
    for i, count in enumerate(counts):
        drawn: list[Scene] = []
        for _ in range(count):
            options = [p for p in pool if not drawn or p != (drawn[-1].color, drawn[-1].shape)]
            color, shape = options[int(rng.integers(len(options)))]
            drawn.append(Scene(color, shape, DIRECTIONS[int(rng.integers(len(DIRECTIONS)))]))
        lengths = [int(rng.integers(short, long + 1)) for _ in range(count)]
        name = f"long_{i:02d}.mp4"
        rows = write_video(folder / name, drawn, scene_seconds=lengths, fps=fps, size=size, seed=int(rng.integers(2**31)))
        scenes[name] = [SceneSpan(name, k, row["start"], row["end"], scene)
                        for k, (row, scene) in enumerate(zip(rows, drawn))]
    return LongFormSet(folder, scenes, _queries(scenes, rng))


def _queries(scenes: dict[str, list[SceneSpan]], rng: np.random.Generator) -> list[Query]:
    """Every query each kind allows, with all its correct spans; templates of the rephrased kinds drawn at random."""
    every = [s for spans in scenes.values() for s in spans]
    pairs = [(a, b) for spans in scenes.values() for a, b in zip(spans, spans[1:])]

    def truths(spans) -> tuple[Truth, ...]:
        return tuple(Truth(s.video, s.start, s.end) for s in spans)

    def template(options: tuple[str, ...], scene: Scene) -> str:
        return options[int(rng.integers(len(options)))].format(color=scene.color, shape=scene.shape,
                                                               direction=scene.direction)

    queries = []
    for scene in dict.fromkeys(s.scene for s in every):  # distinct scenes, in order of first appearance
        queries.append(Query("single", scene.caption, truths(s for s in every if s.scene == scene)))
    for look in dict.fromkeys((s.scene.color, s.scene.shape) for s in every):
        example = next(s.scene for s in every if (s.scene.color, s.scene.shape) == look)
        queries.append(Query("appearance", template(APPEARANCE, example),
                             truths(s for s in every if (s.scene.color, s.scene.shape) == look)))
    for scene in dict.fromkeys(s.scene for s in every):
        others = {s.scene.direction for s in every if (s.scene.color, s.scene.shape) == (scene.color, scene.shape)}
        if others - {scene.direction}:  # the library shows this colour and shape moving another way too
            queries.append(Query("motion", template(MOTION, scene), truths(s for s in every if s.scene == scene)))
    for first, then in dict.fromkeys((a.scene, b.scene) for a, b in pairs):
        queries.append(Query("sequence", sequence_caption(first, then),
                             tuple(Truth(a.video, a.start, b.end) for a, b in pairs if (a.scene, b.scene) == (first, then))))
    return queries


def _relative(video: str, file: Path) -> str:
    return Path(os.path.relpath(video, os.path.abspath(file.parent))).as_posix()


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# --- chance: the same for the test and the benchmark -------------------------------------------------------------------

def random_segment_recall(labelled: LongFormSet, *, k: int = 1, segment_seconds: float = 4.0,
                          iou: float = 0.5) -> dict[str, float]:
    """R@k at `iou` per kind (and "all") of a search whose top k hits are k different segments of the index's grid
    ([n * segment_seconds, (n + 1) * segment_seconds), the last one cut at the video's end) drawn at random from the
    whole library: the chance level of segment search that never merges segments. Sequence spans (two scenes, at
    least twice the shortest scene) are out of a single segment's reach when segments are short."""
    cells = [(video, n * segment_seconds, min((n + 1) * segment_seconds, labelled.duration(video)))
             for video in labelled.scenes for n in range(math.ceil(labelled.duration(video) / segment_seconds - 1e-9))]

    def overlap(cell, truth: Truth) -> float:
        video, start, end = cell
        if video != truth.video:
            return 0.0
        inter = max(0.0, min(end, truth.end) - max(start, truth.start))
        return inter / ((end - start) + (truth.end - truth.start) - inter)

    def chance(query: Query) -> float:
        """1 - P(none of k segments drawn without replacement is a hit)."""
        hits = sum(any(overlap(c, t) >= iou for t in query.truths) for c in cells)
        return 1.0 - math.comb(len(cells) - hits, k) / math.comb(len(cells), k)

    per_query = [(q.kind, chance(q)) for q in labelled.queries]
    out = {kind: float(np.mean([p for kd, p in per_query if kd == kind])) for kind in KINDS
           if any(kd == kind for kd, _ in per_query)}
    out["all"] = float(np.mean([p for _, p in per_query]))
    return out
