"""An edit (color points and "same color" links) as a JSON document: what `tfgcrf studio` saves
and `tfgcrf edit --points-json FILE` replays.

    {
      "format": "tfgcrf-edit", "version": 1,
      "image": "photo.jpg", "width": 1024, "height": 768,
      "from_sample": null, "seed": 0, "samples": 8, "mode": "top",
      "points": [{"x": 120, "y": 40, "color": "#ff8c00"}],
      "links": [{"from": [100, 200], "to": [600, 210]}]
    }

- `points`: `x`, `y` are photo pixels (column, row; integers); `color` is `"#rrggbb"` or
  `[r, g, b]` (0..255). `links`: two places in photo pixels that should take the same color.
- `from_sample`: null to start from the points alone, k to edit on top of sample k of
  `tfgcrf colorize` with `seed`, `samples` and `mode` (as `tfgcrf edit --from-sample`).
- `image`, `width`, `height` say which photo the edit was made on; when `width` and `height` are
  given, replaying on a photo of another size is refused (the points would land elsewhere).
- Only `points` or `links` is required; `format` and `version` are checked when present.
  Unknown keys are refused (a misspelt key must not be silently ignored).

The studio's page sends the same document with an `id` (a string) per point and link.
"""

import collections
import json
import re

from tfgcrf.errors import InputError

FORMAT = "tfgcrf-edit"
VERSION = 1

_HEX_COLOR = re.compile(r"#([0-9a-fA-F]{6})")
_KEYS = {"format", "version", "image", "width", "height", "from_sample", "seed", "samples", "mode",
         "points", "links"}

EditDocument = collections.namedtuple(
    "EditDocument", ["points", "links", "from_sample", "seed", "num_samples", "mode", "size"])
EditDocument.__doc__ = """A parsed edit.

`points`: {id: ((x, y), (r, g, b))} in document order (ids are "0", "1", ... unless the document
gives them); `links`: {id: ((x1, y1), (x2, y2))}; `from_sample`: None or int; `seed`: int or None;
`num_samples`: int or None; `mode`: "top", "draw" or None; `size`: (width, height) or None.
"""


def color_hex(rgb):
    """`(r, g, b)` -> `"#rrggbb"`."""
    return "#" + "".join(f"{int(channel):02x}" for channel in rgb)


def parse_color(value, where="color"):
    """`"#rrggbb"` or `[r, g, b]` (integers 0..255) -> `(r, g, b)`; InputError otherwise."""
    if isinstance(value, str):
        match = _HEX_COLOR.fullmatch(value.strip())
        if match:
            number = int(match.group(1), 16)
            return (number >> 16, (number >> 8) & 255, number & 255)
    elif isinstance(value, (list, tuple)) and len(value) == 3 and all(_is_int(c) for c in value):
        if all(0 <= c <= 255 for c in value):
            return tuple(int(c) for c in value)
    raise InputError(f"{where}: {value!r} is not a color (#rrggbb or [r, g, b] with 0..255)")


def document(points, colors, links=(), from_sample=None, seed=0, num_samples=None, mode="top",
             image=None, size=None):
    """The JSON-ready dict of an edit.

    Args:
      points: `(x, y)` pixels; colors: one `(r, g, b)` per point; links: `((x1, y1), (x2, y2))`.
      from_sample, seed, num_samples, mode: the sample the edit starts from (as `Colorizer.edit`).
      image: the photo's file name; size: its `(width, height)`.
    """
    value = {"format": FORMAT, "version": VERSION}
    if image is not None:
        value["image"] = image
    if size is not None:
        value["width"], value["height"] = int(size[0]), int(size[1])
    value.update({"from_sample": from_sample, "seed": seed, "samples": num_samples, "mode": mode})
    value["points"] = [{"x": int(x), "y": int(y), "color": color_hex(rgb)}
                       for (x, y), rgb in zip(points, colors)]
    value["links"] = [{"from": [int(a[0]), int(a[1])], "to": [int(b[0]), int(b[1])]}
                      for a, b in links]
    return value


def parse(value, width=None, height=None, with_ids=False):
    """Validates an edit document (a parsed JSON value) -> `EditDocument`.

    Args:
      value: the document.
      width, height: the photo's size: positions outside it, or a document made on a photo of
        another size, are refused.
      with_ids: every point and link must carry a unique string `id` (the studio's page).

    Raises:
      InputError: one line naming the first problem.
    """
    if not isinstance(value, dict):
        raise InputError("an edit must be a JSON object with \"points\" and/or \"links\"")
    unknown = sorted(set(value) - _KEYS)
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r} in the edit (known: {', '.join(sorted(_KEYS))})")
    if value.get("format", FORMAT) != FORMAT:
        raise InputError(f"not a tfgcrf edit: format is {value['format']!r}, expected {FORMAT!r}")
    if value.get("version", VERSION) != VERSION:
        raise InputError(f"unsupported edit version {value['version']!r} (this tfgcrf reads {VERSION})")
    size = None
    if value.get("width") is not None or value.get("height") is not None:
        size = (_int(value.get("width"), "width", 1), _int(value.get("height"), "height", 1))
        if width is not None and size != (width, height):
            raise InputError(f"the edit was made on a {size[0]}x{size[1]} photo, this one is "
                             f"{width}x{height}")
    if width is None and size is not None:
        width, height = size
    from_sample = value.get("from_sample")
    if from_sample is not None:
        from_sample = _int(from_sample, "from_sample", 0)
    seed = value.get("seed")
    seed = None if seed is None else _int(seed, "seed", None)
    num_samples = value.get("samples")
    num_samples = None if num_samples is None else _int(num_samples, "samples", 1)
    mode = value.get("mode")
    if mode not in (None, "top", "draw"):
        raise InputError(f"mode must be \"top\" or \"draw\", got {mode!r}")

    points, links = {}, {}
    for index, entry in enumerate(_list(value, "points")):
        where = f"point {index + 1}"
        entry = _object(entry, where, {"x", "y", "color"}, with_ids)
        xy = (_int(entry.get("x"), f"{where}: x", 0), _int(entry.get("y"), f"{where}: y", 0))
        _inside(xy, width, height, where)
        rgb = parse_color(entry.get("color"), f"{where}: color")
        _put(points, entry.get("id", str(index)), (xy, rgb), where)
    for index, entry in enumerate(_list(value, "links")):
        where = f"link {index + 1}"
        entry = _object(entry, where, {"from", "to"}, with_ids)
        ends = []
        for end in ("from", "to"):
            place = entry.get(end)
            if not (isinstance(place, (list, tuple)) and len(place) == 2):
                raise InputError(f"{where}: {end!r} must be [x, y] (photo pixels), got {place!r}")
            xy = (_int(place[0], f"{where}: {end} x", 0), _int(place[1], f"{where}: {end} y", 0))
            _inside(xy, width, height, f"{where} ({end})")
            ends.append(xy)
        if ends[0] == ends[1]:
            raise InputError(f"{where} goes from {ends[0]} to itself: a link needs two places")
        _put(links, entry.get("id", str(index)), tuple(ends), where)
    return EditDocument(points, links, from_sample, seed, num_samples, mode, size)


def load(path):
    """Reads and parses an edit file (`parse` without a photo size)."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except FileNotFoundError:
        raise InputError(f"no such edit file: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read edit file {path}: {err}") from None
    except ValueError as err:
        raise InputError(f"edit file {path} is not valid JSON: {err}") from None
    return parse(value)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value, where, minimum):
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value):
        raise InputError(f"{where} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InputError(f"{where} must be at least {minimum}, got {value}")
    return value


def _list(value, key):
    entries = value.get(key, [])
    if not isinstance(entries, list):
        raise InputError(f"{key!r} must be a list, got {type(entries).__name__}")
    return entries


def _object(entry, where, keys, with_ids):
    if not isinstance(entry, dict):
        raise InputError(f"{where} must be an object with {', '.join(sorted(keys))}, got {entry!r}")
    allowed = keys | {"id"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    if with_ids and not isinstance(entry.get("id"), str):
        raise InputError(f"{where} needs a string \"id\"")
    return entry


def _inside(xy, width, height, where):
    if width is not None and not (xy[0] < width and xy[1] < height):
        raise InputError(f"{where} ({xy[0]}, {xy[1]}) is outside the {width}x{height} photo")


def _put(table, key, item, where):
    if key in table:
        raise InputError(f"{where}: duplicate id {key!r}")
    table[key] = item
