"""What ``manage.py simulate_annotators`` reports per step besides Dice (issue 18's figures)."""

from __future__ import annotations

from backend.acquisition.management.commands.simulate_annotators import phase_seconds


def test_the_seconds_per_state_come_from_the_steps_transitions():
    transitions = [{"state": "created", "at": "2026-12-03T10:00:00+00:00"},
                   {"state": "inferring", "at": "2026-12-03T10:00:01+00:00"},
                   {"state": "selecting", "at": "2026-12-03T10:15:01.500000+00:00"},
                   {"state": "annotating", "at": "2026-12-03T10:15:03+00:00"},
                   {"state": "training", "at": "2026-12-03T10:16:00+00:00"},
                   {"state": "done", "at": "2026-12-03T10:20:00+00:00"}]
    assert phase_seconds(transitions) == {"created": 1.0, "inferring": 900.5, "selecting": 1.5,
                                          "annotating": 57.0, "training": 240.0}
    assert phase_seconds(transitions[:1]) == {} and phase_seconds([]) == {}
