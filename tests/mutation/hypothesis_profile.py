"""A pytest plugin for mutation runs only: hypothesis derandomized and with fewer examples.

Derandomized, a property test draws the same examples every run, so a mutant is killed or not
by the same inputs each time and the list of survivors is stable from run to run; 25 examples a
test keep a run over core/ to a few minutes on two cores. The normal suite keeps hypothesis's
defaults (random, 100 examples), which is where new inputs get found.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("mutation", max_examples=25, derandomize=True, deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.load_profile("mutation")
