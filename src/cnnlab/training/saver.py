"""The checkpoint saver of a run folder (after timm's `CheckpointSaver`): which checkpoints are written when
(best.pt when validation accuracy improves, last.pt every epoch with the one before kept as last.prev.pt), resuming
from last.pt or, when it is damaged, from last.prev.pt, and what a failed write to the folder says.

Checkpoints are written beside the old ones and renamed over them (checkpoint.save_checkpoint), so a full disk or a
killed process leaves the last good last.pt in place; every message that offers `--resume` first checks it is there.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from cnnlab.errors import CnnlabError
from cnnlab.training.checkpoint import MODEL_KEYS, load_checkpoint, save_checkpoint
from cnnlab.training.config import RESUME_KEYS_CHANGEABLE, RunConfig, config_from_dict
from cnnlab.training.runfolder import RunFolder, Spelling
from cnnlab.training.runstate import RESUME_KEYS


class CheckpointSaver:
    """Writes and reads the checkpoints of one run folder; `saved_epoch` is the epoch of the last checkpoint written
    (or resumed from), None before the first."""

    def __init__(self, folder: RunFolder, spelling: Spelling, enabled: bool = True):
        self.folder, self.spelling, self.enabled = folder, spelling, enabled  # enabled: train.checkpoints
        self.saved_epoch: Optional[int] = None

    def save(self, checkpoint: Callable[[], dict], epoch: int, best: bool = False) -> None:
        """last.pt (the previous one kept as last.prev.pt), and best.pt too when `best`; `checkpoint` builds the
        dict, only when one is written."""
        if not self.enabled:
            return
        ckpt = checkpoint()
        if best:
            save_checkpoint(self.folder.path / "best.pt", ckpt)
        save_checkpoint(self.folder.path / "last.pt", ckpt, keep_previous=True)
        self.saved_epoch = epoch

    def resumable(self) -> bool:
        """Whether `--resume` can continue: a checkpoint was written and is still there (the folder may have been
        deleted or moved under a running run; a message must not offer to resume what is gone)."""
        return self.saved_epoch is not None and (self.folder.path / "last.pt").is_file()

    def how_to_go_on(self, written: bool) -> str:
        """What an interrupted run can do next (`written`: the run writes its folder)."""
        if written and self.resumable():
            return f"last.pt holds {self.saved_epoch} epochs; continue with: {self.resume_hint()}"
        if written and self.saved_epoch is not None:
            return (f"the run folder's last.pt is gone (was {str(self.folder.path)!r} deleted or moved while "
                    "training?), so the run cannot be resumed; start it again")
        return ("no checkpoint was written (train.checkpoints=false or before the first epoch ended), so the run "
                "cannot be resumed")

    def resume_hint(self) -> str:
        return self.spelling.resume.format(path=self.folder.path)

    @contextlib.contextmanager
    def writing(self, epoch: int):
        """A failed write to the run folder (full disk, quota, a folder gone read-only) stops the run with one line
        that says what was kept: the last good last.pt is still there, and `--resume` continues from it."""
        try:
            yield
        except OSError as e:
            what = os.path.basename(e.filename) if e.filename else "a file"
            kept = (f"last.pt from epoch {self.saved_epoch} is intact; free space, then continue with: "
                    f"{self.resume_hint()}" if self.resumable() else
                    "the run folder's last.pt is gone (was the folder deleted or moved?): start the run again"
                    if self.saved_epoch is not None else "no checkpoint was written yet")
            raise CnnlabError(f"cannot write {what} in {str(self.folder.path)!r} ({e.strerror or e}) after epoch "
                              f"{epoch}; {kept}") from None

    def restore(self, apply: Callable[[dict, Path], None], device) -> None:
        """Load last.pt and `apply(checkpoint, path)` it; if it is damaged or does not fit the run, last.prev.pt
        (with a warning)."""
        last = self.folder.path / "last.pt"
        prev = last.with_suffix(".prev.pt")
        try:
            apply(load_checkpoint(last, device, fallback=False, require=RESUME_KEYS), last)
        except CnnlabError as e:
            if not prev.exists():
                raise
            print(f"cnnlab: warning: {e}; using the previous checkpoint {str(prev)!r}", file=sys.stderr)
            apply(load_checkpoint(prev, device, fallback=False, require=RESUME_KEYS), prev)


def check_against_checkpoint(folder: RunFolder, cfg: RunConfig) -> int:
    """config.yaml must say what the checkpoint was trained with: a truncated or edited config.yaml can still be
    valid YAML (a missing section reads as defaults) and would silently continue another run. Returns the epochs
    the checkpoint holds (0 without a readable one)."""
    for name in ("last.pt", "last.prev.pt"):
        try:
            ckpt = load_checkpoint(folder.path / name, fallback=False, require=MODEL_KEYS)
            saved = config_from_dict(ckpt["config"]).to_dict()
        except CnnlabError:
            continue  # a damaged checkpoint is reported (or passed over) by the restore itself
        ours = cfg.to_dict()
        for section in (saved, ours):
            section["data"].pop("root", None)  # the data may have moved; that is what --data-root is for
            for key in RESUME_KEYS_CHANGEABLE:  # an extended run's last.pt says the new length from its next epoch
                section[key.split(".")[0]].pop(key.split(".")[1], None)
        diff = next((k for k in ours if ours[k] != saved[k]), None)
        if diff is not None:
            key = next((f"{diff}.{k}" for k in ours[diff] if ours[diff][k] != saved[diff].get(k)), diff) \
                if isinstance(ours[diff], dict) else diff
            raise CnnlabError(f"{str(folder.path / 'config.yaml')!r} does not match the config saved in {name} "
                              f"(key {key!r}); the run folder is damaged or was edited: restore config.yaml, or "
                              "start a new run")
        return int(ckpt.get("epoch") or 0) if isinstance(ckpt.get("epoch"), int) else 0
    return 0
