"""How long `tfgcrf serve` takes to exit after SIGTERM / SIGINT, idle and with a request running.

    .venv/bin/python benchmarks/serve_stop.py --model-dir DIR [--baseline-commit c600bf8]

Serves `--model-dir`, sends the signal, and times the exit; for a model with a `spin` signature
(CPU work that only cancellation stops), also with a request running: a REST `spin` of hours is
sent first. The tests' toy model has one (benchmarks do not import tests; export it first with
`cd tests/serving && python -c "from serving_toys import export_toy; export_toy('/tmp/toy', 1, 0.0)"`,
then `--model-dir /tmp/toy --spin`). `--baseline-commit C` runs each case with
that commit's code first (its tree in the installed layout in a temporary folder, on PYTHONPATH,
the editable install's finder dropped by a sitecustomize.py there), and prints the ratios.
"""

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tfgcrf.serving.launcher import ServeProcess  # noqa: E402

FOREVER = 10**12


def _spin(server, name, answers):
    body = json.dumps({"signature_name": "spin", "instances": [FOREVER]}).encode()
    try:
        with urllib.request.urlopen(f"{server.rest_url}/v1/models/{name}:predict", body, timeout=600) as reply:
            answers.append(f"HTTP {reply.status}")
    except urllib.error.HTTPError as err:
        answers.append(f"HTTP {err.code}")
    except OSError as err:
        answers.append(f"no answer ({type(err).__name__})")


def baseline_tree(commit):
    """A folder whose `tfgcrf` package is `commit`'s, laid out as installed (tfgcrf.serving =
    serving/, ...), with a sitecustomize.py that drops the editable install's import finder."""
    folder = tempfile.mkdtemp(prefix="tfgcrf-baseline-")
    source = os.path.join(folder, "tree")
    os.makedirs(source)
    archive = subprocess.run(["git", "-C", ROOT, "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", source], input=archive, check=True)
    package = os.path.join(folder, "path", "tfgcrf")
    os.makedirs(os.path.dirname(package))
    os.symlink(os.path.join(source, "tfgcrf"), package)
    for name in ("serving", "export", "trainers", "configs"):
        os.symlink(os.path.join(source, name), os.path.join(source, "tfgcrf", name))
    with open(os.path.join(folder, "path", "sitecustomize.py"), "w") as handle:
        handle.write("import sys\nsys.meta_path[:] = [f for f in sys.meta_path "
                     "if 'editable' not in repr(f).lower()]\n")
    return os.path.join(folder, "path")


@contextlib.contextmanager
def _python_path(path):
    """Children started inside get `path` first on their import path (and a neutral cwd)."""
    if path is None:
        yield
        return
    saved, cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    os.environ["PYTHONPATH"] = path
    os.chdir(path)  # `python -m` puts the cwd first: not this checkout
    try:
        yield
    finally:
        os.chdir(cwd)
        os.environ.pop("PYTHONPATH") if saved is None else os.environ.update(PYTHONPATH=saved)


def measure(model_dir, signal_number, running, src=None):
    """Seconds from the signal to the exit, the running request's answer, the lines printed."""
    with _python_path(src):
        server = ServeProcess(model_dir, start_timeout=1800,
                              extra_args=["--rest-api-timeout-in-ms", "600000"]).start()
    name = os.path.basename(os.path.normpath(model_dir))
    answers, thread = [], None
    if running:
        thread = threading.Thread(target=_spin, args=(server, name, answers))
        thread.start()
        time.sleep(3.0)
    printed = len(server.output)
    started = time.perf_counter()
    server.process.send_signal(signal_number)
    code = server.process.wait(timeout=600)
    seconds = time.perf_counter() - started
    if thread is not None:
        thread.join(60)
    time.sleep(0.5)
    lines = [line for line in server.output[printed:].splitlines() if line.strip()]
    return seconds, code, (answers or ["-"])[0], lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-commit", help="commit whose code is the baseline")
    parser.add_argument("--model-dir", required=True, help="model base path")
    parser.add_argument("--spin", action="store_true",
                        help="the model has a `spin` signature: also time a stop with a request running")
    args = parser.parse_args()
    model_dir = os.path.abspath(args.model_dir)
    src = baseline_tree(args.baseline_commit) if args.baseline_commit else None
    cases = [(signal.SIGTERM, False), (signal.SIGTERM, True), (signal.SIGINT, False), (signal.SIGINT, True)]
    if not args.spin:
        cases = [(number, running) for number, running in cases if not running]
    print("| signal | request running | baseline s | now s | ratio | baseline: its answer, lines logged | now: its answer, lines logged |")
    print("| --- | --- | ---: | ---: | ---: | --- | --- |")
    for number, running in cases:
        old = measure(model_dir, number, running, src) if src else None
        new = measure(model_dir, number, running)
        ratio = f"{new[0] / old[0]:.2f}x" if old else "-"
        describe = lambda r: f"exit {r[1]}, {r[2]}, {len(r[3])} line(s)" if r else "-"  # noqa: E731
        print(f"| {number.name} | {'yes' if running else 'no'} | {old[0] if old else float('nan'):.2f} | "
              f"{new[0]:.2f} | {ratio} | {describe(old)} | {describe(new)} |", flush=True)
        for line in new[3]:
            print(f"  now logged: {line}")


if __name__ == "__main__":
    main()
