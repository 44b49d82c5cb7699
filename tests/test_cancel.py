"""Cancel over HTTP: POST /interrupt stops a VAP run on the real ComfyUI with the tiny models, while VAP
Load Reference Video reads a long clip and while KSampler samples with the expert: the run stops in that
node and saves no video. How long it takes is the benchmark's to say (python -m benchmarks --only cancel)."""
import uuid

import pytest

from devkit import cancel


@pytest.fixture(scope="module")
def long_reference(comfy):
    return cancel.write_long_reference(comfy[2], 10)


@pytest.mark.parametrize("phase", ["reading the reference", "sampling with the expert"])
def test_an_interrupt_stops_the_run_in_the_node_it_reached_and_nothing_is_saved(server, long_reference, phase):
    graph, node, at = cancel.phases(long_reference, seed=uuid.uuid4().int % 2**31)[phase]
    stopped = server.interrupt_during(graph, node, at, timeout=300)
    assert stopped["node"] == node, stopped
    assert cancel.SAVER not in stopped["outputs"], stopped
