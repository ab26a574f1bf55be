"""The studio's WSGI application: one edit session per browser tab, JSON in, pictures out.

Routes (every `/api/` route takes `?tab=ID`, a random id the page makes when it loads, so that
tabs never share a photo):

| route | what |
| --- | --- |
| `GET /` , `GET /static/<file>` | the page and its assets (package data) |
| `GET /api/config` | the photos of the folder given on the command line, limits |
| `POST /api/open?name=N` or `POST /api/open` + the file's bytes | opens a photo: samples, weights |
| `POST /api/edit` + JSON state | brings the session to the state; the re-solved picture, times |
| `GET /api/attention?x=X&y=Y` | a point's attention map (its row of S) over the gray photo |
| `GET /api/result.png` , `GET /api/edit.json` | the downloads: full-resolution PNG, the edit |

An edit may name its photo (`&photo=N`, the open's answer `photo`): it is refused (409) once
the tab has opened another photo, as is an edit still waiting for the model at that moment.

The edit state is the document of `tfgcrf.edit_json` (what `tfgcrf edit --points-json` reads)
with an `id` per point and link. Errors are `{"error": "one line"}` with an HTTP 4xx code; an
unexpected failure is logged with its traceback and answered with 500, and the app keeps running.
"""

import base64
import collections
import importlib.resources
import io
import itertools
import json
import logging
import mimetypes
import os
import re
import threading
import time
import traceback
from urllib.parse import unquote

import numpy as np
from PIL import Image
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from tfgcrf import edit_json
from tfgcrf.errors import InputError, UserError

LOG = logging.getLogger("tfgcrf.studio")

# Largest upload accepted (bytes): a PNG at the decoder's pixel limit (imageio.MAX_PIXELS) fits.
# The one home of the limit: the app refuses a larger body (its Content-Length, before reading it),
# waitress a much larger one (StudioServer), both with `upload_too_large()`.
MAX_UPLOAD_BYTES = 256 * 1024 * 1024
# waitress's own body limit is this far above the app's: waitress refuses a Content-Length equal to
# its limit and counts chunked framing, so that the app's check, on the de-chunked length, decides.
_SERVER_BODY_MARGIN = 1 << 20
# Longest side of the pictures sent to the page; downloads keep the photo's full resolution.
DISPLAY_SIDE = 1600
THUMB_SIDE = 200
# Open photos kept in memory (least recently used tabs are closed first).
MAX_TABS = 4

_TAB_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
# Numbers the photos opened (`photo` in the open's answer; an edit may name the photo it is for).
_PHOTO_TOKENS = itertools.count(1)


class StalePhoto(UserError):
    """An edit for a photo no longer open in its tab (another one was opened meanwhile)."""


class _Tab:
    """One browser tab's photo, its samples and its edit session."""

    def __init__(self, name, rgb, samples, scores, lightness):
        self.name = name
        self.rgb = rgb
        self.height, self.width = rgb.shape[:2]
        self.samples = samples  # uint8 [N, H, W, 3]
        self.scores = scores
        self.lightness = lightness  # float32 [H, W], CIE L*
        self.session = None
        self.from_sample = None
        self.points = {}  # client id -> ((x, y), (r, g, b))
        self.links = {}  # client id -> ((x1, y1), (x2, y2))
        self.point_keys = {}  # client id -> session id
        self.link_keys = {}
        self.image = None  # uint8 [H, W, 3] of the current state
        self.token = next(_PHOTO_TOKENS)

    def start_image(self):
        """The picture before any point: the chosen sample, or the gray photo."""
        if self.from_sample is None:
            return gray_image(self.lightness)
        return self.samples[self.from_sample]


def gray_image(lightness):
    """CIE L* `[H, W]` -> uint8 `[H, W, 3]` gray with that lightness (a = b = 0)."""
    from tfgcrf import color

    lab = np.stack([lightness, np.zeros_like(lightness), np.zeros_like(lightness)], axis=-1)
    return np.round(color.lab_to_rgb(lab).numpy() * 255.0).astype(np.uint8)


def encode(rgb, max_side=None, kind="JPEG"):
    """uint8 `[H, W, 3]` -> encoded bytes, shrunk (Lanczos) so that its longest side <= max_side."""
    picture = Image.fromarray(np.asarray(rgb, np.uint8))
    if max_side is not None and max(picture.size) > max_side:
        scale = max_side / max(picture.size)
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.LANCZOS)
    buffer = io.BytesIO()
    if kind == "JPEG":
        picture.save(buffer, "JPEG", quality=92)
    else:
        picture.save(buffer, "PNG", compress_level=3)
    return buffer.getvalue()


def data_url(data, kind="jpeg"):
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def _prepare_header_check():
    from tfgcrf import decode

    decode.prepare_check()


def list_photos(source):
    """The photos the page offers: `(names, paths)` of an image file or of a folder's images."""
    from tfgcrf.commands.colorize import expand_inputs

    if source is None:
        return []
    if not os.path.exists(source):
        raise InputError(f"no such photo or folder: {source}")
    files, problems = expand_inputs([source])
    if problems:
        raise InputError(problems[0])
    return files


class StudioApp:
    """The studio as a WSGI application.

    Args:
      colorizer: a `tfgcrf.Colorizer`.
      photos: paths of the photos offered in the page (`list_photos`).
      num_samples: diverse samples shown per photo (at most the model's components in "top" mode).
      seed, mode: how the samples are drawn (as `tfgcrf colorize`).
      max_tabs: open photos kept in memory.
    """

    def __init__(self, colorizer, photos=(), num_samples=None, seed=0, mode="top", max_tabs=MAX_TABS):
        if num_samples is None:
            num_samples = colorizer.default_samples(mode)
        colorizer.check_sampling(num_samples, mode)
        self.colorizer = colorizer
        self.photos = {os.path.basename(path): path for path in photos}
        self.num_samples = num_samples
        self.seed = seed
        self.mode = mode
        self.max_tabs = max_tabs
        # Measured interactions: dicts with the tab, the kind, the counts and the times (ms).
        self.latencies = []
        # Times (ms) of the edit sessions prepared in the background after an open.
        self.session_setups = []
        self._tabs = collections.OrderedDict()
        self._tabs_lock = threading.Lock()
        # TensorFlow work is serialized: the machine's cores are shared by all tabs anyway.
        self._compute = threading.Lock()
        # Uploads are decoded one at a time (bounded memory), apart from the model's work.
        self._decoding = threading.Lock()
        self._assets = importlib.resources.files("tfgcrf.studio").joinpath("static")
        # The uploads' header check is compiled now, while the page loads (not at the first upload).
        # Not a daemon: the interpreter must not be torn down while it traces (a Ctrl+C right after
        # the start aborted the process: "terminate called ... FATAL: exception not rethrown").
        threading.Thread(target=_prepare_header_check, name="studio-header-check").start()
        self._routes = Map([
            Rule("/", endpoint="index", methods=["GET"]),
            Rule("/static/<name>", endpoint="static", methods=["GET"]),
            Rule("/api/config", endpoint="config", methods=["GET"]),
            Rule("/api/open", endpoint="open", methods=["POST"]),
            Rule("/api/edit", endpoint="edit", methods=["POST"]),
            Rule("/api/attention", endpoint="attention", methods=["GET"]),
            Rule("/api/result.png", endpoint="result", methods=["GET"]),
            Rule("/api/edit.json", endpoint="edit_json", methods=["GET"]),
        ])

    # ------------------------------------------------------------------------------ WSGI

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = MAX_UPLOAD_BYTES
        try:
            endpoint, values = self._routes.bind_to_environ(environ).match()
            response = getattr(self, "_" + endpoint)(request, **values)
        except StalePhoto as err:
            response = _error(409, str(err))
        except UserError as err:
            response = _error(400, str(err))
        except RequestEntityTooLarge:
            response = _error(413, upload_too_large())
        except HTTPException as err:
            if request.path.startswith("/api/"):
                response = _error(err.code, err.description)
            else:
                response = err
        except Exception as err:  # noqa: BLE001 - the app keeps running; the log has the traceback
            LOG.error("unexpected error on %s %s\n%s", request.method, request.path,
                      traceback.format_exc())
            message = " ".join(str(err).split()) or type(err).__name__
            response = _error(500, f"internal error ({type(err).__name__}): {message}")
        return response(environ, start_response)

    # ------------------------------------------------------------------------------ pages

    def _index(self, request):
        return self._static_file("index.html")

    def _static(self, request, name):
        return self._static_file(name)

    def _static_file(self, name):
        resource = self._assets.joinpath(name)
        if "/" in name or name.startswith(".") or not resource.is_file():
            raise NotFound()
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        return Response(resource.read_bytes(), content_type=kind,
                        headers={"Cache-Control": "no-cache"})

    def _config(self, request):
        return _json({
            "photos": sorted(self.photos),
            "samples": self.num_samples,
            "max_upload_mib": MAX_UPLOAD_BYTES >> 20,
        })

    # ------------------------------------------------------------------------------ photo

    def _open(self, request):
        from tfgcrf import imageio

        tab_id = _tab_id(request)
        started = time.perf_counter()
        name = request.args.get("name")
        if name is not None:
            if name not in self.photos:
                raise InputError(f"no photo named {name!r} in this studio's folder")
            source = self.photos[name]
        else:
            source = request.get_data(cache=False)
            if not source:
                raise InputError("the upload is empty: choose a photo file")
            name = unquote(request.headers.get("X-Filename", "")).replace("\\", "/")
            name = os.path.basename(name) or "upload"
        # Messages name the photo as the person knows it (not "<20 bytes>" or a server path).
        data = imageio.read_bytes(source)
        # A file its headers refuse (not an image, too many pixels) is refused here, at once:
        # not after waiting for other tabs' work or for the decoder's first tracing.
        imageio.check_data(data, name)
        # Nor does a file the decoder refuses (corrupt data under valid headers) wait for the model.
        with self._decoding:
            rgb = imageio.decode_data(data, name)
        with self._compute:
            samples, scores = self.colorizer.colorize(rgb, self.num_samples, seed=self.seed,
                                                      mode=self.mode, return_scores=True)
            lightness = imageio.luminance(rgb)
            tab = _Tab(name, rgb, samples, np.asarray(scores, np.float64), lightness)
            # The tab's photo changes before the model is free again: an edit of the previous
            # photo waiting for the model sees that it is stale (`_edit`) and is not solved.
            with self._tabs_lock:
                self._tabs[tab_id] = tab
                self._tabs.move_to_end(tab_id)
                while len(self._tabs) > self.max_tabs:
                    closed, _ = self._tabs.popitem(last=False)
                    LOG.info("closed tab %s (more than %d open photos)", closed, self.max_tabs)
        elapsed = (time.perf_counter() - started) * 1000.0
        LOG.info("open tab=%s photo=%s %dx%d samples=%d total=%.1fms", tab_id, name, tab.width,
                 tab.height, len(samples), elapsed)
        # The edit session (S, prior, factorization, a warm-up) is made while the person looks at
        # the samples, so that the first click is answered as fast as the next ones.
        threading.Thread(target=self._prepare_session, args=(tab_id, tab), daemon=True).start()
        return _json({
            "name": name,
            "width": tab.width,
            "height": tab.height,
            "gray": data_url(encode(gray_image(lightness), DISPLAY_SIDE)),
            "samples": [
                {"index": index, "weight": float(weight),
                 "thumb": data_url(encode(sample, THUMB_SIDE)),
                 "image": data_url(encode(sample, DISPLAY_SIDE))}
                for index, (sample, weight) in enumerate(zip(samples, scores))
            ],
            "ms": round(elapsed, 1),
            "photo": tab.token,
        })

    # ------------------------------------------------------------------------------ edits

    def _edit(self, request):
        tab_id = _tab_id(request)
        tab = self._tab(tab_id)
        _check_photo(request, tab)
        try:
            document = json.loads(request.get_data(cache=False) or b"null")
        except (ValueError, UnicodeDecodeError) as err:
            raise InputError(f"the edit is not valid JSON: {err}") from None
        state = edit_json.parse(document, tab.width, tab.height, with_ids=True)
        if state.from_sample is not None and state.from_sample >= len(tab.samples):
            raise InputError(f"there is no sample {state.from_sample} (0..{len(tab.samples) - 1})")
        _check_conflicts(state, tab.width, tab.height)
        started = time.perf_counter()
        with self._compute:
            # The wait: another tab's work, or this tab's session still being prepared after
            # its open; kept apart so that "solve" is what the edit itself costs.
            computing = time.perf_counter()
            # Another photo opened in the tab while this edit waited: its solve is skipped.
            with self._tabs_lock:
                if self._tabs.get(tab_id) is not tab:
                    raise StalePhoto(_STALE)
            updates = self._sync(tab, state)
        solved = time.perf_counter()
        image = data_url(encode(tab.image, DISPLAY_SIDE))
        done = time.perf_counter()
        record = {
            "tab": tab_id, "points": len(tab.points), "links": len(tab.links), "updates": updates,
            "wait_ms": round((computing - started) * 1000.0, 1),
            "solve_ms": round((solved - computing) * 1000.0, 1),
            "encode_ms": round((done - solved) * 1000.0, 1),
            "total_ms": round((done - started) * 1000.0, 1),
        }
        self.latencies.append(record)
        LOG.info("edit tab=%s points=%d links=%d updates=%d wait=%.1fms solve=%.1fms "
                 "encode=%.1fms total=%.1fms", tab_id, record["points"], record["links"], updates,
                 record["wait_ms"], record["solve_ms"], record["encode_ms"], record["total_ms"])
        return _json(dict(record, image=image))

    def _prepare_session(self, tab_id, tab):
        started = time.perf_counter()
        try:
            with self._compute:
                if tab.session is None and self._tabs.get(tab_id) is tab:
                    self._apply(tab, None, {}, {})
                    # Warm-up, as TF Serving's warm-up requests: one throw-away point traces the
                    # update functions and compiles the full-resolution finish for this size.
                    key = tab.session.add_point(tab.width // 2, tab.height // 2, (128, 128, 128))
                    tab.session.result()
                    tab.session.remove_point(key)
                    elapsed = (time.perf_counter() - started) * 1000.0
                    self.session_setups.append(round(elapsed, 1))
                    LOG.info("session tab=%s ready in %.1fms", tab_id, elapsed)
        except Exception:  # noqa: BLE001 - the first edit makes the session again and reports
            LOG.warning("preparing the edit session failed\n%s", traceback.format_exc())
            tab.session = None

    def _sync(self, tab, state):
        """Brings the tab's session to `state` with the fewest updates; returns their number.

        On a refused update (e.g. two points on one pixel with different colors) the session is
        brought back to its previous state and the error is raised.
        """
        previous = (tab.from_sample, dict(tab.points), dict(tab.links))
        try:
            return self._apply(tab, state.from_sample, state.points, state.links)
        except UserError:
            try:
                self._apply(tab, *previous)
            except Exception:  # noqa: BLE001 - start afresh at the next edit
                tab.session = None
            raise

    def _apply(self, tab, from_sample, points, links):
        updates = 0
        if tab.session is None or from_sample != tab.from_sample:
            tab.session = self.colorizer.session(tab.rgb, from_sample=from_sample, seed=self.seed,
                                                 num_samples=self.num_samples, mode=self.mode)
            tab.from_sample = from_sample
            tab.points, tab.links, tab.point_keys, tab.link_keys = {}, {}, {}, {}
            updates += 1
        session = tab.session
        # Removals first, so that a point moved onto a freed pixel is not refused.
        for key in [key for key in tab.links if links.get(key) != tab.links[key]]:
            session.unlink(tab.link_keys.pop(key))
            del tab.links[key]
            updates += 1
        for key in [key for key in tab.points if key not in points]:
            session.remove_point(tab.point_keys.pop(key))
            del tab.points[key]
            updates += 1
        for key, (xy, rgb) in points.items():
            if key not in tab.points:
                tab.point_keys[key] = session.add_point(xy[0], xy[1], rgb)
            elif tab.points[key] != (xy, rgb):
                session.move_point(tab.point_keys[key], xy[0], xy[1], rgb)
            else:
                continue
            tab.points[key] = (xy, rgb)
            updates += 1
        for key, ends in links.items():
            if key not in tab.links:
                tab.link_keys[key] = session.link(*ends)
                tab.links[key] = ends
                updates += 1
        if tab.points or tab.links:
            tab.image = session.result()
        else:
            tab.image = tab.start_image()
        return updates

    # ------------------------------------------------------------------------------ outputs

    def _attention(self, request):
        from tfgcrf import render

        tab = self._tab(_tab_id(request))
        try:
            point = (int(request.args["x"]), int(request.args["y"]))
        except (KeyError, ValueError):
            raise InputError("attention needs integer x and y (photo pixels)") from None
        started = time.perf_counter()
        with self._compute:
            attention = self.colorizer.explain(tab.rgb, point)
        overlay = render.attention_overlay(tab.lightness, attention, point)
        LOG.info("attention x=%d y=%d total=%.1fms", point[0], point[1],
                 (time.perf_counter() - started) * 1000.0)
        return Response(encode(overlay, DISPLAY_SIDE), content_type="image/jpeg")

    def _result(self, request):
        tab = self._tab(_tab_id(request))
        image = tab.start_image() if tab.image is None else tab.image
        return Response(encode(image, kind="PNG"), content_type="image/png",
                        headers=_attachment(_stem(tab.name) + "_edit.png"))

    def _edit_json(self, request):
        tab = self._tab(_tab_id(request))
        document = edit_json.document(
            [xy for xy, _ in tab.points.values()], [rgb for _, rgb in tab.points.values()],
            list(tab.links.values()), from_sample=tab.from_sample, seed=self.seed,
            num_samples=self.num_samples, mode=self.mode, image=tab.name,
            size=(tab.width, tab.height))
        return Response(json.dumps(document, indent=2) + "\n", content_type="application/json",
                        headers=_attachment(_stem(tab.name) + "_edit.json"))

    # ------------------------------------------------------------------------------ helpers

    def _tab(self, tab_id):
        with self._tabs_lock:
            tab = self._tabs.get(tab_id)
            if tab is None:
                raise InputError("this tab has no photo open on the server (the studio was "
                                 "restarted or closed it to free memory): open a photo")
            self._tabs.move_to_end(tab_id)
            return tab


_STALE = "another photo was opened in this tab: the edit for the one before was not applied"


def _check_photo(request, tab):
    """Refuses an edit naming (`?photo=N`, the open's answer) a photo other than the tab's."""
    photo = request.args.get("photo")
    if photo is not None and photo != str(tab.token):
        raise StalePhoto(_STALE)


def _check_conflicts(state, width, height):
    """Two points on one pixel with different colors, named by their places in the edit (the
    numbers of the page's list, 1-based), not by the edit session's internal ids."""
    from tfgcrf import hints
    from tfgcrf.colorizer import Colorizer

    if len(state.points) < 2:
        return
    places = [xy for xy, _ in state.points.values()]
    colors = [rgb for _, rgb in state.points.values()]
    hints.check_conflicts(np.array(places, np.float64), Colorizer._point_chroma(colors, len(colors)),
                          width, height)


def _tab_id(request):
    tab_id = request.args.get("tab", "")
    if not _TAB_ID.fullmatch(tab_id):
        raise InputError("missing or malformed tab id (reload the page)")
    return tab_id


def _stem(name):
    return os.path.splitext(os.path.basename(name))[0] or "photo"


def _attachment(filename):
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return {"Content-Disposition": f'attachment; filename="{safe}"'}


def upload_too_large():
    return f"upload too large: the limit is {MAX_UPLOAD_BYTES >> 20} MiB"


def _json(value, status=200):
    return Response(json.dumps(value), status=status, content_type="application/json")


def _error(status, message):
    return _json({"error": " ".join(str(message).split())}, status)


class StudioServer:
    """`app` on waitress: `run()` in the foreground, or `start()` in a thread and `stop()`.

    `url` is known as soon as the server exists (port 0 picks a free port). The requests waitress
    refuses itself (a body far above MAX_UPLOAD_BYTES, a malformed request) are answered as the
    app's errors, `{"error": "one line"}`, not in waitress's plain text.
    """

    def __init__(self, app, host="127.0.0.1", port=0, threads=4):
        import waitress.server

        from tfgcrf.waitress_errors import answer_in_json

        self._map = {}
        self._server = waitress.server.create_server(
            app, map=self._map, host=host, port=port, threads=threads,
            max_request_body_size=MAX_UPLOAD_BYTES + _SERVER_BODY_MARGIN, ident="tfgcrf-studio",
            clear_untrusted_proxy_headers=True)
        answer_in_json(self._map, upload_too_large())
        self.port = int(self._server.effective_port)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        self._thread = None

    def run(self):
        self._server.run()

    def start(self):
        self._thread = threading.Thread(target=self.run, name="studio-server", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        from tfgcrf import waitress_errors

        logging.getLogger("waitress").setLevel(logging.CRITICAL)
        waitress_errors.stop(self._map, self._server.task_dispatcher, self._thread)


def serve(app, host="127.0.0.1", port=0, threads=4, ready=None):
    """Runs `app` on waitress until interrupted; calls `ready(url)` once it listens."""
    server = StudioServer(app, host, port, threads)
    if ready is not None:
        ready(server.url)
    try:
        server.run()
    finally:
        server.stop()
