"""Hypothesis in CI (`CI` set): the same examples on every run, so that a red build is
the code's doing and can be reproduced; locally each run explores new ones (and
hypothesis keeps the failures it finds in .hypothesis/ to try first next time)."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
