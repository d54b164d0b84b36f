"""Where training curves go besides ``metrics.jsonl`` (always written): ``--track
tensorboard`` writes the same rows, under the same names (``charts/...``, ``losses/...``,
``eval/...``), as TensorBoard scalars under ``<out>/tensorboard/`` -- one run folder per
site in federated training, so the sites' curves overlay:

    agora train ... --out runs/a --track tensorboard
    tensorboard --logdir runs/a/tensorboard
"""

from __future__ import annotations

import math
from pathlib import Path

TRACKERS = ("none", "tensorboard")


class Tracker:
    """Nothing beyond metrics.jsonl (``--track none``)."""

    def log(self, row: dict, step: int, run: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker(Tracker):
    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder, self._writers, self._cls = Path(folder), {}, SummaryWriter

    def _writer(self, run: str | None):
        if run not in self._writers:
            self._writers[run] = self._cls(str(self.folder / run if run else self.folder))
        return self._writers[run]

    def log(self, row: dict, step: int, run: str | None = None) -> None:
        w = self._writer(run)
        for k, v in row.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
                    and "/" in k:          # the metric names; not step, seed, round, ...
                w.add_scalar(k, float(v), step)
        w.flush()

    def close(self) -> None:
        for w in self._writers.values():
            w.close()


def make_tracker(kind: str | None, out: str | Path) -> Tracker:
    """The tracker ``--track`` names (module doc); ValueError naming the flag otherwise."""
    if kind in (None, "none"):
        return Tracker()
    if kind != "tensorboard":
        raise ValueError(f"--track: {kind!r}; expected one of {', '.join(TRACKERS)}")
    try:
        return TensorBoardTracker(Path(out) / "tensorboard")
    except ImportError:
        raise ValueError("--track tensorboard: the tensorboard package is not installed "
                         "(pip install tensorboard; pyproject.toml lists it)") from None
