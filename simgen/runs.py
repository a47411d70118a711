"""What `simgen render`, `distill train` and `distill fit-teacher` share about an output that may hold
earlier work: whether a saved config is this one, and the one rule for what to do with it.

Finished, resume or refuse: the same finished work is reused (nothing to do), unfinished work is
continued only when asked (--resume; a render always continues its own dataset), and anything else
is refused with what differs. Nothing finished is ever deleted or overwritten.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from simgen.options import ConfigError

NEW, RESUME, FINISHED = "new", "resume", "finished"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a local file's bytes (simgen.store.sha256 also takes URLs)."""
    from simgen.store import sha256

    return sha256(Path(path))


def differences(old: dict[str, Any], new: dict[str, Any], ignore: set[str] | frozenset = frozenset()) -> list[str]:
    """Keys whose values differ between two configs as dicts (a key missing on one side differs)."""
    return sorted(k for k in set(old) | set(new) if k not in ignore and old.get(k) != new.get(k))


def config_differences(saved: dict[str, Any], cfg: Any, ignore: set[str] | frozenset = frozenset(),
                       rebuild: Callable[[dict[str, Any]], Any] | None = None) -> list[str]:
    """Fields in which a saved config (a dict; fields added since take their defaults) differs from the
    dataclass `cfg`. `rebuild` turns the dict into the dataclass where the class needs more than its
    constructor (retired fields)."""
    cls = type(cfg)
    old = rebuild(saved) if rebuild else cls(**{**asdict(cls()), **saved})
    return differences(asdict(old), asdict(cfg), ignore)


def run_decision(where: str, what: str, finished_diff: list[str] | None, unfinished: bool, resume: bool) -> str:
    """FINISHED (the same finished work is there: nothing to do), RESUME or NEW, or the error that keeps
    the work there. `finished_diff`: None when no finished work is there, else how its config differs
    from this one; `unfinished`: unfinished work is there (a checkpoint)."""
    if finished_diff is not None:
        if finished_diff:
            raise FileExistsError(f"{where} holds a finished {what} with another config (differs in: "
                                  f"{', '.join(finished_diff)}); choose a new --out (nothing was overwritten)")
        return FINISHED
    if unfinished and not resume:
        raise FileExistsError(f"{where} already holds an unfinished {what}; pass --resume to continue it, or choose "
                              "a new --out (nothing was overwritten)")
    if resume and not unfinished:
        raise FileNotFoundError(f"--resume: no unfinished {what} in {where} to continue")
    return RESUME if resume else NEW


def require_writable(path: str | Path, flag: str, directory: bool = False) -> Path:
    """Make the folder an output goes into (the output itself when `directory`) and prove it takes a file,
    before any work: a read-only or missing place is found now, not after the work."""
    path = Path(path)
    folder = path if directory else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot write there ({e.strerror or e}); choose another place "
                          "(nothing was done)") from None
    return path
