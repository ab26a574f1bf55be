"""Interactive edits of one photo: `Colorizer.session(image)` (points and links, incrementally).

The session keeps everything that does not depend on the points: the photo's lightness and grid
input, the similarity S, the local smoothness term, the prior (the model's own most probable
colorization, or a chosen sample), the Cholesky factors of the prior system
(`tfgcrf.layers.gcrf_edit_session.EditSession`) and the guide statistics of the full-resolution
upsampling (`tfgcrf.fullres.guide_statistics`). Adding, moving or removing a point or a link is
then a Woodbury update on the grid (one new column per new grid pixel or link), the propagation of
the points at the photo's resolution (`tfgcrf.hints.Propagation`, factored once per session, one
new column per new point) and the full-resolution finish of `tfgcrf.hints.finish_edit` (guided
upsampling + the propagation's correction, every point's own color at its pixel, carried across
links (the propagation solved again with the carried colors, `correction`), recombination with the photo's lightness; XLA-compiled for photos of 250k pixels and more).
The answer is the same as `GCRFColorizer.edit` with the same points and links on the grid
(tested), and as the stateless finish of that answer at full resolution within one uint8 level
(tested).

    session = colorizer.session("photo.jpg")
    sky = session.add_point(400, 50, (250, 150, 60))
    session.add_point(420, 300, (40, 110, 40))
    session.move_point(sky, 380, 60)
    session.link((100, 200), (600, 210))
    image = session.result()          # uint8 [H, W, 3]
"""

import numpy as np
import tensorflow as tf

from tfgcrf import fullres, hints
from tfgcrf.errors import InputError
from tfgcrf.layers import edit_terms
from tfgcrf.models.points import grid_index, mean_by_cell

# `edit_terms.link_vectors` traced (eagerly its small ops cost ~100 ms per new link under load).
_link_vectors = tf.function(edit_terms.link_vectors, autograph=False, reduce_retracing=True)

# Most points (and links) an edit may hold: the exported `edit` signature's limit, checked by
# the API and the CLI too, so every entry point refuses the same requests.
MAX_POINTS = 256

# The one rule for an edit with nothing to edit with (its answer would be gray), applied by
# `Colorizer.edit`, the CLI and the exported `edit` / `edit_links` signatures: an edit needs a
# point, a link or a sample to start from; a sample alone is valid (it answers that sample).
EMPTY_EDIT = ("an edit needs at least one color point, one link or a sample to start from "
              "(from_sample >= 0)")


def has_hints(num_points, num_links, from_sample):
    """False for an empty edit (`EMPTY_EDIT`): no point, no link and no sample.

    Works on Python numbers and on TensorFlow scalars alike (the exported signatures' check).

    Args:
      num_points, num_links: the counts of points and links (ints or int32 scalars).
      from_sample: the sample the edit starts from: -1 (or `None`, the Python API's) for none.

    Returns:
      bool (or a bool scalar tensor): True when the edit may be answered.
    """
    if from_sample is None:
        from_sample = -1
    return (num_points > 0) | (num_links > 0) | (from_sample >= 0)


class EditSession:
    """Points and "same color" links on one photo, answered incrementally.

    Made by `Colorizer.session(image, from_sample=None, ...)`; see the module docstring.

    Args:
      colorizer: the `tfgcrf.Colorizer` (its full-resolution finish and color checks).
      shape: the photo's `(height, width)`.
      lightness: `[H, W]` L* of the photo; l_small `[1, h, w, 1]` its grid input.
      grid: the grid `tfgcrf.layers.gcrf_edit_session.EditSession` of the photo
        (`GCRFColorizer.edit_session`, with the prior of the photo's sample or of the model).
      interactive: many results expected: photos of 250k pixels and more are finished by XLA
        kernels (compiled at the first result, ~1.3 s of CPU, then ~4x faster); False for a
        single result (`Colorizer.edit`), which the plain graph gives sooner.
    """

    def __init__(self, colorizer, shape, lightness, l_small, grid, interactive=True, propagate=True):
        self._colorizer = colorizer
        self.height, self.width = (int(v) for v in shape)
        self._grid_size = colorizer.grid_size
        self._lightness, self._l_small = lightness, l_small
        self._grid = grid
        self._points = {}  # id -> ((x, y), (r, g, b), chroma [2])
        self._links = {}  # id -> ((x1, y1), (x2, y2))
        self._link_cache = {}  # id -> its 9 link vectors (numpy [P])
        self._next_id = 0
        self._propagate = propagate  # False: no full-resolution propagation
        self._jit = interactive and self.height * self.width >= 250_000
        # The guided upsampling's photo-only part (`fullres.guide_statistics`), once per photo.
        self._guide = fullres.guide_statistics(lightness, self._grid_size, self._grid_size)
        self._image = None
        self._propagation = None  # hints.Propagation of the photo
        self._id = colorizer._register(self)  # how `Colorizer._finish_edit` finds `correction`

    # ------------------------------------------------------------------------------ edits

    @property
    def points(self):
        """{id: ((x, y), (r, g, b))} of the current points."""
        return {key: (xy, rgb) for key, (xy, rgb, _) in self._points.items()}

    @property
    def links(self):
        """{id: ((x1, y1), (x2, y2))} of the current links."""
        return dict(self._links)

    def add_point(self, x, y, color):
        """Adds a point of `color` (r, g, b in 0..255) at pixel (x, y); returns its id."""
        key = self._next_id  # taken only once the point is accepted: a refused call changes nothing
        self._set_point(key, (x, y), color)
        self._next_id += 1
        return key

    def move_point(self, key, x, y, color=None):
        """Moves point `key` to (x, y) (and recolors it if `color` is given)."""
        self._check_key(key, self._points, "point")
        self._set_point(key, (x, y), self._points[key][1] if color is None else color)

    def remove_point(self, key):
        """Removes point `key`."""
        self._check_key(key, self._points, "point")
        del self._points[key]
        self._image = None

    def link(self, first, second):
        """Asks the places `first` = (x1, y1) and `second` = (x2, y2) for the same color; returns
        the link's id."""
        self._check_count(len(self._links), "links")
        hints.check_links([(first, second)], self.width, self.height)
        key = self._new_id()
        self._links[key] = (tuple(first), tuple(second))
        self._image = None
        return key

    def unlink(self, key):
        """Removes link `key`."""
        self._check_key(key, self._links, "link")
        del self._links[key]
        self._link_cache.pop(key, None)
        for offset in range(9):
            self._grid.forget_link((key, offset))
        self._image = None

    # ------------------------------------------------------------------------------ answers

    def grid_result(self):
        """The G-CRF answer on the model grid, `[1, h, w, 2]` (model units)."""
        cells, colors = self._grid_points()
        links = self._link_vectors()
        x = self._grid.solve(cells, colors, links=links)
        return tf.reshape(x, [1, self._grid_size, self._grid_size, 2])

    def result(self):
        """The edited photo, uint8 `[H, W, 3]` at its own resolution and lightness."""
        if self._image is None:
            entries = list(self._points.values())
            points = np.array([xy for xy, _, _ in entries], np.int32).reshape(-1, 2)
            chroma = np.array([ab for _, _, ab in entries], np.float32).reshape(-1, 2)
            ends = np.array(list(self._links.values()), np.float64).reshape(-1, 2)
            links = hints.pixels_of(ends, self.width, self.height).reshape(-1, 2, 2)
            grid = self.grid_result()
            correction = self.correction(grid, points, chroma)
            self._image = self._colorizer._finish_edit[self._jit](
                grid, self._lightness, points, chroma, self._guide, links, correction,
                tf.constant(self._id, tf.int64)).numpy()
        return self._image

    def correction(self, grid, points, chroma):
        """The full-resolution propagation's correction of the grid answer `grid` `[1, h, w, 2]`
        for points `[M, 2]` (pixels) of chroma `[M, 2]`, float32 numpy at the propagation's
        working resolution (`hints.Propagation.correction(..., at_photo=False)`, factored at the
        first answer and kept for the photo; `hints.finish_edit` resizes it to the photo, inside
        its XLA kernel for large photos: no full-resolution copy); zeros when the session does
        not propagate. `hints.finish_edit` asks for it again with the colors that links carry."""
        if not self._propagate:
            return np.zeros((self.height, self.width, 2), np.float32)
        if self._propagation is None:
            self._propagation = hints.Propagation(np.asarray(self._lightness))
        return self._propagation.correction(grid, np.asarray(points), np.asarray(chroma),
                                            at_photo=False)

    # ------------------------------------------------------------------------------ helpers

    def _new_id(self):
        self._next_id += 1
        return self._next_id - 1

    @staticmethod
    def _check_key(key, table, what):
        if key not in table:
            raise InputError(f"there is no {what} {key!r} in this session (ids: {sorted(table)})")

    @staticmethod
    def _check_count(count, what):
        if count >= MAX_POINTS:
            raise InputError(f"an edit holds at most {MAX_POINTS} {what}")

    def _set_point(self, key, xy, color):
        if key not in self._points:
            self._check_count(len(self._points), "points")
        xy = tuple(int(v) for v in hints.pixels_of(
            hints.check_points([xy], self.width, self.height), self.width, self.height)[0])
        chroma = self._colorizer._point_chroma([color], 1)[0]
        others = [(k, p, ab) for k, (p, _, ab) in self._points.items() if k != key]
        hints.check_conflicts(np.array([p for _, p, _ in others] + [xy]).reshape(-1, 2),
                              np.array([ab for _, _, ab in others] + [chroma]).reshape(-1, 2),
                              self.width, self.height, names=[k for k, _, _ in others] + [key])
        self._points[key] = (xy, tuple(int(c) for c in color), chroma)
        self._image = None

    def _relative(self, xy):
        return (np.asarray(xy, np.float64) + 0.5) / [self.width, self.height]

    def _grid_points(self):
        """Grid pixels and their mean point colors, as `points_to_grid` splats them."""
        entries = list(self._points.values())
        relative = np.array([self._relative(xy) for xy, _, _ in entries]).reshape(-1, 2)
        chroma = np.array([ab for _, _, ab in entries], np.float32).reshape(-1, 2)
        return mean_by_cell(grid_index(relative, self._grid_size).numpy(), chroma)

    def _link_vectors(self):
        """{(link id, offset): u [P] numpy} of the current links; each link's 9 vectors are made
        once (`edit_terms.link_vectors`) and kept until it is removed."""
        new = [key for key in self._links if key not in self._link_cache]
        if new:
            ends = np.array([[self._relative(a), self._relative(b)]
                             for a, b in (self._links[key] for key in new)])
            pairs = grid_index(ends, self._grid_size)[None]  # [1, J, 2]
            vectors = _link_vectors(self._grid.affinity, pairs)[0].numpy()  # [P, 9 J]
            for i, key in enumerate(new):
                self._link_cache[key] = [vectors[:, 9 * i + o] for o in range(9)]
        return {(key, o): self._link_cache[key][o] for key in self._links for o in range(9)}
