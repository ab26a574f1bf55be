"""`tfgcrf demo`: colorize and edit the bundled example photo (what `make demo` runs)."""

import importlib.resources
import os

from tfgcrf.commands.colorize import add_model_argument, colorize_file, load_colorizer, make_folder
from tfgcrf.commands.edit import edit_file, read_photo

HELP = "colorize (8 samples) and edit the bundled example photo, writing into a folder"

EXAMPLE = "pagoda.jpg"
# The edit: an orange evening sky and dark green trees (pixel positions in the 512x342 photo).
EDIT_POINTS = [(400, 50), (420, 300)]
EDIT_COLORS = [(250, 150, 60), (40, 110, 40)]
NUM_SAMPLES = 8


def add_arguments(parser):
    parser.add_argument("--out", default="out", metavar="DIR", help="output folder (default: out)")
    add_model_argument(parser)


def run(args):
    make_folder(args.out)
    colorizer = load_colorizer(args.model, args.dtype)
    examples = importlib.resources.files("tfgcrf.presets").joinpath("examples")
    with importlib.resources.as_file(examples.joinpath(EXAMPLE)) as photo:
        stem = os.path.splitext(EXAMPLE)[0]
        print(f"colorizing {photo} ({NUM_SAMPLES} samples) ...")
        # The most probable components; random draws if the model has fewer components.
        mode = "top" if NUM_SAMPLES <= colorizer.model.model_config.num_components else "draw"
        colorized = colorize_file(colorizer, photo, args.out, stem, NUM_SAMPLES, seed=0, mode=mode)
        print("editing it from two color points ...")
        edited = edit_file(colorizer, read_photo(photo), os.path.join(args.out, f"{stem}_edit.png"),
                           EDIT_POINTS, EDIT_COLORS, show_points=True, explain=True)
    print(f"\ncolorizations: {', '.join(colorized[:-1])}")
    print(f"contact sheet: {colorized[-1]}")
    print(f"edit:          {edited[0]}  (the points are marked)")
    print(f"attention:     {', '.join(edited[1:])}")
    return 0
