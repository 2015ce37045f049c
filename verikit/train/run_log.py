"""Per-epoch training logs: ``OUT/train_log.csv`` always, ``OUT/tensorboard/`` when TensorBoard is
installed (``pip install verikit[tensorboard]``).

Named ``run_log`` so it never shadows the standard library's ``logging``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any, Sequence

from ..atomic import write_atomic

CSV_FILE = "train_log.csv"
TENSORBOARD_DIR = "tensorboard"


class RunLog:
    """Writes the epoch history of one run (rank 0 only under DDP).

    The CSV is rewritten whole from the history after every epoch rather than appended to: a run
    resumed from a checkpoint then lists every epoch exactly once, even if it was killed after
    logging an epoch but before checkpointing it. TensorBoard events past the resume point are
    purged for the same reason.
    """

    def __init__(self, out_dir: str | Path, start_epoch: int = 1, tensorboard: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.writer = _summary_writer(self.out_dir / TENSORBOARD_DIR, start_epoch) if tensorboard else None

    @property
    def csv_path(self) -> Path:
        return self.out_dir / CSV_FILE

    def write(self, history: Sequence[Any]) -> None:
        """Rewrite the CSV from ``history`` (EpochRecord dataclasses) and send the last epoch to TensorBoard."""
        if not history:
            return
        rows = [dataclasses.asdict(r) for r in history]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow({k: "" if v is None else v for k, v in row.items()})
        write_atomic(self.csv_path, buf.getvalue())
        if self.writer is not None:
            last = rows[-1]
            for key, value in last.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    group = "val" if key.startswith("val_") else "train"
                    self.writer.add_scalar(f"{group}/{key.removeprefix('val_')}", value, last["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _summary_writer(log_dir: Path, start_epoch: int):
    """A TensorBoard writer, or None when tensorboard is not installed (it is optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's module imports the tensorboard package, which is an extra
        return None
    # purge_step drops events logged at or after the epoch we resume at (a killed run's tail).
    return SummaryWriter(str(log_dir), purge_step=start_epoch if start_epoch > 1 else None)
