"""`tfgcrf edit`: colorize a photo from a few color points, propagated by the learned structure."""

import os

from tfgcrf import edit_json
from tfgcrf.commands.colorize import add_model_argument, check_samples, load_colorizer, make_folder
from tfgcrf.errors import InputError

HELP = "colorize a photo from a few user color points (optionally on top of a sample)"

_POINT_FORMAT = "X,Y,#rrggbb or X,Y,R,G,B (X, Y in input pixels; R, G, B in 0..255)"


def add_arguments(parser):
    parser.add_argument("input", metavar="INPUT", help="the photo (gray or color)")
    # Parsed by argparse (`type=`), before TensorFlow is imported: a typo is refused at once.
    parser.add_argument("--point", action="append", default=[], metavar="X,Y,COLOR", type=parse_point,
                        help=f"a color point: {_POINT_FORMAT}; repeat for several points")
    parser.add_argument("--link", action="append", default=[], metavar="X1,Y1,X2,Y2", type=parse_link,
                        help="the places (X1, Y1) and (X2, Y2) should take the same color, whichever "
                        "it is (input pixels); repeat for several links")
    parser.add_argument("--points-json", default=None, metavar="FILE",
                        help="points and links from a JSON edit file (what `tfgcrf studio` "
                        "downloads; README: \"The edit file\"); its from_sample, seed, samples and "
                        "mode apply unless given here; --point/--link add to it")
    parser.add_argument("--from-sample", type=int, default=None, metavar="K",
                        help="apply the points on top of sample K of `tfgcrf colorize` (0-based, "
                        "as in <stem>_s<K>.png) instead of colorizing from the points alone")
    parser.add_argument("--seed", type=int, default=None, metavar="S",
                        help="the seed sample K was colorized with (matters for --mode draw; "
                        "default: 0)")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="the --samples sample K was colorized with (matters for --mode draw; "
                        "default: 8)")
    parser.add_argument("--mode", choices=("top", "draw"), default=None,
                        help="the --mode sample K was colorized with (default: top)")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="output image (default: out/<stem>_edit.png)")
    add_model_argument(parser)
    parser.add_argument("--show-points", action="store_true",
                        help="draw the points as markers of their color on the output")
    parser.add_argument("--explain", action="store_true",
                        help="also write each point's attention map (its row of the similarity S) "
                        "as <out stem>_explain<i>.png")


def _channel(text, spec):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 255:
        raise InputError(f"malformed color in --point {spec!r}: {text!r} is not an integer in 0..255")
    return value


def parse_point(spec):
    """`X,Y,#rrggbb` or `X,Y,R,G,B` -> `((x, y), (r, g, b))`."""
    parts = [part.strip() for part in spec.split(",")]
    if len(parts) not in (3, 5):
        raise InputError(f"malformed --point {spec!r}: expected {_POINT_FORMAT}")
    try:
        x, y = int(parts[0]), int(parts[1])
    except ValueError:
        raise InputError(f"malformed --point {spec!r}: X and Y must be integers (pixels)") from None
    if len(parts) == 5:
        return (x, y), tuple(_channel(part, spec) for part in parts[2:])
    if not parts[2].startswith("#"):
        raise InputError(f"malformed color in --point {spec!r}: {parts[2]!r} is not #rrggbb")
    try:
        return (x, y), edit_json.parse_color(parts[2])
    except InputError:
        raise InputError(f"malformed color in --point {spec!r}: {parts[2]!r} is not #rrggbb") from None


def parse_link(spec):
    """`X1,Y1,X2,Y2` -> `((x1, y1), (x2, y2))`."""
    parts = [part.strip() for part in spec.split(",")]
    try:
        if len(parts) != 4:
            raise ValueError
        x1, y1, x2, y2 = (int(part) for part in parts)
    except ValueError:
        raise InputError(f"malformed --link {spec!r}: expected X1,Y1,X2,Y2 (integers, input "
                         "pixels)") from None
    return (x1, y1), (x2, y2)


def read_photo(path, size=None):
    """The photo of an edit, uint8 `[H, W, 3]`; `size`: the (width, height) the points were given
    for (an edit file's), checked on the photo."""
    from tfgcrf import imageio

    rgb = imageio.read_image(path)
    if size is not None and tuple(size) != (rgb.shape[1], rgb.shape[0]):
        raise InputError(f"the edit file was made on a {size[0]}x{size[1]} photo, {path} is "
                         f"{rgb.shape[1]}x{rgb.shape[0]}")
    return rgb


def edit_file(colorizer, rgb, out, points, colors, from_sample=None, seed=0, num_samples=None,
              mode="top", show_points=False, explain=False, links=None):
    """Edits one photo, uint8 `[H, W, 3]` (`read_photo`'s), and writes the result (and attention
    maps); returns the written paths."""
    from tfgcrf import imageio, render

    edited = colorizer.edit(rgb, points, colors, from_sample=from_sample, seed=seed,
                            num_samples=num_samples, mode=mode, links=links)
    if show_points:
        edited = render.draw_points(edited, points, colors)
    parent = os.path.dirname(out)
    if parent:
        make_folder(parent)
    imageio.write_image(out, edited)
    written = [out]
    if explain:
        lightness = imageio.luminance(rgb)
        stem, _ = os.path.splitext(out)
        for index, point in enumerate(points):
            written.append(f"{stem}_explain{index}.png")
            overlay = render.attention_overlay(lightness, colorizer.explain(rgb, point), point)
            imageio.write_image(written[-1], overlay)
    return written


def run(args):
    parsed, links = list(args.point), list(args.link)  # parsed by argparse (`type=`)
    size = None
    if args.points_json is not None:
        document = edit_json.load(args.points_json)
        parsed = list(document.points.values()) + parsed
        links = list(document.links.values()) + links
        size = document.size
        for name, value in (("from_sample", document.from_sample), ("seed", document.seed),
                            ("samples", document.num_samples), ("mode", document.mode)):
            if getattr(args, name) is None:
                setattr(args, name, value)
    args.seed = 0 if args.seed is None else args.seed
    args.mode = args.mode or "top"
    from tfgcrf.edit_session import EMPTY_EDIT, MAX_POINTS, has_hints

    if not has_hints(len(parsed), len(links), -1 if args.from_sample is None else 0):
        raise InputError(EMPTY_EDIT + ": give --point X,Y,COLOR, --link X1,Y1,X2,Y2 or "
                         "--from-sample K (or a --points-json file holding some)")

    if len(parsed) > MAX_POINTS or len(links) > MAX_POINTS:
        raise InputError(f"an edit holds at most {MAX_POINTS} points and {MAX_POINTS} links")
    points = [point for point, _ in parsed]
    colors = [rgb for _, rgb in parsed]
    if args.from_sample is not None and args.from_sample < 0:
        raise InputError(f"--from-sample must be a sample index >= 0, got {args.from_sample}")
    check_samples(args.samples)
    out = args.out
    if out is None:
        out = os.path.join("out", os.path.splitext(os.path.basename(args.input))[0] + "_edit.png")
    # The photo and the points and links on it are checked before the model is loaded (which
    # takes seconds to tens of seconds): a mistyped coordinate is refused at once.
    from tfgcrf.colorizer import check_edit
    from tfgcrf.imageio import check_output_path

    check_output_path(out)
    rgb = read_photo(args.input, size)
    check_edit(rgb.shape[1], rgb.shape[0], points, colors, links, args.from_sample)
    colorizer = load_colorizer(args.model, args.dtype)
    written = edit_file(colorizer, rgb, out, points, colors, args.from_sample, args.seed,
                        args.samples, args.mode, args.show_points, args.explain, links)
    print("wrote " + ", ".join(written))
    return 0
