"""A small deterministic run of the decode rule's mutation fuzzer (benchmarks/fuzz_decode.py).

A few hundred mutations (fixed seed) of small files of every kind the rule reads, decoded in a
process with 1 GB of address space to spare, by the Python API and by the SavedModel's graph
(every format's branch): each decodes to a uint8 `[H, W, 3]` within the pixel limit, the same
from both, or is refused with one printable line. The full fuzzer (minutes to hours, with
per-case timeouts and Pillow comparisons) is the benchmark script.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMOKE = r"""
import importlib.util, json, random, resource, sys
import numpy as np
import tensorflow as tf
from tfgcrf import decode, imageio
from tfgcrf.errors import InputError

spec = importlib.util.spec_from_file_location("fuzz_decode", sys.argv[1])
fuzz = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fuzz)
seeds = fuzz.make_seeds()
full = tf.function(decode.decode_image, autograph=False,
                   input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64)])
limit = tf.constant(imageio.MAX_PIXELS, tf.int64)

def api(data):
    try:
        return imageio.read_image(data)
    except InputError as err:
        return str(err)

def graph(data):
    try:
        return full(tf.constant(data), limit).numpy()
    except tf.errors.InvalidArgumentError as err:
        return decode.error_message(err)

for data in seeds.values():  # every graph traced before the memory limit
    api(data), graph(data)
size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, size + 2**30))
rng = random.Random(int(sys.argv[3]))
names = sorted(seeds)
problems, decoded = [], 0
for index in range(int(sys.argv[2])):
    name = rng.choice(names)
    data, note = fuzz.mutate(seeds[name], rng, [seeds[k] for k in names if k[:3] == name[:3] and k != name])
    first, second = api(data), graph(data)
    case = f"{index} {name} {note}"
    if isinstance(first, str):
        if "\n" in first or not first.isprintable() or len(first) > 400:
            problems.append([case, "message", first[:500]])
        if not isinstance(second, str):
            problems.append([case, "only the API refused", first])
        elif second not in first:
            problems.append([case, "other message from the graph", first, second])
    else:
        decoded += 1
        height, width, channels = first.shape
        if first.dtype != np.uint8 or channels != 3 or not 0 < height * width <= imageio.MAX_PIXELS:
            problems.append([case, "image", str(first.dtype), list(first.shape)])
        if isinstance(second, str) or not np.array_equal(first, second):
            problems.append([case, "the graph gave something else", second if isinstance(second, str) else
                             list(second.shape)])
print(json.dumps({"problems": problems, "decoded": decoded}))
"""


def test_a_few_hundred_mutations_decode_or_are_refused_in_one_line():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    script = os.path.join(ROOT, "benchmarks", "fuzz_decode.py")
    run = subprocess.run([sys.executable, "-c", SMOKE, script, "300", "15"], capture_output=True, text=True,
                         env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["problems"] == []
    assert 30 <= result["decoded"] <= 270, result  # both outcomes exercised
