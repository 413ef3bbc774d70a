"""What the data loaders tell the user: one warning per load, naming the skipped files, at the user's line.

- `skipped_note(names, list_path)`: "skipped 3 file(s) that could not be decoded as images: a.png,
  b.png, c.png"; past `SHOWN` names, the first few, the count of the rest and the file holding the
  full list (written here).
- `warn_user(message)`: a UserWarning attributed to the first caller outside jaxcnn (the user's
  script or notebook cell), not to a line inside the library, whichever loader path led there.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Sequence

SHOWN = 5  # skipped files named in the warning itself; the full list goes to a file past that
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def write_list(path: str, names: Sequence[str]) -> str:
    """`names`, one a line, in `path` (written atomically); the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.writelines(f"{n}\n" for n in names)
    os.replace(tmp, path)
    return path


def skipped_note(names: Sequence[str], list_path: str | None = None) -> str:
    """The one message for files that could not be decoded: every name, or the first `SHOWN`, how
    many more, and `list_path` (written with all of them) when given."""
    names = [str(n) for n in names]
    text = f"skipped {len(names)} file(s) that could not be decoded as images: {', '.join(names[:SHOWN])}"
    if len(names) > SHOWN:
        text += f" and {len(names) - SHOWN} more"
        if list_path:
            text += f" (all listed in {write_list(list_path, names)})"
    return text


def _user_stacklevel() -> int:
    """The stacklevel of the first frame outside the jaxcnn package (and Python's own runners)."""
    frame, level = sys._getframe(2), 2  # level 2: warn_user's caller (1 would be warn_user itself)
    while frame is not None:
        name = frame.f_code.co_filename
        if not (os.path.abspath(name).startswith(_PACKAGE_DIR) or name.startswith("<frozen")):
            return level
        frame, level = frame.f_back, level + 1
    return level  # no user frame (the command line): past the top, Python reports it as `sys:1`


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue `message` as a warning attributed to the user's code that led here."""
    warnings.warn(message, category, stacklevel=_user_stacklevel())
