"""The error every event reader raises."""

from __future__ import annotations

from stdl_edge.events import EventError


class SourceError(EventError):
    """An input that cannot be read; the message names the file, the place and the fix."""
