"""`both` is never worse than the better single mode on the small labelled set of tests/fusion_set.py (issue 13),
through the real CLI with the default fusion rule. bench/fusion.py reports this set's numbers in bench/RESULTS.md."""

import pytest
from cli_helpers import run_cli, run_json
from fusion_set import KINDS, build_fusion_set, metrics, ranks

from vidsearch.indexdir import IndexDir
from vidsearch.search import Searcher
from vidsearch.terms import parse_query

pytestmark = pytest.mark.slow  # indexes six videos and runs 12 queries through the CLI, 24 in process

MODES = ("visual", "speech", "both")


def test_both_is_never_worse_than_the_better_single_mode(trained_tiny, tmp_path):
    folder, _ = trained_tiny
    labelled = build_fusion_set(tmp_path / "videos", videos=6, per_kind=4, seed=0)
    assert [q.kind for q in labelled.queries] == [kind for kind in KINDS for _ in range(4)]
    home = tmp_path / "index"
    run_cli("index", str(labelled.folder), "--model", str(folder), home=home)
    video = {mode: [] for mode in MODES}  # rank of the first moment in the right video
    moment = {mode: [] for mode in MODES}  # ... that also overlaps the labelled span
    searcher = Searcher(IndexDir(home))  # the single modes in this process (the text tower loads once): what query runs
    for query in labelled.queries:
        for mode in MODES:
            if mode == "both":  # the default rule, as a user gets it
                hits = run_json("query", query.text, "--mode", mode, "-k", "10", home=home)["hits"]
            else:
                hits = [{"path": m.path, "start": m.start, "end": m.end}
                        for m in searcher.search(parse_query(query.text), k=10, mode=mode)]
            video_rank, moment_rank = ranks(query, hits, labelled.path(query.video))
            video[mode].append(video_rank)
            moment[mode].append(moment_rank)
    # the sidecars were indexed and the labels agree with them: each spoken query finds its line first
    assert all(rank == 1 for rank, q in zip(moment["speech"], labelled.queries) if q.kind == "spoken"), moment["speech"]
    for level, found in (("video", video), ("moment", moment)):
        scores = {mode: metrics(found[mode]) for mode in MODES}
        for metric in ("r1", "mrr"):
            best_single = max(scores["visual"][metric], scores["speech"][metric])
            assert scores["both"][metric] >= best_single, (level, metric, scores, found)
