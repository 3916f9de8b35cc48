"""Reading a saved model file (torch): one place that turns every way a file can be wrong into one
line naming the file and what is wrong (missing, empty, not a torch file, not a model of this kind),
before anything else reads it."""
from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any

import torch

__all__ = ["load_blob"]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_blob(path: Any, what: str, key: str, fmt: Any) -> dict:
    """The dict saved in ``path`` by ``torch.save``, whose ``key`` is ``fmt`` (a model file of kind
    ``what``); a ValueError naming the file and the fault otherwise. Loaded with
    ``weights_only=True``: tensors, dicts, lists, numbers and strings, no code runs."""
    shown = str(path)
    if not os.path.exists(shown):
        raise ValueError(f"the {what} file {shown!r} does not exist")
    if os.path.isdir(shown):
        raise ValueError(f"the {what} file {shown!r} is a folder")
    if os.path.getsize(shown) == 0:
        raise ValueError(f"the {what} file {shown!r} is empty (a save that did not finish?)")
    try:
        blob = torch.load(shown, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read the {what} file {shown!r}: it is not a torch file or it is damaged "
                         f"({_first_line(e)})") from None
    if not isinstance(blob, dict) or blob.get(key) != fmt:
        raise ValueError(f"{shown!r} is not a saved {what} file (it holds no {key} = {fmt!r}); was it saved by another "
                         f"command?")
    return blob
