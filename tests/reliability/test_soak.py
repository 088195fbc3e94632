"""The long-run soak (1,000 training steps + 500 generations): memory does not grow beyond noise.

Slow (minutes), so out of the default run: `make test-slow`. CI runs the same code in seconds through
`python -m benchmarks.soak --smoke` (tests/benchmarks/test_smoke.py)."""
from __future__ import annotations

import pytest


@pytest.mark.slow
def test_soak_memory_flat(tmp_path):
    from benchmarks import soak

    res = soak.main(["--out", str(tmp_path)])
    v = res["verdict"]
    assert res["steps"] == 1000 and len(v["checkpoints_kept"]) == 2
    assert v["train"]["passed"] and v["generate"]["passed"], v
