"""What `tfgcrf serve`'s signatures cost with Grappler's memory optimizer off (`without_memory_rewrites`).

    .venv/bin/python benchmarks/served_memory_optimizer.py --model-dir models/tfgcrf/1
        [--photo tests/data/fullres/sklearn_china.jpg] [--repeats 3]

Loads the exported version once with `tf.saved_model.load` (as `tfgcrf serve` does) and runs
every signature in this process two ways: the baseline, TensorFlow's default function-call config
(the memory optimizer on, as `tfgcrf serve` ran signatures before), and the config `tfgcrf serve`
uses now (`without_memory_rewrites`: the memory optimizer off). Each way's graph is instantiated
(Grappler) at its own first call (which way comes first alternates between signatures); the warm
calls then alternate between the two ways. Prints, per
signature, the first calls' and the median warm calls' seconds, the ratio now/baseline and
whether both ways gave the same output bytes.
"""

import argparse
import os
import statistics
import time

import tensorflow as tf

from tfgcrf.serving.repository import without_memory_rewrites

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO = os.path.join(ROOT, "tests", "data", "fullres", "sklearn_china.jpg")


def requests(photo):
    image_bytes = tf.constant([photo])
    seed = tf.constant([0], tf.int64)
    edit = dict(image_bytes=image_bytes, points=tf.constant([[[0.3, 0.3], [0.7, 0.6]]]),
                colors=tf.constant([[[220, 30, 30], [30, 60, 200]]], tf.uint8),
                num_points=tf.constant([2]), seed=seed, from_sample=tf.constant([-1]))
    return {
        "sample": dict(image_bytes=image_bytes, seed=seed),
        "sample_tensor": dict(image=tf.io.decode_jpeg(photo, channels=3)[tf.newaxis], seed=seed),
        "edit": edit,
        "edit_links": dict(edit, links=tf.constant([[[0.1, 0.1, 0.9, 0.8]]]),
                           num_links=tf.constant([1])),
    }


def timed(function, inputs):
    start = time.perf_counter()
    outputs = function(**inputs)
    seconds = time.perf_counter() - start
    return seconds, {name: value.numpy() for name, value in outputs.items()}


def same(first, second):
    return first.keys() == second.keys() and all(
        first[name].shape == second[name].shape and first[name].tolist() == second[name].tolist()
        for name in first)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True, help="an exported version folder")
    parser.add_argument("--photo", default=PHOTO)
    parser.add_argument("--repeats", type=int, default=3, help="warm calls per way and signature")
    args = parser.parse_args()
    with open(args.photo, "rb") as handle:
        photo = handle.read()
    loaded = tf.saved_model.load(args.model_dir)
    rows = []
    for index, (name, inputs) in enumerate(requests(photo).items()):
        if name not in loaded.signatures:
            continue
        ways = {"baseline": loaded.signatures[name],
                "now": without_memory_rewrites(loaded.signatures[name])}
        first, outputs, warm = {}, {}, {way: [] for way in ways}
        for way in list(ways) if index % 2 == 0 else list(reversed(ways)):
            first[way], outputs[way] = timed(ways[way], inputs)
        for repeat in range(args.repeats):
            order = list(ways) if repeat % 2 == 0 else list(reversed(ways))
            for way in order:
                seconds, answer = timed(ways[way], inputs)
                warm[way].append(seconds)
                assert same(answer, outputs[way]), f"{name} {way}: not deterministic"
        medians = {way: statistics.median(times) for way, times in warm.items()}
        rows.append((name, first["baseline"], first["now"], medians["baseline"], medians["now"],
                     same(outputs["baseline"], outputs["now"])))
        print(f"{name}: done", flush=True)
    print("| signature | first call baseline s | first call now s | warm baseline s | warm now s "
          "| warm ratio now/baseline | same bytes |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, first_base, first_now, warm_base, warm_now, equal in rows:
        print(f"| {name} | {first_base:.2f} | {first_now:.2f} | {warm_base:.3f} | {warm_now:.3f} "
              f"| {warm_now / warm_base:.2f}x | {'yes' if equal else 'NO'} |")


if __name__ == "__main__":
    main()
