"""Measuring one arm of ``bench/step_cost.py`` from inside its child process.

``Recorder`` times named phases (wall seconds) and notes the peak RSS so far
(``ru_maxrss`` of this process) after each. ``PassCounter`` counts network
slice-passes per phase by wrapping, for this process only, two places every
network pass goes through:

- ``mltasks.infer._Sampler.run`` (every MC-dropout batch: B slices x T samples,
  on the folded ``FastMC`` copy or the plain net): "mc" passes;
- ``mltasks.nets.UNet.forward`` outside the sampler: "train" when autograd is on
  (a training batch), "eval" otherwise (validation predictions).

It also keeps the input (H, W) and the net's configuration of every pass, so
``flops_per_pass`` can price a pass with ``torch.utils.flop_counter.FlopCounterMode``.
The wrappers change nothing the product computes; when a hooked name is missing
(a later refactor), the count of that kind stays empty and the report says "n/a".
"""

from __future__ import annotations

import resource
import time
from collections import defaultdict
from contextlib import contextmanager

import torch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Recorder:
    """Phase name -> wall seconds, and the peak RSS (MB) reached by the end of each phase."""

    def __init__(self, counter: PassCounter | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.rss_after: dict[str, float] = {}
        self.info: dict = {}
        self.counter = counter
        self.current: str | None = None

    @contextmanager
    def phase(self, name: str):
        self.current = name
        if self.counter is not None:
            self.counter.phase = name
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            self.rss_after[name] = peak_rss_mb()
            self.current = None
            if self.counter is not None:
                self.counter.phase = None
            print(f"  {name}: {self.seconds[name]:.1f} s, peak RSS {self.rss_after[name]:.0f} MB", flush=True)

    def to_dict(self) -> dict:
        out = {"seconds": self.seconds, "rss_after_mb": self.rss_after, "peak_rss_mb": peak_rss_mb(),
               "info": self.info}
        if self.counter is not None:
            out["passes"] = self.counter.to_dict()
        return out


class PassCounter:
    """Network slice-passes per phase and kind ("mc", "train", "eval"), with their input shapes."""

    def __init__(self) -> None:
        self.phase: str | None = None
        # phase -> kind -> "HxW" -> slice-passes
        self.counts: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
        self.configs: dict[str, dict] = {}
        self.hooked: list[str] = []
        self._in_sampler = 0

    def add(self, kind: str, x: torch.Tensor, repeats: int, config) -> None:
        key = f"{int(x.shape[-2])}x{int(x.shape[-1])}"
        self.counts[self.phase or "other"][kind][key] += int(x.shape[0]) * int(repeats)
        self.configs[key] = config.to_dict()

    def install(self) -> PassCounter:
        self._hook_sampler()
        self._hook_forward()
        return self

    def _hook_sampler(self) -> None:
        from mltasks import infer

        sampler = getattr(infer, "_Sampler", None)
        if sampler is None or not hasattr(sampler, "run"):
            return
        original, counter = sampler.run, self

        def run(self_, x, t):
            counter.add("mc", x, t, self_.model.config)
            counter._in_sampler += 1
            try:
                return original(self_, x, t)
            finally:
                counter._in_sampler -= 1

        sampler.run = run
        self.hooked.append("mltasks.infer._Sampler.run")

    def _hook_forward(self) -> None:
        from mltasks import nets

        original, counter = nets.UNet.forward, self

        def forward(self_, x, **kwargs):
            if not counter._in_sampler:
                counter.add("train" if torch.is_grad_enabled() else "eval", x, 1, self_.config)
            return original(self_, x, **kwargs)

        nets.UNet.forward = forward
        self.hooked.append("mltasks.nets.UNet.forward")

    def to_dict(self) -> dict:
        return {
            "hooked": self.hooked,
            "counts": {p: {k: dict(v) for k, v in kinds.items()} for p, kinds in self.counts.items()},
            "configs": self.configs,
        }


@torch.no_grad()
def flops_per_pass(config: dict, shape: tuple[int, int]) -> float:
    """FLOPs of one forward pass of one (H, W) slice through a U-Net of ``config`` (MC mode)."""
    from torch.utils.flop_counter import FlopCounterMode

    from mltasks.nets import NetConfig, UNet

    model = UNet(NetConfig.from_dict(config)).mc_mode()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, *shape))
    return float(counter.get_total_flops())


def price_passes(passes: dict) -> dict:
    """{shape key: forward FLOPs of one slice} for every input shape this arm ran."""
    return {key: flops_per_pass(cfg, tuple(int(v) for v in key.split("x")))
            for key, cfg in passes.get("configs", {}).items()}


def acquired_slices(zs: list[int], working: dict, original: dict, *, tol_mm: float = 0.01) -> int:
    """How many working slices ``zs`` lie (within ``tol_mm`` along the slice normal) on a slice
    of the original series: an interpolated slice lies between two acquired ones.

    Args:
        working, original: ``Geometry.to_dict()`` of the working grid and of the CT's own grid.
    """
    import numpy as np

    def axis(g: dict) -> tuple[np.ndarray, np.ndarray, float]:
        direction = np.asarray(g["direction"], np.float64).reshape(3, 3)
        return np.asarray(g["origin"], np.float64), direction[:, 2], float(g["spacing"][0])

    w_origin, w_normal, w_step = axis(working)
    o_origin, o_normal, o_step = axis(original)
    n_original = int(original["shape"][0])
    count = 0
    for z in zs:
        k = float(np.dot(w_origin + w_normal * w_step * z - o_origin, o_normal)) / o_step
        if abs(k - round(k)) * o_step <= tol_mm and 0 <= round(k) < n_original:
            count += 1
    return count
