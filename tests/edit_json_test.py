"""tfgcrf.edit_json: the edit document of `tfgcrf studio` and `tfgcrf edit --points-json`."""

import json

import pytest

from tfgcrf import edit_json
from tfgcrf.errors import InputError


def test_document_round_trip():
    value = edit_json.document([(3, 4), (10, 2)], [(255, 128, 0), (1, 2, 3)],
                               [((0, 0), (5, 6))], from_sample=2, seed=7, num_samples=4,
                               mode="draw", image="photo.jpg", size=(20, 10))
    assert value["points"][0] == {"x": 3, "y": 4, "color": "#ff8000"}
    assert value["links"] == [{"from": [0, 0], "to": [5, 6]}]
    parsed = edit_json.parse(json.loads(json.dumps(value)), 20, 10)
    assert parsed.points == {"0": ((3, 4), (255, 128, 0)), "1": ((10, 2), (1, 2, 3))}
    assert parsed.links == {"0": ((0, 0), (5, 6))}
    assert (parsed.from_sample, parsed.seed, parsed.num_samples, parsed.mode, parsed.size) == (
        2, 7, 4, "draw", (20, 10))


def test_minimal_document_and_ids():
    parsed = edit_json.parse({"points": [{"id": "a", "x": 1, "y": 1, "color": [0, 10, 20]}]},
                             with_ids=True)
    assert parsed.points == {"a": ((1, 1), (0, 10, 20))}
    assert parsed.links == {} and parsed.from_sample is None and parsed.seed is None


@pytest.mark.parametrize("value, message", [
    ([], "must be a JSON object"),
    ({"pionts": []}, "unknown key 'pionts'"),
    ({"format": "other"}, "not a tfgcrf edit"),
    ({"version": 2}, "unsupported edit version 2"),
    ({"points": {}}, "'points' must be a list"),
    ({"points": [{"x": 1, "y": 1}]}, "point 1: color: None is not a color"),
    ({"points": [{"x": 1, "y": 1, "color": "#12345"}]}, "is not a color"),
    ({"points": [{"x": 1, "y": 1, "color": [0, 0, 256]}]}, "is not a color"),
    ({"points": [{"x": "1", "y": 1, "color": "#000000"}]}, "point 1: x must be an integer"),
    ({"points": [{"x": 1.5, "y": 1, "color": "#000000"}]}, "point 1: x must be an integer"),
    ({"points": [{"x": -1, "y": 1, "color": "#000000"}]}, "at least 0"),
    ({"points": [{"x": 20, "y": 1, "color": "#000000"}]}, r"point 1 \(20, 1\) is outside the 20x10"),
    ({"points": [{"x": 1, "y": 1, "color": "#000000", "size": 3}]}, "unknown key 'size'"),
    ({"links": [{"from": [1, 1], "to": [1, 1]}]}, "to itself"),
    ({"links": [{"from": [1, 1]}]}, "'to' must be \\[x, y\\]"),
    ({"links": [{"from": [1, 1], "to": [3, 30]}]}, r"link 1 \(to\) \(3, 30\) is outside"),
    ({"width": 30, "height": 10}, "made on a 30x10 photo, this one is 20x10"),
    ({"from_sample": -1}, "from_sample must be at least 0"),
    ({"mode": "best"}, "mode must be"),
])
def test_errors_are_one_line(value, message):
    with pytest.raises(InputError, match=message) as caught:
        edit_json.parse(value, 20, 10)
    assert "\n" not in str(caught.value)


def test_ids_required_and_unique_for_the_page():
    with pytest.raises(InputError, match="needs a string \"id\""):
        edit_json.parse({"points": [{"x": 1, "y": 1, "color": "#000000"}]}, 20, 10, with_ids=True)
    twice = {"points": [{"id": "a", "x": 1, "y": 1, "color": "#000000"},
                        {"id": "a", "x": 2, "y": 1, "color": "#000000"}]}
    with pytest.raises(InputError, match="duplicate id 'a'"):
        edit_json.parse(twice, 20, 10, with_ids=True)


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="no such edit file"):
        edit_json.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{\"points\": [")
    with pytest.raises(InputError, match="is not valid JSON"):
        edit_json.load(broken)
