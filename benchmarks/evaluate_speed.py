"""Times `tfgcrf evaluate` on two (or more) code trees and prints their numbers side by side.

    .venv/bin/python benchmarks/evaluate_speed.py --tree before=/tmp/base155 --tree after=. \
        -- --model /work/old_preset/model.keras --data tests/data/photos --split train \
        --limit 12 --samples 8

Each tree is a checkout of this repository (e.g. `git worktree add /tmp/base155 155edb5`); its
`tfgcrf` package is put first on PYTHONPATH and `tfgcrf evaluate` runs in a child process with the
arguments after `--` (relative paths are resolved from the current folder, the JSON goes to a
temporary file). The runs alternate between the trees (`--repeat` rounds), so that a changing
machine load falls on both. Printed: wall and CPU seconds (user + system, all threads) per image
of every run, their medians and the ratio to the first tree, then every metric of every method
the trees share, side by side, with the largest absolute difference.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

_MAIN = "import sys; from tfgcrf.cli import main; sys.exit(main())"  # trees without __main__
_PATH_OPTIONS = ("--model", "--data", "--report")


def _absolute(arguments):
    """Makes the values of path options absolute (the child runs in the tree's folder)."""
    out = list(arguments)
    for i, value in enumerate(out[:-1]):
        if value in _PATH_OPTIONS:
            name, separator, path = out[i + 1].partition("=")
            if separator and not os.path.exists(out[i + 1]):
                candidate = os.path.abspath(path)
                out[i + 1] = f"{name}={candidate}" if os.path.exists(candidate) else out[i + 1]
            elif os.path.exists(out[i + 1]):
                out[i + 1] = os.path.abspath(out[i + 1])
    return out


def _run(python, tree, arguments):
    """One `tfgcrf evaluate` in `tree`: `(results dict, wall seconds, CPU seconds)`."""
    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "results.json")
        environment = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            [python, "-c", _MAIN, "evaluate", *arguments, "--json", output],
            cwd=tree, env=environment, check=True, stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        with open(output) as handle:
            return json.load(handle), wall, cpu


def _flatten(methods):
    """`{"gcrf": {"eob": x, "psnr_points": {"1": y}}}` -> `{"gcrf eob": x, "gcrf psnr 1": y}`."""
    flat = {}
    for method, entry in methods.items():
        for key, value in entry.items():
            if isinstance(value, dict):
                for count, number in value.items():
                    flat[f"{method} psnr |H|={count}"] = number
            else:
                flat[f"{method} {key}"] = value
    return flat


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=PATH",
                        help="a checkout to time (repeat; the first is the reference)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with the dependencies (default: this one)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the trees")
    parser.add_argument("arguments", nargs=argparse.REMAINDER,
                        help="-- then the `tfgcrf evaluate` arguments")
    args = parser.parse_args(argv)
    arguments = _absolute([a for a in args.arguments if a != "--"])
    trees = dict(spec.split("=", 1) for spec in args.tree)
    runs = {name: [] for name in trees}
    for round_index in range(args.repeat):
        for name, tree in trees.items():
            results, wall, cpu = _run(args.python, tree, arguments)
            images = results["images"]
            runs[name].append((results, wall / images, cpu / images))
            print(f"round {round_index + 1} {name}: {wall / images:.2f} s wall, "
                  f"{cpu / images:.2f} s CPU per image ({images} images)", file=sys.stderr, flush=True)

    reference = next(iter(trees))
    wall_ref = statistics.median(w for _, w, _ in runs[reference])
    cpu_ref = statistics.median(c for _, _, c in runs[reference])
    print("| tree | wall s/image (runs) | median | CPU s/image (runs) | median | speedup wall | speedup CPU |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
    for name, items in runs.items():
        walls = [w for _, w, _ in items]
        cpus = [c for _, _, c in items]
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        print(f"| {name} | {', '.join(f'{w:.2f}' for w in walls)} | {wall:.2f} | "
              f"{', '.join(f'{c:.2f}' for c in cpus)} | {cpu:.2f} | {wall_ref / wall:.2f}x | "
              f"{cpu_ref / cpu:.2f}x |")

    numbers = {name: _flatten(items[-1][0]["methods"]) for name, items in runs.items()}
    shared = [key for key in numbers[reference] if all(key in n for n in numbers.values())]
    print()
    print("| metric | " + " | ".join(trees) + " | max abs difference |")
    print("| --- |" + " ---: |" * (len(trees) + 1))
    worst = 0.0
    for key in shared:
        values = [numbers[name][key] for name in trees]
        difference = max(values) - min(values)
        worst = max(worst, difference if "psnr" in key else 0.0)
        print(f"| {key} | " + " | ".join(f"{v:.6g}" for v in values) + f" | {difference:.2g} |")
    only = sorted({key for n in numbers.values() for key in n} - set(shared))
    if only:
        print(f"\nnot in every tree: {', '.join(only)}")
    print(f"\nlargest PSNR difference: {worst:.2g} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
