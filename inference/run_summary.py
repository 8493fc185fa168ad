"""What annotate_video and annotate_images share: the :class:`RunSummary` a run returns
(the CLI prints its line and exits with its code) and the progress bar."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunSummary:
    """What a run did: the CLI prints :meth:`line` and exits with :attr:`exit_code`."""

    frames: int = 0
    processed: int = 0
    detections: int = 0
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None      # set when the input could not be read to its end

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return 3 if self.error else 0

    def line(self, what: str = "frames") -> str:
        outs = ", ".join(str(p) for p in self.outputs)
        core = (f"{self.frames} {what} ({self.processed} through the model, {self.detections} "
                f"detections) in {self.seconds:.1f} s ({self.fps:.1f} {what}/s) -> {outs}")
        if self.error:
            return f"INCOMPLETE: {core}; {self.error}"
        return f"annotated {core}"


def progress_bar(total: int | None, enabled: bool, desc: str):
    """A tqdm bar counting frames (``total`` None when unknown); ``enabled`` False hides it.
    tqdm is imported here, when a run starts, not when the package is imported."""
    from tqdm import tqdm
    return tqdm(total=total, unit="frame", desc=desc, disable=not enabled, dynamic_ncols=True,
                leave=False)

