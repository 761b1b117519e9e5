import json
import math

import numpy as np
import pytest

from fluidrec.codes.quality import code_truth_quality, topic_paths
from fluidrec.errors import DataError
from fluidrec.metrics import nmi, prefix_labels, purity


def test_purity_by_hand():
    # clusters 5: {0, 0, 1} -> majority 0 counts 2; 7: {1, 1} -> 2; (2 + 2) / 5
    assert purity(np.array([0, 0, 1, 1, 1]), np.array([5, 5, 5, 7, 7])) == pytest.approx(0.8)
    assert purity(np.array([3, 1, 2]), np.array([0, 1, 2])) == 1.0  # singletons are trivially pure
    assert purity(np.array([0, 1, 2, 3]), np.zeros(4, int)) == pytest.approx(0.25)
    assert math.isnan(purity(np.zeros(0, int), np.zeros(0, int)))


def test_nmi_by_hand():
    # true {0,0,1,1}, pred {0,0,0,1}: H(true) = ln 2, H(pred) = -(3/4 ln 3/4 + 1/4 ln 1/4),
    # I = sum p_ck ln(p_ck / (p_c p_k)) = 1/2 ln(4/3) + 1/4 ln(2/3) + 1/4 ln 2
    h_t = math.log(2)
    h_p = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert nmi(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])) == pytest.approx(mi / ((h_t + h_p) / 2))
    assert nmi(np.array([0, 0, 1, 1]), np.array([9, 9, 4, 4])) == pytest.approx(1.0)  # renamed
    assert nmi(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])) == pytest.approx(0.0)  # independent
    assert nmi(np.zeros(3, int), np.zeros(3, int)) == 1.0  # one group each: agree (sklearn's rule)
    assert nmi(np.array([0, 1, 2]), np.zeros(3, int)) == 0.0


def test_nmi_matches_sklearn():
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        t, p = rng.integers(0, 6, 300), rng.integers(0, 9, 300)
        p[:150] = t[:150]  # half agree: NMI well inside (0, 1)
        assert nmi(t, p) == pytest.approx(normalized_mutual_info_score(t, p), abs=1e-12)


def test_prefix_labels():
    paths = np.array([[0, 1, 5], [0, 2, 5], [0, 1, 6], [1, 1, 5]])
    assert prefix_labels(paths, 1).tolist() == [0, 0, 0, 1]
    assert prefix_labels(paths, 2).tolist() == [0, 1, 0, 2]
    assert len(set(prefix_labels(paths, 3).tolist())) == 4
    with pytest.raises(ValueError):
        prefix_labels(paths, 4)


def test_code_truth_quality_by_hand():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 0], [2, 3]])
    truth = np.array([[5, 50], [5, 51], [6, 60], [6, 61], [-1, -1]])  # last row: unknown topic, left out
    q = code_truth_quality(codes, truth)
    assert set(q) == {"purity_l1", "nmi_l1", "purity_l2", "nmi_l2"}
    assert q["purity_l1"] == 1.0 and q["nmi_l1"] == pytest.approx(1.0)  # c1 = topic_l1 up to names
    assert q["purity_l2"] == pytest.approx(0.75)  # prefix (1, 0) holds 60 and 61
    assert q["nmi_l2"] == pytest.approx(nmi(np.array([0, 1, 2, 3]), np.array([0, 1, 2, 2])))
    # a 1-level model: its full code is scored against the deeper truth too
    q1 = code_truth_quality(codes[:, :1], truth)
    assert q1["purity_l2"] == pytest.approx(0.5)


def test_topic_paths_reads_the_dataset(tmp_path):
    from fluidrec.data.io import write_manifest, write_table

    write_table(tmp_path, "slices", {
        "slice_id": np.array([10, 11, 12], np.int64), "room_id": np.array([1, 1, -1], np.int64),
        "start_ts": np.zeros(3, np.int64), "end_ts": np.ones(3, np.int64), "domain": ["live", "live", "video"],
        "title": ["a", "b", "c"],
        **{f"topic_l{l}": np.array([1, 2, 3], np.int32) * l for l in range(1, 5)},
    })
    write_manifest(tmp_path, source="test", seed=0)
    assert topic_paths(tmp_path, np.array([12, 10])).tolist() == [[3, 6, 9, 12], [1, 2, 3, 4]]
    with pytest.raises(DataError, match="99"):
        topic_paths(tmp_path, np.array([10, 99]))


def _coded_world(tmp_path, topic_l1):
    """4 well-separated clusters of 40 slices in 8-d (cluster i = topic_l1 i); an RQ model (2 x 8) on them."""
    from fluidrec.cli import main
    from fluidrec.data.embeddings import write_embeddings
    from fluidrec.data.io import write_manifest, write_table

    rng = np.random.default_rng(0)
    n = len(topic_l1)
    cell = np.repeat(np.arange(4), n // 4)
    x = (np.eye(8)[cell] * 10 + rng.normal(scale=0.1, size=(n, 8))).astype(np.float32)
    ids = np.arange(100, 100 + n, dtype=np.int64)
    write_table(tmp_path / "ds", "slices", {
        "slice_id": ids, "room_id": np.zeros(n, np.int64), "start_ts": np.zeros(n, np.int64),
        "end_ts": np.ones(n, np.int64), "domain": ["live"] * n, "title": ["t"] * n,
        "topic_l1": topic_l1.astype(np.int32), "topic_l2": (topic_l1 * 2 + ids % 2).astype(np.int32),
        "topic_l3": (topic_l1 * 2 + ids % 2).astype(np.int32) * 3, "topic_l4": np.arange(n, dtype=np.int32),
    })
    write_manifest(tmp_path / "ds", source="test", seed=0)
    write_embeddings(tmp_path / "emb.parquet", ids, x)
    assert main(["codes", "fit", "--embeddings", str(tmp_path / "emb.parquet"), "--levels", "2", "--size", "8",
                 "--out", str(tmp_path / "rq"), "--quiet", "--json"]) == 0
    return main


def _strict_json(text):
    def no_nan(name):
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=no_nan)


def test_codes_stats_reports_purity_and_nmi(tmp_path, capsys):
    main = _coded_world(tmp_path, np.repeat(np.arange(4), 40))
    capsys.readouterr()
    args = ["codes", "stats", "--model", str(tmp_path / "rq"), "--embeddings", str(tmp_path / "emb.parquet"), "--json"]
    assert main([*args, "--dataset", str(tmp_path / "ds")]) == 0
    out = _strict_json(capsys.readouterr().out)
    assert out["purity_l1"] == 1.0 and out["nmi_l1"] > 0.8  # each level-1 cell lies inside one topic
    assert 0.0 < out["nmi_l4"] < 1.0 and "l1_utilisation" in out
    assert main(args) == 0 and "purity_l1" not in _strict_json(capsys.readouterr().out)  # only with --dataset


def test_codes_stats_prints_null_not_nan(tmp_path, capsys):
    main = _coded_world(tmp_path, np.full(160, -1))  # no slice has a known topic: purity undefined
    capsys.readouterr()
    assert main(["codes", "stats", "--model", str(tmp_path / "rq"), "--embeddings", str(tmp_path / "emb.parquet"),
                 "--dataset", str(tmp_path / "ds"), "--json"]) == 0
    out = _strict_json(capsys.readouterr().out)
    assert out["purity_l1"] is None and out["nmi_l4"] is None
