"""The studio's WSGI app without a browser: routes, bad input, tabs, edits through the session."""

import io
import json
import os
import re
import threading

import numpy as np
import pytest
from werkzeug.test import Client

from tfgcrf.colorizer import Colorizer
from tfgcrf.imageio import read_image
from tfgcrf.studio import StudioApp
from tfgcrf.studio import app as studio_app

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
PHOTO = os.path.join(DATA, "fullres", "sklearn_china.jpg")  # 384x256
OTHER = os.path.join(DATA, "photos", "opencv_fruits.png")
TAB, OTHER_TAB = "tab-aaaaaaaa", "tab-bbbbbbbb"


@pytest.fixture(scope="module")
def app(smoke_model):
    return StudioApp(Colorizer(smoke_model), [PHOTO, OTHER], num_samples=3)


@pytest.fixture
def client(app):
    return Client(app)


def _open(client, path, tab=TAB):
    with open(path, "rb") as handle:
        return client.post(f"/api/open?tab={tab}", data=handle.read(),
                           headers={"X-Filename": os.path.basename(path)})


def _edit(client, state, tab=TAB):
    return client.post(f"/api/edit?tab={tab}", data=json.dumps(state),
                       content_type="application/json")


def _png(response):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(response.data)).convert("RGB"))


def test_page_and_assets_ship_in_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and b"/static/studio.js" in page.data
    for name, kind in (("studio.js", "javascript"), ("studio.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.content_type
    assert client.get("/static/missing.js").status_code == 404
    assert client.get("/static/..%2Fapp.py").status_code == 404
    config = client.get(f"/api/config?tab={TAB}").get_json()
    assert config["photos"] == ["opencv_fruits.png", "sklearn_china.jpg"] and config["samples"] == 3


def test_open_gives_samples_with_weights(client, app):
    opened = _open(client, PHOTO).get_json()
    assert (opened["width"], opened["height"], opened["name"]) == (384, 256, "sklearn_china.jpg")
    weights = [sample["weight"] for sample in opened["samples"]]
    assert len(weights) == 3 and weights == sorted(weights, reverse=True) and sum(weights) <= 1.0001
    assert opened["samples"][0]["thumb"].startswith("data:image/jpeg;base64,")
    by_name = client.post(f"/api/open?tab={TAB}&name=opencv_fruits.png").get_json()
    assert by_name["name"] == "opencv_fruits.png"


def test_bad_input_is_a_message_and_the_app_keeps_running(client, bad_uploads):
    assert _open(client, PHOTO).status_code == 200
    for name, content, message in bad_uploads:
        response = client.post(f"/api/open?tab={TAB}", data=content, headers={"X-Filename": "x.png"})
        assert response.status_code == 400, message
        error = response.get_json()["error"]
        assert re.search(message, error) and "\n" not in error and "Traceback" not in error
        # Named as uploaded, not "<N bytes>".
        assert "bytes>" not in error and (name == "empty" or "x.png" in error), error
    # The tab's photo is still open: a failed upload loses nothing.
    assert client.get(f"/api/result.png?tab={TAB}").status_code == 200
    assert "tab id" in client.get("/api/result.png?tab=x").get_json()["error"]
    assert "no photo open" in _edit(client, {"points": []}, tab="tab-never-opened").get_json()["error"]
    assert "not valid JSON" in client.post(f"/api/edit?tab={TAB}", data=b"{").get_json()["error"]
    assert "no photo named" in client.post(f"/api/open?tab={TAB}&name=x.png").get_json()["error"]
    assert client.get("/api/nothing").status_code == 404


@pytest.fixture
def bad_uploads(bad_inputs):
    """The CLI's bad files (tests/commands/conftest.py) as upload bodies and expected messages."""
    uploads = []
    for name in ("not_an_image", "truncated", "empty", "too_large"):
        path, message = bad_inputs[name]
        with open(path, "rb") as handle:
            content = handle.read()
        uploads.append((name, content, "the upload is empty" if name == "empty" else message))
    return uploads


class _BusyModel:
    """A `_compute` lock that another tab holds: entering it is an error of the test."""

    def __enter__(self):
        raise AssertionError("the upload waited for the model")

    def __exit__(self, *exc_info):
        return False


def test_uploads_the_headers_refuse_do_not_wait_for_the_model_nor_decode(app, bad_uploads,
                                                                           monkeypatch):
    """A new user's 40 kB PNG declaring 30 MP was refused after 9.3 s, a garbage upload after
    3.1 s: both waited for another tab's work (and for the decoder's tracing). The header check
    of the one decode rule refuses them first, with the decoder's message."""
    from tfgcrf import imageio

    def no_decoding(*args, **kwargs):
        raise AssertionError("the upload was decoded")

    client = Client(app)
    monkeypatch.setattr(app, "_compute", _BusyModel())
    monkeypatch.setattr(imageio, "decode_data", no_decoding)
    for name, content, message in bad_uploads:
        if name in ("not_an_image", "too_large"):
            response = client.post(f"/api/open?tab={TAB}", data=content,
                                   headers={"X-Filename": "x.png"})
            error = response.get_json()["error"]
            assert response.status_code == 400 and re.search(message, error), error
            assert error.endswith(": x.png"), error
    # A photo the headers accept goes on to the decoder (apart from the model's work).
    by_name = client.post(f"/api/open?tab={TAB}&name=opencv_fruits.png")
    assert by_name.status_code == 500 and "the upload was decoded" in by_name.get_json()["error"]


def test_an_upload_the_decoder_refuses_does_not_wait_for_the_model(app, bad_uploads, monkeypatch):
    """A PNG with valid headers but corrupt data passes the header check; the decoder refuses it.
    It was decoded under the model's lock, so its refusal waited for other tabs' work."""
    client = Client(app)
    monkeypatch.setattr(app, "_compute", _BusyModel())
    (content, message), = [(content, message) for name, content, message in bad_uploads
                           if name == "truncated"]
    response = client.post(f"/api/open?tab={TAB}", data=content, headers={"X-Filename": "x.png"})
    error = response.get_json()["error"]
    assert response.status_code == 400 and re.search(message, error) and "x.png" in error, error


def test_tabs_do_not_mix(client):
    _open(client, PHOTO, TAB)
    _open(client, OTHER, OTHER_TAB)
    first = _png(client.get(f"/api/result.png?tab={TAB}"))
    second = _png(client.get(f"/api/result.png?tab={OTHER_TAB}"))
    assert first.shape == read_image(PHOTO).shape and second.shape == read_image(OTHER).shape


def test_an_edit_that_waits_for_other_work_reports_the_wait_apart_from_its_solve(client, app):
    """The first edit after an open may wait for the session being prepared: "solve" is the
    edit's own time, "wait" the rest (a new user read a 22 s wait as the solve)."""
    _open(client, PHOTO)
    app._compute.acquire()  # other work (after the background preparation) holds the model
    threading.Timer(0.5, app._compute.release).start()
    state = {"from_sample": None, "points": [{"id": "a", "x": 60, "y": 30, "color": "#c06020"}],
             "links": []}
    answer = _edit(client, state).get_json()
    assert answer["wait_ms"] >= 450 and answer["solve_ms"] > 0
    assert answer["total_ms"] >= answer["wait_ms"] + answer["solve_ms"] + answer["encode_ms"] - 0.2
    assert app.latencies[-1]["wait_ms"] == answer["wait_ms"]


def test_edits_through_the_session_match_colorizer_edit(client, app):
    _open(client, PHOTO)
    state = {"from_sample": None, "points": [
        {"id": "a", "x": 60, "y": 30, "color": "#c06020"},
        {"id": "b", "x": 300, "y": 200, "color": "#2050a0"}], "links": []}
    answer = _edit(client, state).get_json()
    assert answer["points"] == 2 and answer["updates"] >= 2 and answer["solve_ms"] > 0
    # Move b, add a link, then back to the first state (an undo): one update each time.
    state["points"][1].update(x=250, y=180)
    assert _edit(client, state).get_json()["updates"] == 1
    state["links"] = [{"id": "l", "from": [10, 10], "to": [370, 240]}]
    assert _edit(client, state).get_json()["updates"] == 1
    result = _png(client.get(f"/api/result.png?tab={TAB}"))
    document = client.get(f"/api/edit.json?tab={TAB}").get_json()
    expected = app.colorizer.edit(
        PHOTO, [(p["x"], p["y"]) for p in document["points"]],
        [tuple(int(p["color"][i:i + 2], 16) for i in (1, 3, 5)) for p in document["points"]],
        links=[(tuple(l["from"]), tuple(l["to"])) for l in document["links"]])
    assert np.abs(result.astype(int) - expected.astype(int)).max() <= 1
    # A refused change (two colors on one pixel) leaves the session as it was.
    bad = json.loads(json.dumps(state))
    bad["points"].append({"id": "c", "x": 60, "y": 30, "color": "#00ff00"})
    error = _edit(client, bad).get_json()["error"]
    assert "same pixel" in error
    again = _png(client.get(f"/api/result.png?tab={TAB}"))
    assert np.array_equal(again, result)


def test_the_page_has_an_icon_so_the_browser_asks_for_no_favicon(client):
    """Every page load logged "favicon.ico ... 404" in the browser's console."""
    assert b'<link rel="icon" href="data:,">' in client.get("/").data


def test_the_same_pixel_refusal_names_points_by_the_page_s_list_numbers(client):
    """The message named the edit session's internal ids ("points 3 and 0"), which the page's
    list (1., 2., ... in the order of the edit's points) does not show."""
    _open(client, PHOTO)
    state = {"from_sample": None, "points": [
        {"id": "a", "x": 60, "y": 30, "color": "#c06020"},
        {"id": "b", "x": 300, "y": 200, "color": "#2050a0"},
        {"id": "c", "x": 100, "y": 100, "color": "#20a050"}], "links": []}
    assert _edit(client, state).status_code == 200
    # a is removed, d added; then c is moved onto b's pixel: the list is b, c, d.
    del state["points"][0]
    state["points"].append({"id": "d", "x": 10, "y": 10, "color": "#808020"})
    assert _edit(client, state).status_code == 200
    state["points"][1].update(x=300, y=200)
    response = _edit(client, state)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(
        "points 1 and 2 are on the same pixel (300, 200) with different colors")
    # The same color on one pixel is no conflict.
    state["points"][1]["color"] = "#2050a0"
    assert _edit(client, state).status_code == 200


class _Waiting:
    """`_compute` that says when the thread "stale-edit" waits for it."""

    def __init__(self, lock):
        self.lock = lock
        self.waiting = threading.Event()
        self.acquired = threading.Event()

    def __enter__(self):
        edit = threading.current_thread().name == "stale-edit"
        if edit:
            self.waiting.set()
        self.lock.acquire()
        if edit:
            self.acquired.set()

    def __exit__(self, *exc_info):
        self.lock.release()
        return False


def test_an_edit_for_a_photo_no_longer_open_is_not_solved(client, app, monkeypatch):
    """An edit that waited for the model while the tab opened another photo was solved on the old
    photo (a full solve for nothing) and its picture shown as the new photo's."""
    opened = _open(client, PHOTO).get_json()
    state = {"from_sample": None, "points": [{"id": "a", "x": 60, "y": 30, "color": "#c06020"}],
             "links": []}
    lock = threading.Lock()
    monkeypatch.setattr(app, "_compute", _Waiting(lock))
    solved = len(app.latencies)
    answers = []
    with lock:
        edit = threading.Thread(target=lambda: answers.append(_edit(client, state)),
                                name="stale-edit")
        edit.start()
        assert app._compute.waiting.wait(60)
        # The open of another photo replaces the tab's photo (as `_open` does under the lock).
        app._tabs[TAB] = studio_app._Tab("other.png", *[getattr(app._tabs[TAB], name) for name in (
            "rgb", "samples", "scores", "lightness")])
    edit.join(60)
    assert answers[0].status_code == 409 and "another photo was opened" in answers[0].get_json()["error"]
    assert len(app.latencies) == solved
    # An edit naming the photo it was made for (the open's "photo") is refused once another is open.
    monkeypatch.undo()
    reopened = _open(client, PHOTO).get_json()
    assert reopened["photo"] != opened["photo"]
    stale = client.post(f"/api/edit?tab={TAB}&photo={opened['photo']}", data=json.dumps(state),
                        content_type="application/json")
    assert stale.status_code == 409
    fresh = client.post(f"/api/edit?tab={TAB}&photo={reopened['photo']}", data=json.dumps(state),
                        content_type="application/json")
    assert fresh.status_code == 200 and fresh.get_json()["points"] == 1


def test_an_edit_waiting_while_the_tab_opens_another_photo_is_not_solved(client, app, monkeypatch):
    """The open put its photo in the tab after freeing the model: an edit of the previous photo
    waiting for the model could take it in between and be solved on the photo no longer open (seen
    with a real Chromium: "edit points=2" logged after "open portrait.jpg")."""
    _open(client, PHOTO)
    state = {"from_sample": None, "points": [{"id": "a", "x": 60, "y": 30, "color": "#c06020"}],
             "links": []}
    lock = threading.Lock()
    compute = _Waiting(lock)
    monkeypatch.setattr(app, "_compute", compute)
    colorize_started = threading.Event()
    colorize = app.colorizer.colorize

    def slow_colorize(*args, **kwargs):
        colorize_started.set()
        assert compute.waiting.wait(60)  # the edit waits for the model
        return colorize(*args, **kwargs)

    tab_class = studio_app._Tab

    def new_tab(*args):
        # Made after the model is freed (the old code): the waiting edit takes the model first.
        # Made while the open holds it (the fix): the edit cannot, and this wait runs out.
        compute.acquired.wait(3)
        return tab_class(*args)

    monkeypatch.setattr(app.colorizer, "colorize", slow_colorize)
    monkeypatch.setattr(studio_app, "_Tab", new_tab)
    solved = len(app.latencies)
    answers = []
    opening = threading.Thread(target=lambda: _open(client, PHOTO))
    opening.start()
    assert colorize_started.wait(60)
    edit = threading.Thread(target=lambda: answers.append(_edit(client, state)), name="stale-edit")
    edit.start()
    opening.join(120)
    edit.join(120)
    assert answers[0].status_code == 409, answers[0].get_json()
    assert len(app.latencies) == solved
