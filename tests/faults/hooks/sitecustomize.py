"""Loaded at start-up by the fault suite's child processes (this folder goes first on PYTHONPATH):
``PANOPLACE_FAULT_SLOW="module:name.attr:seconds"`` makes that function sleep before it runs, so
that a test can ``kill -9`` the child inside it (e.g. ``panoplace.atomic:os.replace:30`` holds the
final rename of an atomic write; ``panoplace.store:PartialStore.append:0.5`` slows extraction)."""

import functools
import importlib
import os
import time

_spec = os.environ.get("PANOPLACE_FAULT_SLOW")
if _spec:
    _module, _attr, _seconds = _spec.split(":")
    _owner = importlib.import_module(_module)
    _parts = _attr.split(".")
    for _p in _parts[:-1]:
        _owner = getattr(_owner, _p)
    _fn = getattr(_owner, _parts[-1])

    @functools.wraps(_fn)
    def _slow(*args, _fn=_fn, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(float(_seconds))
        return _fn(*args, **kwargs)

    setattr(_owner, _parts[-1], _slow)
