"""Error types that the CLI turns into one clear line.

``ConfigError`` is bad input from the user (a recipe, an override, a file): the CLI prints its
message and exits with code 2. ``TrainingError`` is a run that stopped for a reason the user must
act on (a non-finite loss, a full disk): the CLI prints it and exits with code 1 (``Interrupted``: 130
after SIGINT, 143 after SIGTERM). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Iterable


class ConfigError(ValueError):
    """The user asked for something that does not exist or does not fit."""


class ContractError(ConfigError):
    """A plugin's unit does not meet its kind's contract (checked when it is registered)."""


class TrainingError(RuntimeError):
    """Training stopped; the message names the step and what was kept."""


class WriteError(TrainingError):
    """A file could not be written (disk full, read-only, no permission); what was there is kept."""


class Interrupted(TrainingError):
    """Training was stopped by a signal (SIGINT, SIGTERM) after saving its checkpoint; ``code`` is the exit
    status a shell expects (128 + the signal's number)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def choices_hint(bad: str, valid: Iterable[str]) -> str:
    """'valid: a, b, c (did you mean 'b'?)' — the tail every unknown-name error shares."""
    valid = sorted(valid)
    text = "valid: " + (", ".join(valid) if valid else "(none)")
    close = difflib.get_close_matches(str(bad), valid, n=1, cutoff=0.6)
    if close:
        text += f" (did you mean '{close[0]}'?)"
    return text


def name_too_long(exc: BaseException) -> ConfigError | None:
    """An ``OSError`` for a file name the file system cannot hold (a 5,000-character ``data.path=``) as the
    ``ConfigError`` a user should see, naming it; None for any other exception."""
    if not isinstance(exc, OSError) or exc.errno != errno.ENAMETOOLONG:
        return None
    return _too_long(str(exc.filename or ""))


def _too_long(name: str) -> ConfigError:
    shown = name if len(name) <= 80 else f"{name[:60]}... ({len(name):,} characters)"
    return ConfigError(f"'{shown}': file name too long for the file system (at most 255 bytes a name, 4,096 a path)")


def check_name_length(name: str) -> None:
    """A ConfigError now for an output name no Linux file system holds (a part over 255 bytes, the whole over
    4,096), rather than ENAMETOOLONG after the work that was to be written."""
    encoded = os.fsencode(name)
    if len(encoded) >= 4096 or any(len(part) > 255 for part in encoded.split(b"/")):
        raise _too_long(name)
