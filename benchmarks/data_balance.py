"""Share of the training crops per domain, per source and from white-border photos, with and
without the sampling balance of `tfgcrf.data.pipeline` (expected values: a photo's expected crops
per epoch are `crops_per_image` x its sampling weight).

    .venv/bin/python benchmarks/data_balance.py [--data /work/data/offline] [--split train]
        [--source-balance 0.5] [--white-weight 0.3]

Reads the collection's `manifest.csv` for the domain of each photo (faces / scenes / objects).
"""

import argparse
import collections
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from tfgcrf.config import DataConfig  # noqa: E402
from tfgcrf.data import folders, offline, pipeline  # noqa: E402
from tfgcrf.data.balance import Augmentation, source_factors  # noqa: E402
from tfgcrf.imageio import read_image  # noqa: E402


def shares(weights, keys):
    totals = collections.Counter()
    for weight, key in zip(weights, keys):
        totals[key] += weight
    whole = sum(totals.values())
    return {key: 100.0 * value / whole for key, value in totals.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=folders.offline_dir())
    parser.add_argument("--split", default="train")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--source-balance", type=float, default=DataConfig.source_balance)
    parser.add_argument("--white-weight", type=float, default=DataConfig.white_weight)
    args = parser.parse_args()
    domains = {row["file"]: row["domain"] for row in offline.read_manifest(os.path.join(args.data, offline.MANIFEST))}
    paths = folders.split_images(args.data, args.split)
    relative = [folders.relative_key(path, args.data) for path in paths]
    sources = [path.split("/", 1)[0] for path in relative]
    settings = {
        "uniform": Augmentation.checked((0.25, 1.0), (1.0, 1.0), True, 0.0, 1.0),
        "balanced": Augmentation.checked((0.25, 1.0), (1.0, 1.0), True, args.source_balance, args.white_weight),
    }
    weights, white = {}, []
    for name, augment in settings.items():
        factors = source_factors(relative, augment.source_balance)
        weights[name] = []
        for index, (path, factor) in enumerate(zip(paths, factors)):
            image, weight = pipeline.prepare_photo(tf.constant(read_image(path)), factor, args.image_size, augment)
            weights[name].append(float(weight))
            if name == "uniform":
                white.append("white border" if bool(pipeline.white_border(image)) else "other")
    print(f"{len(paths)} {args.split} photos of {args.data}; balanced: source_balance {args.source_balance}, "
          f"white_weight {args.white_weight}\n")
    print(f"{'share of crops (%)':<34} {'uniform':>8} {'balanced':>9}")
    rows = [("domain " + d, [domains[r] for r in relative], d) for d in ("faces", "scenes", "objects")]
    rows += [("white-border photos", white, "white border")]
    biggest = collections.Counter(sources).most_common(4)
    rows += [(f"source {s} ({n} photos)", sources, s) for s, n in biggest]
    for label, keys, key in rows:
        uniform, balanced = shares(weights["uniform"], keys)[key], shares(weights["balanced"], keys)[key]
        print(f"{label:<34} {uniform:8.1f} {balanced:9.1f}")
    print(f"{'crops per epoch / crops_per_image':<34} {sum(weights['uniform']):8.0f} {sum(weights['balanced']):9.0f}")


if __name__ == "__main__":
    main()
