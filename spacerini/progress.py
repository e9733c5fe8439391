"""Whether to show progress bars.

Every long-running function takes ``progress=True`` and shows a bar on stderr; setting the
environment variable ``SPACERINI_NO_PROGRESS`` (to any non-empty value) turns the bars off
everywhere, in the CLI and in the library alike (notebooks, scripts, CI logs).

Example:
    >>> import os
    >>> from spacerini.progress import wanted
    >>> os.environ.pop("SPACERINI_NO_PROGRESS", None) and None
    >>> wanted(True), wanted(False)
    (True, False)
"""

from __future__ import annotations

import os

#: The environment variable that turns every progress bar off.
NO_PROGRESS = "SPACERINI_NO_PROGRESS"


def wanted(progress: bool) -> bool:
    """Whether to show a bar: ``progress`` as asked, unless ``SPACERINI_NO_PROGRESS`` is set."""
    return bool(progress) and not os.environ.get(NO_PROGRESS)
