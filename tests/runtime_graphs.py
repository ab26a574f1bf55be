"""The graphs TensorFlow really runs for an eager function call (after Grappler)."""

import collections

from tensorflow.python.eager import context


def runtime_ops(function, **inputs):
    """`Counter` of the op types in the graphs TensorFlow instantiates for `function(**inputs)`:
    the partition graphs of the call's run metadata, after Grappler and the lowering of control
    flow. The call must be the first of `function` under the current function-call config (a
    function is optimized once, when it is instantiated)."""
    ctx = context.context()
    ctx.enable_run_metadata()
    try:
        function(**inputs)
        metadata = ctx.export_run_metadata()
    finally:
        ctx.disable_run_metadata()
    assert metadata.function_graphs, "no graph was instantiated (called before?)"
    return collections.Counter(node.op for graphs in metadata.function_graphs
                               for graph in graphs.partition_graphs for node in graph.node)
