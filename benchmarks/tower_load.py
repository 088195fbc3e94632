"""How long does loading a GGUF tower take, dequantised from the GGUF vs read from its cache (towers/gguf_cache.py)?

`load_tower("smollm2-135m")` three ways, on a cache in a temporary directory (yours is not touched):

* **first**: the first load, which dequantises the GGUF and writes the cache entry (timed once);
* **gguf**: a load with the cache off (``ZIPPER_GGUF_CACHE=0``): what every load cost before the cache;
* **cached**: a load from the entry;

gguf and cached are interleaved round by round, and each cached tower's weights are checked equal to the first's.
``--smoke`` (CI) times the cached load only (the first load is the GGUF measurement), one round.

    python -m benchmarks.tower_load            # 1 burn-in + 3 rounds: ~2.5 min on 2 cores
    python -m benchmarks.tower_load --smoke
"""
from __future__ import annotations

import os
import tempfile
import time

import torch

from benchmarks import common

NAME = "tower_load"


def parse_args(argv=None):
    p = common.make_parser(__doc__.split("\n")[0])
    p.set_defaults(warmup=1, steps=3)
    args = p.parse_args(argv)
    common.setup(args, argv)
    if args.smoke:
        args.warmup, args.steps = 0, 1
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from towers import load_tower

    saved = {k: os.environ.get(k) for k in ("ZIPPER_CACHE", "ZIPPER_GGUF_CACHE")}
    with tempfile.TemporaryDirectory(prefix="zipper-tower-load-") as cache:
        os.environ["ZIPPER_CACHE"] = cache
        try:
            t0 = time.perf_counter()
            first = load_tower("smollm2-135m")
            first_s = time.perf_counter() - t0
            reference = {k: v.clone() for k, v in first.model.state_dict().items()}
            del first

            def load(use_cache: bool):
                os.environ["ZIPPER_GGUF_CACHE"] = "1" if use_cache else "0"
                tower = load_tower("smollm2-135m")
                state = tower.model.state_dict()
                assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in state)

            fns = {"cached": lambda: load(True)} if args.smoke else {"gguf": lambda: load(False),
                                                                      "cached": lambda: load(True)}
            times = common.interleaved(fns, args.warmup, args.steps)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    result = {"first_load_s": round(first_s, 2), "load_s": {k: common.summarize(v) for k, v in times.items()},
              "setup": {"tower": "smollm2-135m", "threads": torch.get_num_threads()}}
    cached = common.fmt_stat(result["load_s"]["cached"], unit=" s")
    if "gguf" in times:
        result["gguf_over_cached"] = common.ratios(times["gguf"], times["cached"])
        headline = (f"SmolLM2-135M load: from the GGUF {common.fmt_stat(result['load_s']['gguf'], unit=' s')}, "
                    f"from the cache {cached}: {common.fmt_stat(result['gguf_over_cached'], unit='x')} faster "
                    f"(first load, writing the cache: {first_s:.1f} s)")
    else:
        headline = f"SmolLM2-135M load: first (GGUF, writes the cache) {first_s:.1f} s, from the cache {cached}"
    print(headline)
    common.write_results(NAME, args, result, headline)
    return result


if __name__ == "__main__":
    main()
