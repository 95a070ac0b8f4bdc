"""matplotlib for the plots commands write (front.png, pareto_<hw>.png, compare.png, the profile plot).

``pyplot(to_file)`` imports matplotlib on first use (it is slow to import, and most runs draw nothing) and, for a
plot drawn into a file, selects the Agg backend first, so it works without a display; a plot drawn into a caller's
axes (a notebook) keeps the caller's backend.
"""

from __future__ import annotations

from typing import Any


def pyplot(to_file: bool = True) -> Any:
    """``matplotlib.pyplot`` (Agg selected when ``to_file``)."""
    import matplotlib

    if to_file:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
