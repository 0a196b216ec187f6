"""A small labelled set for fusing visual and speech search: synthetic scene videos, sidecar subtitles with known
everyday sentences at known times (some videos have none), and queries of three kinds with their right video and span.

- visual: a scene's caption ("a red circle moving left"), a caption no other scene in the set has;
- spoken: a few words of one subtitle line, nothing to do with what is seen ("flight delayed snow");
- mixed: a caption and spoken words as two terms ("a red circle moving left + bakery opens early"): the right video
  shows the scene while the line is said; one distractor shows the same scene with other words, another says a line
  with the same words over other scenes.

It is honest about words: every subtitle shares common words ("morning", "again", "today") with others, and everyday
lines name colours, shapes and directions ("turn left after the red house"), so a visual query's words also match
lines of videos that do not show it. Which videos those are is left to chance (the seed).

Ground truth comes from here, not from vidsearch: the only vidsearch code used is the renderer of the synthetic
videos (`vidsearch.synthetic`, the scenes the tiny model is trained on), and the subtitles are written by hand. It
lives in tests/ because the tests build it (the issue asks for "a small labelled set that the tests build");
bench/fusion.py imports it from here, as bench/asr.py does tests/media.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vidsearch.synthetic import COLORS, DIRECTIONS, SHAPES, Scene, write_video

KINDS = ("visual", "spoken", "mixed")
SCENES_PER_VIDEO = 3
SCENE_SECONDS = 8.0
LINES_PER_SCENE = 2  # a line in each half of a scene (talking videos only)

# Mixed queries: two lines that share the query's words; the right video says the first, a distractor the second.
PAIRED = [
    ("the bakery on our street opens early on sundays", "my cousin's bakery never opens early on holidays",
     "bakery opens early"),
    ("remember to water the tomato plants before the trip", "the tomato plants need more water in the summer",
     "water tomato plants"),
    ("the airport train was cancelled again this morning", "we nearly missed the last train to the airport",
     "airport train"),
    ("grandma's soup recipe needs two kinds of beans", "this soup recipe is much easier than the old one",
     "soup recipe"),
    ("the library closes at noon during the holidays", "during the holidays the library lends board games",
     "library holidays"),
    ("my neighbour fixed the broken bicycle chain for free", "a broken bicycle chain is easy to fix at home",
     "broken bicycle chain"),
    ("the concert tickets sold out in ten minutes", "we still have two concert tickets for friday",
     "concert tickets"),
    ("who will feed the cat while we are away", "please feed the cat before you leave for work",
     "feed the cat"),
    ("the dentist moved my appointment to thursday", "i have a dentist appointment on monday morning",
     "dentist appointment"),
    ("the coffee machine in the office is broken again", "someone finally cleaned the office coffee machine",
     "office coffee machine"),
]
# Spoken queries: a line and the words asked for (some of them common in other lines too).
SINGLE = [
    ("our flight was delayed by the snow again", "flight delayed snow"),
    ("the kids built a sandcastle at the beach today", "kids sandcastle beach today"),
    ("i finally finished that long mystery novel", "finished mystery novel"),
    ("the plumber is coming to fix the kitchen sink", "plumber kitchen sink"),
    ("she plays the violin in the city orchestra", "violin orchestra"),
    ("we painted the garden fence last weekend", "painted garden fence"),
    ("the market sells fresh fish every morning", "market fresh fish morning"),
    ("he forgot his passport at the hotel", "forgot passport hotel"),
    ("my phone battery dies after a few hours", "phone battery dies"),
    ("the museum is free on the first sunday of the month", "museum free sunday"),
]
# The rest of the lines: everyday talk that shares words with the queries (colours, shapes, directions, moving...).
FILLER = [
    "turn left after the red house and keep going",
    "i think you were right about the weather today",
    "prices went up again this month",
    "please sit down and have some tea",
    "the green bus is always late in the morning",
    "we are moving to a bigger flat next year",
    "she wore a yellow raincoat to the party",
    "the blue door at the back of the office is locked",
    "the old town square is full of tourists in the summer",
    "he drew a circle around the date on the calendar",
    "keep going straight and then turn right at the lights",
    "we looked up at the stars for hours",
    "the neighbours left for their holiday this morning",
    "i left the keys on the kitchen table again",
    "the red wine stain would not come out",
    "the kids are moving their beds upstairs today",
    "wake up early tomorrow because the taxi comes at six",
    "the triangle in the school band was too loud",
    "slow down, the road is icy this morning",
    "write it down before you forget",
]


@dataclass(frozen=True)
class Line:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Query:
    """What is typed (terms as on the command line), whose answer is `video` between `start` and `end` seconds."""

    kind: str
    text: str
    video: str  # the right video's file name
    start: float
    end: float


@dataclass
class FusionSet:
    folder: Path  # the videos and their sidecar .srt files
    scenes: dict[str, list[str]]  # file name -> its scenes' captions, in order
    lines: dict[str, list[Line]]  # file name -> its subtitle lines (none: the video has no text)
    queries: list[Query]

    def path(self, video: str) -> str:
        return str((self.folder / video).resolve())

    def save(self, out: Path) -> None:
        """The labels as JSON, for a reader who wants to check them."""
        out.write_text(json.dumps({"folder": str(self.folder), "scenes": self.scenes,
                                   "lines": {v: [asdict(x) for x in ls] for v, ls in self.lines.items()},
                                   "queries": [asdict(q) for q in self.queries]}, indent=1), encoding="utf-8")


def build_fusion_set(folder: Path, *, videos: int = 6, per_kind: int = 4, seed: int = 0, size: int = 128,
                     fps: float = 4.0) -> FusionSet:
    """Write `videos` videos of SCENES_PER_VIDEO scenes (SCENE_SECONDS each) under `folder`, and beside all but every
    third one its subtitles, a line in each half of each scene. Return the set with `per_kind` queries of each kind."""
    rng = np.random.default_rng(seed)
    names = [f"clip_{i:02d}.mp4" for i in range(videos)]
    talking = [n for i, n in enumerate(names) if i % 3 != 2]
    if per_kind > min(len(PAIRED), len(SINGLE)) or len(talking) < 2:
        raise ValueError(f"{videos} videos and {per_kind} queries per kind: need per_kind <= {min(len(PAIRED), len(SINGLE))}"
                         " and at least 3 videos")
    captions = [Scene(c, s, d).caption for c in COLORS for s in SHAPES for d in DIRECTIONS]
    pool = [captions[i] for i in rng.permutation(len(captions))]
    scenes: dict[str, list[str | None]] = {n: [None] * SCENES_PER_VIDEO for n in names}
    said: dict[str, list[str | None]] = {n: [None] * SCENES_PER_VIDEO * LINES_PER_SCENE for n in talking}

    def choose(grid: dict[str, list], options: list[tuple[str, int]]) -> tuple[str, int]:
        """One of the (video, slot) options at random, from the videos with the most free slots in `grid`."""
        if not options:
            raise ValueError(f"{videos} videos are too few for {per_kind} queries of each kind")
        room = {n: grid[n].count(None) for n, _ in options}
        options = [(n, j) for n, j in options if room[n] == max(room.values())]
        return options[int(rng.integers(len(options)))]

    def free(grid: dict[str, list], among: list[str], avoid: str | None = None) -> tuple[str, int]:
        return choose(grid, [(n, j) for n in among if n != avoid for j, x in enumerate(grid[n]) if x is None])

    def halves(name: str, scene: int) -> list[int]:
        """The free line slots during a scene."""
        return [line for line in range(scene * LINES_PER_SCENE, (scene + 1) * LINES_PER_SCENE) if said[name][line] is None]

    picks: list[tuple[str, str, str, int, str]] = []  # kind, query text, video, slot, what labels the span
    for said_a, said_b, words in [PAIRED[i] for i in rng.permutation(len(PAIRED))[:per_kind]]:
        caption = pool.pop()
        right, scene = choose(scenes, [(n, j) for n in talking for j in range(SCENES_PER_VIDEO)
                                       if scenes[n][j] is None and halves(n, j)])  # the line is said during the scene
        options = halves(right, scene)
        scenes[right][scene], said[right][options[int(rng.integers(len(options)))]] = caption, said_a
        other, line = free(said, talking, avoid=right)
        said[other][line] = said_b  # the same words, over other scenes
        twin, twin_scene = free(scenes, names, avoid=right)
        scenes[twin][twin_scene] = caption  # the same scene, with other words or none
        picks.append(("mixed", f"{caption} + {words}", right, scene, "scene"))
    for text, words in [SINGLE[i] for i in rng.permutation(len(SINGLE))[:per_kind]]:
        video, line = free(said, talking)
        said[video][line] = text
        picks.append(("spoken", words, video, line, "line"))
    for _ in range(per_kind):
        caption = pool.pop()
        video, scene = free(scenes, names)
        scenes[video][scene] = caption
        picks.append(("visual", caption, video, scene, "scene"))
    queried = {text.split(" + ")[0] for kind, text, *_ in picks if kind != "spoken"}
    rest = [c for c in pool if c not in queried]
    for name in names:  # the scenes and lines no query asks for; everyday lines come round again in a large set
        scenes[name] = [c if c is not None else rest.pop() for c in scenes[name]]
    for name in talking:
        said[name] = [t if t is not None else FILLER[int(rng.integers(len(FILLER)))] for t in said[name]]

    folder.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[Line]] = {}
    for name in names:
        to_scene = {c: Scene(*_parse(c)) for c in scenes[name]}
        write_video(folder / name, [to_scene[c] for c in scenes[name]], scene_seconds=SCENE_SECONDS, fps=fps, size=size,
                    seed=int(rng.integers(2**31)))
        if name in said:
            lines[name] = []
            for j, text in enumerate(said[name]):  # one line in each half of a scene
                start = round(j * SCENE_SECONDS / LINES_PER_SCENE + float(rng.uniform(0.2, 1.0)), 2)
                lines[name].append(Line(start, round(start + float(rng.uniform(2.0, 2.8)), 2), text))
            (folder / name).with_suffix(".srt").write_text(srt(lines[name]), encoding="utf-8")
    queries = []
    for kind, text, video, slot, span in sorted(picks, key=lambda p: KINDS.index(p[0])):
        if span == "line":
            start, end = lines[video][slot].start, lines[video][slot].end
        else:
            start, end = slot * SCENE_SECONDS, (slot + 1) * SCENE_SECONDS
        queries.append(Query(kind, text, video, start, end))
    return FusionSet(folder, scenes, lines, queries)


def _parse(caption: str) -> tuple[str, str, str]:
    _, color, shape, _, direction = caption.split()
    return color, shape, direction


def srt(lines: list[Line]) -> str:
    """SubRip text for the lines, written by hand so the labels do not depend on the parser under test."""

    def stamp(t: float) -> str:
        ms = round(t * 1000)
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    return "".join(f"{i}\n{stamp(x.start)} --> {stamp(x.end)}\n{x.text}\n\n" for i, x in enumerate(lines, 1))


# --- scoring: the same for the test and the benchmark ------------------------------------------------------------------

def ranks(query: Query, hits: list[dict], path: str) -> tuple[int | None, int | None]:
    """1-based rank of the first hit in the right video, and of the first that also overlaps the labelled span
    (temporal IoU > 0: the spans share some time); None when not in `hits`."""
    video = next((i for i, h in enumerate(hits, 1) if h["path"] == path), None)
    moment = next((i for i, h in enumerate(hits, 1)
                   if h["path"] == path and h["start"] < query.end and h["end"] > query.start), None)
    return video, moment


def metrics(found: list[int | None]) -> dict[str, float]:
    """R@1, R@5 and MRR (a miss counts 0) over the ranks of some queries."""
    n = max(len(found), 1)
    return {"r1": sum(r == 1 for r in found if r) / n, "r5": sum(r <= 5 for r in found if r) / n,
            "mrr": sum(1 / r for r in found if r) / n}
