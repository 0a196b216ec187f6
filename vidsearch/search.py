"""Query terms -> one vector -> nearest segments (optionally only some files) -> ranked moments, fused with the
transcript lines that match the words when the index has text."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass

import numpy as np

from .errors import IndexProblem, UsageError
from .indexdir import IndexDir
from .terms import Term
from .text_search import TextMatch, search_text

MODES = ("visual", "speech", "both", "auto")
SCALES = ("segment", "window", "auto")
# The fewest candidates a search takes, whatever k: the 10*k segments and 2*k windows it takes for k = 10 (query's
# default). A smaller k then ranks the same moments and returns the first of them: the candidates set the scores'
# spread and how far moments grow, so fewer of them for -k 1 would change even the first hit.
SEGMENT_CANDIDATES = 100
WINDOW_CANDIDATES = 20


@dataclass(frozen=True)
class Hit:
    """One segment returned by the vector search."""

    video_id: int
    path: str
    start: float
    end: float
    score: float


@dataclass(frozen=True)
class Moment:
    """A span of one video made of adjacent matching segments, scored by its best segment; or, when the words were
    searched in what is said too, the fusion of such a span with its best matching line (`text`), or that line alone
    (no segments), scored by the fusion rule from `visual_score` (cosine) and `text_score` (-bm25)."""

    video_id: int
    path: str
    start: float
    end: float
    score: float
    segments: int
    text: TextMatch | None = None
    visual_score: float | None = None
    text_score: float | None = None

    @property
    def moment_id(self) -> str:
        """Stable while the file stays indexed: video id, start and end in milliseconds."""
        return f"{self.video_id}-{round(self.start * 1000)}-{round(self.end * 1000)}"


def merge_moments(hits: list[Hit], *, margin: float | None = None, gap: float = 0.5) -> list[Moment]:
    """Grow moments from the best hits: a hit joins a moment of its video when it touches or overlaps it
    (within `gap` seconds) and scores within `margin` of the moment's best; otherwise it starts its own.

    The default margin is a quarter of the spread between the best and the median candidate score, so it
    adapts to each model's score scale. A moment's score is its best segment's.
    """
    if not hits:
        return []
    ranked = sorted(hits, key=lambda h: (-h.score, h.path, h.start))
    if margin is None:
        scores = [h.score for h in ranked]
        margin = 0.25 * (scores[0] - scores[len(scores) // 2])
    moments: list[dict] = []
    for hit in ranked:
        joined = [m for m in moments if m["video_id"] == hit.video_id and hit.start <= m["end"] + gap
                  and hit.end >= m["start"] - gap and hit.score >= m["score"] - margin]
        merged = {"video_id": hit.video_id, "path": hit.path, "start": hit.start, "end": hit.end, "score": hit.score,
                  "segments": 1}
        for moment in joined:  # a hit that bridges two moments fuses them
            merged.update(start=min(merged["start"], moment["start"]), end=max(merged["end"], moment["end"]),
                          score=max(merged["score"], moment["score"]), segments=merged["segments"] + moment["segments"])
            moments.remove(moment)
        moments.append(merged)
    moments.sort(key=lambda m: (-m["score"], m["path"], m["start"]))
    return [Moment(**m) for m in moments]


def best_per_video(moments: list[Moment]) -> list[Moment]:
    """The first (best) moment of each video, in the given order."""
    seen: set[int] = set()
    return [m for m in moments if not (m.video_id in seen or seen.add(m.video_id))]


def select_paths(paths: list[str], patterns: list[str]) -> list[str]:
    """The paths that any pattern selects. A pattern naming one of `paths`, or a folder above some of them, selects
    those literally (brackets and all); otherwise it is a glob tried on the whole path, on the glob made absolute,
    and on the file name."""
    known = set(paths)
    literal = [os.path.abspath(os.path.expanduser(p)) for p in patterns]
    folders = [p.rstrip(os.sep) + os.sep for p in literal if p not in known]
    globs = [g for p, a in zip(patterns, literal) if a not in known for g in {p, a}]
    files = {a for a in literal if a in known}
    return [path for path in paths
            if path in files or path.startswith(tuple(folders))
            or any(fnmatch.fnmatchcase(path, g) or fnmatch.fnmatchcase(os.path.basename(path), g) for g in globs)]


class Searcher:
    """Answers queries against one index with the model that built it."""

    def __init__(self, index: IndexDir, *, device: str = "auto"):
        """`device` cuda puts the model and the vector search on the GPU. auto keeps the model on the CPU (one text
        takes 0.03 s there, less than starting CUDA) and searches on the GPU only when `search_on_gpu` says the index
        is large enough to pay for starting CUDA and copying the vectors over."""
        from . import registry

        recorded = index.db.get_setting("model")
        if recorded is None or index.db.segment_count() == 0:
            raise IndexProblem(f"{index.path}: the index is empty; run `vidsearch index PATH` first")
        if registry.fingerprint_matches(recorded["fingerprint"], recorded["spec"], weights=recorded.get("weights")) is None:
            raise IndexProblem(f"{index.path}: model {recorded['spec']!r} changed since this index was built; re-index")
        self.index = index
        self._asked_device = device
        self.spec, self.device = recorded["spec"], "cuda" if device == "cuda" else "cpu"
        self.weights_file = recorded.get("weights_file")
        self.settings = index.db.get_setting("settings")
        self._text_encoder = self._full_encoder = self._vectors = None

    @property
    def vectors(self):
        """The FAISS index, loaded on first use (a search of what is said needs none, nor torch)."""
        if self._vectors is None:
            from .device import resolve_device, search_on_gpu

            resolved = resolve_device(self._asked_device)
            vectors = self.index.vectors(search_only=True)
            scanned = vectors.count if vectors.ivf is None else -(-vectors.count * vectors.nprobe // vectors.ivf.nlist)
            gpu = self._asked_device == "cuda" or search_on_gpu(vectors.count, resolved, dim=vectors.dim, scanned=scanned)
            self._vectors = vectors.on_gpu() if gpu else vectors
        return self._vectors

    def encoder(self, *, images: bool):
        """The text tower alone for words (fast to load); the whole model when an image must be encoded."""
        from .encoder import Encoder, TextEncoder

        if images or self._full_encoder is not None:
            self._full_encoder = self._full_encoder or Encoder.load(self.spec, self.device)
            return self._full_encoder
        self._text_encoder = self._text_encoder or TextEncoder(self.spec, self.device, weights_file=self.weights_file)
        return self._text_encoder

    def query_vector(self, terms: list[Term]) -> np.ndarray:
        """(1, E): the L2-normalised weighted sum of the terms' normalised vectors."""
        from .encoder import l2_normalize

        texts = [t for t in terms if t.text is not None]
        images = [t for t in terms if t.image is not None]
        encoder = self.encoder(images=bool(images))
        parts = list(encoder.encode_text([" ".join(t.text.replace('"', " ").split()) for t in texts])) if texts else []
        if images:
            from .frames import read_image

            frames = max(round(self.settings["segment"] * self.settings["fps"]), 1)
            parts += [encoder.encode_image(read_image(t.image, size=encoder.image_size), frames=frames) for t in images]
        weights = [t.weight for t in texts + images]
        total = np.sum([w * v for w, v in zip(weights, parts)], axis=0)
        if np.linalg.norm(total) < 1e-6:
            raise UsageError("the query's terms cancel out; change their weights")
        return l2_normalize(total[None])

    def resolve_mode(self, mode: str, terms: list[Term]) -> str:
        """visual, speech or both: `auto` is both when the index has text, else visual."""
        if mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "auto":
            return "both" if self.index.db.has_text() else "visual"
        if mode == "speech" and not self.index.db.has_text():
            raise UsageError("--mode speech: this index has no subtitles or transcripts; index with --speech ENGINE "
                             "or put subtitle files (.srt, .vtt, .ass) next to the videos and index again")
        if mode == "speech" and not any(t.text is not None for t in terms):
            raise UsageError("--mode speech searches what is said: give words to look for (an --image cannot be heard)")
        return mode

    def search(self, terms: list[Term] | list[list[Term]], *, k: int = 10, group_by: str = "moment",
               paths: list[str] = (), min_score: float | None = None, mode: str = "auto", rule: str = "weighted",
               scale: str = "segment") -> list[Moment]:
        """The best `k` moments (or, grouped by video, the best moment of the best `k` videos). `mode` visual searches
        the vectors, speech the transcripts, both fuses the two by `rule` (see fusion.py); auto is both when the index
        has text. `min_score` is a floor on the visual cosine: lines that match always count. `scale` segment grows
        moments from segment hits; window and auto score spans of segments (spans.py) around the best windows, and
        with auto around the best segments too (but a sequence's parts at segment scale).

        `terms` may be the parts of a sequence query (terms.parse_sequence): then each part is searched as a query of
        its own and the moments are chains of the parts' moments, in order (sequence.py)."""
        if scale not in SCALES:
            raise UsageError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
        parts = terms if terms and isinstance(terms[0], list) else [terms]
        modes = [self.resolve_mode(mode, part) for part in parts]  # each part is checked; auto resolves alike for all
        video_ids = None
        if paths:
            indexed = {v["path"]: v["id"] for v in self.index.db.videos() if v["status"] != "failed"}
            video_ids = [indexed[p] for p in select_paths(list(indexed), paths)]
            if not video_ids:
                return []
        if len(parts) == 1:
            moments = self._moments(parts[0], k=k, group_by=group_by, video_ids=video_ids, min_score=min_score,
                                    mode=modes[0], rule=rule, scale=scale)
        else:
            from .sequence import PART_CANDIDATES, find_sequences

            # auto searches a sequence's parts at segment scale: each part describes one scene, and spans grown
            # past it made worse chains (bench/long_form.py, held-out set: sequence R@1 0.258 against 0.409)
            part_scale = "segment" if scale == "auto" else scale

            def moments_for(part: list[Term], ids: list[int] | None) -> list[Moment]:
                return self._moments(part, k=PART_CANDIDATES, group_by="moment", video_ids=ids, min_score=min_score,
                                     mode=modes[0], rule=rule, scale=part_scale)

            moments = find_sequences(parts, moments_for, video_ids=video_ids, k=None)
        return (best_per_video(moments) if group_by == "video" else moments)[:k]

    def _moments(self, terms: list[Term], *, k: int, group_by: str, video_ids: list[int] | None,
                 min_score: float | None, mode: str, rule: str, scale: str) -> list[Moment]:
        from .fusion import fuse, text_moments

        if mode == "speech":
            return text_moments(self.text_matches(terms, k=k, group_by=group_by, video_ids=video_ids))
        if scale == "segment":
            visual = self.visual_moments(terms, k=k, group_by=group_by, video_ids=video_ids, min_score=min_score)
        else:
            visual = self.span_moments(terms, k=k, video_ids=video_ids, min_score=min_score, scale=scale)
        if mode == "visual":
            return visual
        return fuse(visual, self.text_matches(terms, k=k, group_by=group_by, video_ids=video_ids), rule=rule)

    def span_moments(self, terms: list[Term], *, k: int, video_ids: list[int] | None, min_score: float | None,
                     scale: str) -> list[Moment]:
        """Moments at several scales: every span of 1 to two windows' worth of consecutive segments inside the best
        windows (by their window vectors) and, with scale auto, around the best segments, scored by spans.py's rule
        (mean segment cosine, the best window touched, a bonus for length); then the best spans that do not overlap,
        best first."""
        from .spans import LONGEST_WINDOWS, Region, best_spans, merge_regions, region_spans

        query = self.query_vector(terms)
        dim = query.shape[1]
        segment = self.settings["segment"]
        longest = LONGEST_WINDOWS * max(1, round(self.settings["window"] / self.settings["fps"] / segment))
        only = self.index.db.segment_ids_of(video_ids) if video_ids is not None else None
        if only is not None and not len(only):
            return []
        scores, ids = self.vectors.search(query, max(SEGMENT_CANDIDATES, 10 * k), only=only)
        found = scores[0][ids[0] >= 0]
        spread = float(found[0] - np.median(found)) if len(found) else 0.0
        regions = []
        rows, vectors = self.index.db.window_rows(dim, video_ids=video_ids)
        window_scores = vectors @ query[0]
        if len(rows):
            regions += [Region(*rows[i][:2], rows[i][2], rows[i][3]) for i in np.argsort(-window_scores)[: max(WINDOW_CANDIDATES, 2 * k)]]
        if scale == "auto":
            reach = longest * segment
            regions += [Region(row["video_id"], row["path"], row["start"] - reach, row["end"] + reach)
                        for row in self.index.db.segments(ids[0][ids[0] >= 0].tolist()).values()]
        regions = merge_regions(regions)
        wanted = {region.video_id for region in regions}
        windows_of: dict[int, list[tuple[float, float, float]]] = {}
        for row, score in zip(rows, window_scores):
            if row[0] in wanted:
                windows_of.setdefault(row[0], []).append((row[2], row[3], float(score)))
        spans = []
        for region in regions:
            starts, ends, segment_vectors = self.index.db.segments_in(region.video_id, region.start, region.end, dim)
            windows = [w for w in windows_of.get(region.video_id, []) if w[0] < region.end and w[1] > region.start]
            spans += region_spans(region, starts, ends, segment_vectors @ query[0], windows, longest=longest,
                                  spread=spread)
        return [span for span in best_spans(spans) if min_score is None or span.score >= min_score]

    def visual_moments(self, terms: list[Term], *, k: int, group_by: str, video_ids: list[int] | None,
                       min_score: float | None) -> list[Moment]:
        """Every moment of the nearest segments at or above `min_score`, best first, from enough segments that `k`
        moments (or videos, grouped by video) survive, or from all of them."""
        query = self.query_vector(terms)
        only = None
        if video_ids is not None:
            only = self.index.db.segment_ids_of(video_ids)
            if not len(only):
                return []
        wanted = max(SEGMENT_CANDIDATES, 10 * k)
        while True:  # widen the search until k moments survive grouping and the score floor, or nothing is left
            scores, ids = self.vectors.search(query, wanted, only=only)
            rows = self.index.db.segments(ids[0].tolist())
            hits = [Hit(row["video_id"], row["path"], row["start"], row["end"], float(score))
                    for score, seg_id in zip(scores[0], ids[0]) if (row := rows.get(int(seg_id)))]
            moments = merge_moments(hits)
            if min_score is not None:
                moments = [m for m in moments if m.score >= min_score]
            exhausted = len(hits) < wanted or (min_score is not None and hits[-1].score < min_score)
            if len(best_per_video(moments) if group_by == "video" else moments) >= k or exhausted:
                return moments
            wanted *= 4

    def text_matches(self, terms: list[Term], *, k: int, group_by: str, video_ids: list[int] | None) -> list[TextMatch]:
        """The best transcript lines for the words, best first: enough of them to cover `k` videos when grouping by
        video, or all there are."""
        limit = max(200, 10 * k)
        while True:
            matches = search_text(self.index.db, terms, limit=limit, video_ids=video_ids)
            if group_by != "video" or len(matches) < limit or len({m.video_id for m in matches}) >= k:
                return matches
            limit *= 4
