"""`tfgcrf studio`: a local browser editor for interactive colorization (see tfgcrf/studio)."""

import logging
import sys

from tfgcrf.commands.colorize import add_model_argument, check_samples, load_colorizer

HELP = "interactive colorization editor in the browser (points, links, attention maps, undo)"


def add_arguments(parser):
    parser.add_argument("source", nargs="?", default=None, metavar="PHOTO_OR_FOLDER",
                        help="a photo to open, or a folder whose photos the page offers")
    add_model_argument(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=0,
                        help="port to listen on (default: 0, a free port)")
    parser.add_argument("--samples", type=int, default=None, metavar="N",
                        help="diverse samples shown per photo (default: 8, at most the model's "
                        "mixture components in --mode top)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of --mode draw")
    parser.add_argument("--mode", choices=("top", "draw"), default="top",
                        help="how the samples are drawn, as in `tfgcrf colorize` (default: top)")
    parser.add_argument("--max-tabs", type=int, default=4, metavar="N",
                        help="open photos kept in memory; the least recently used is closed "
                        "first (default: 4)")


def run(args):
    from tfgcrf.errors import InputError
    from tfgcrf.studio.app import StudioApp, list_photos, serve

    check_samples(args.samples)
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be in 0..65535, got {args.port}")
    if args.max_tabs < 1:
        raise InputError(f"--max-tabs must be at least 1, got {args.max_tabs}")
    photos = list_photos(args.source)
    colorizer = load_colorizer(args.model, args.dtype)
    samples = colorizer.sample_count(args.samples, args.mode, flags=("--samples", "--mode"))
    app = StudioApp(colorizer, photos, num_samples=samples, seed=args.seed, mode=args.mode,
                    max_tabs=args.max_tabs)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("studio: %(message)s"))
    logger = logging.getLogger("tfgcrf.studio")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def ready(url):
        print(f"tfgcrf studio: open {url} in a browser (Ctrl+C stops it)", flush=True)

    try:
        # Returns on Ctrl+C (waitress ends its loop on KeyboardInterrupt).
        serve(app, host=args.host, port=args.port, ready=ready)
    except OSError as err:
        raise InputError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from None
    print("tfgcrf studio: stopped", flush=True)
    return 0
