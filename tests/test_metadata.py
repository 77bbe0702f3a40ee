import dataclasses
import json

import pytest

from gradnap.errors import GradnapError
from gradnap.method.metadata import (
    FORMAT_VERSION,
    Clock,
    CorpusMeta,
    GroupingMeta,
    LayerMeta,
    ModelMeta,
    Options,
    Progress,
    RunMeta,
)

#: Metadata exactly as gradnap 0.1.0 wrote it (format version 1).
V1 = {
    "format": "gradnap-result",
    "format_version": 1,
    "gradnap_version": "0.1.0",
    "created": "2026-11-20T10:00:00+00:00",
    "complete": True,
    "layers": [
        {"name": "input", "channels": 128, "index": 0, "width": 194, "jump": 1,
         "width_source": "cone"},
        {"name": "layer2", "channels": 96, "index": 2, "width": 73, "jump": 2,
         "width_source": "cone"},
    ],
    "groupings": [
        {"name": "grapheme", "kind": "builtin", "function": None, "unlabelled": 0},
        {"name": "all", "kind": "builtin", "function": None, "unlabelled": 0},
    ],
    "options": {"target": "prob", "examples": "nonblank", "min_count": 20, "naps": True,
                "chunk_frames": 128, "blank": 28, "engine": "ConeEngine",
                "frame_seconds": 0.008, "n_features": 128, "features": {"n_mels": 128}},
    "clock": {"stride": 2.0, "offset": 1.5},
    "model": {"class": "gradnap.model.Wav2Letter", "name": "default", "config": None,
              "parameters": 2381213, "weights_sha256": "ab" * 32, "source": "default"},
    "corpus": {"root": "/c", "utterances": 400, "with_phones": 400, "reading_problems": 0,
               "hash": "cd" * 32, "shards": [[0, 1]]},
    "progress": {"utterances": 400, "skipped": 0, "frames": 96117, "examples": 33557,
                 "seconds": 112.0, "items_done": 400, "ids_hash": "ef"},
    "problems": [],
}  # fmt: skip


def meta(**changes) -> RunMeta:
    return dataclasses.replace(RunMeta.from_json(V1), **changes)


def test_reads_version_1_files_and_writes_them_back_unchanged():
    m = RunMeta.from_json(V1)
    assert m.gradnap_version == "0.1.0" and m.format_version == 1
    assert m.layer("layer2") == LayerMeta("layer2", 96, 73, 2, 2, "cone")
    assert m.model.class_name == "gradnap.model.Wav2Letter"
    assert m.corpus.shards == ((0, 1),) and m.clock == Clock(2.0, 1.5)
    assert m.progress.frames_per_second == pytest.approx(33557 / 112)
    # written back with the fields 0.1.0 did not know, at the values it used
    assert m.to_json() == dict(
        V1,
        merged_from=1,
        options=dict(V1["options"], label_time="centre"),
        listening_offsets_ms={},
    )
    assert RunMeta.from_json(json.loads(json.dumps(m.to_json()))) == m


def test_round_trip_of_every_field():
    m = RunMeta(
        layers=(LayerMeta("input", 3, 5, None, 1.5, "estimated"),),
        groupings=(GroupingMeta("f", "function", "mod.f", 7),),
        options=Options("logit", "all", 1, False, 64, 4, "AutogradEngine", 0.01, 3, {}),
        model=ModelMeta("m.M", "M", {"a": 1}, 10, "00", "file.pt"),
        corpus=CorpusMeta(None, None, None, 0, None, (), 1, (CorpusMeta("/a"), CorpusMeta("/b"))),
        progress=Progress(3, "h", 2, 1, 50, 20, 1.5),
        clock=None,
        complete=False,
        problems=("x: broken",),
        merged_from=2,
        listening_offsets={-4: 3, 68: 10},
    )
    assert RunMeta.from_json(json.loads(json.dumps(m.to_json()))) == m


def test_unreadable_metadata_says_what_is_wrong():
    with pytest.raises(GradnapError, match="not a gradnap result"):
        RunMeta.from_json({"format": "other"})
    with pytest.raises(GradnapError, match="newer than this gradnap reads"):
        RunMeta.from_json(dict(V1, format_version=FORMAT_VERSION + 1))
    with pytest.raises(GradnapError, match="lacks 'layers'"):
        RunMeta.from_json({k: v for k, v in V1.items() if k != "layers"})


def test_one_compatibility_rule_for_resume_and_merge():
    m = meta()
    assert m.mismatches(m, "resume") == m.mismatches(m, "merge") == []
    other_chunks = meta(options=dataclasses.replace(m.options, chunk_frames=64))
    assert m.mismatches(other_chunks, "merge") == []  # sums add up whatever the chunking
    assert m.mismatches(other_chunks, "resume") == ["chunk_frames (128 vs 64)"]
    other_shard = meta(corpus=dataclasses.replace(m.corpus, shards=((1, 2),)))
    assert m.mismatches(other_shard, "merge") == []
    assert m.mismatches(other_shard, "resume") == ["shards (((0, 1),) vs ((1, 2),))"]
    for changed, item in [
        (meta(model=dataclasses.replace(m.model, weights_sha256="00")), "model weights"),
        (
            meta(options=dataclasses.replace(m.options, target="logit")),
            "target ('prob' vs 'logit')",
        ),
        (meta(layers=m.layers[:1]), "layers"),
        (meta(groupings=m.groupings[1:]), "groupings"),
    ]:
        for purpose in ("resume", "merge"):
            found = m.mismatches(changed, purpose)
            assert len(found) == 1 and found[0].startswith(item), (purpose, found)


def test_progress_of_runs_in_sequence_and_in_parallel():
    a, b = Progress(10, "x", 8, 2, 100, 40, 5.0), Progress(12, "y", 9, 3, 90, 30, 7.0)
    seq = Progress.combine([a, b], parallel=False)
    par = Progress.combine([a, b], parallel=True)
    for p in (seq, par):
        assert (p.utterances, p.skipped, p.frames, p.examples) == (17, 5, 190, 70)
    assert seq.seconds == 12.0 and par.seconds == 7.0
    assert par.items_done == 12 and seq.ids_hash == par.ids_hash == ""


def test_tie_counts_add_up_and_round_trip():
    a = Progress(utterances=1, ties={"layer1": 2, "input": 1}, flat={"layer1": 1})
    b = Progress(utterances=1, ties={"layer1": 3})
    for parallel in (False, True):
        p = Progress.combine([a, b], parallel=parallel)
        assert p.ties == {"input": 1, "layer1": 5} and p.flat == {"layer1": 1}
    m = meta(progress=a)
    assert RunMeta.from_json(json.loads(json.dumps(m.to_json()))).progress == a
    assert "ties" not in meta().to_json()["progress"]  # none: not written
