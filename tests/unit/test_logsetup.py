"""What the journal gets from one event: values quoted, no empty fields, and the
priority of a finding's severity, so `journalctl -p crit` is exactly what pages."""

from __future__ import annotations

from guard.logsetup import journal_entry


def test_values_are_quoted_and_empty_fields_left_out():
    text, fields = journal_entry("info", {"event": "finding", "kind": "stale-pool", "pool": "",
                                          "pool_type": None, "backend": "", "action": "restart the agent"})
    assert text == 'finding kind="stale-pool" action="restart the agent"'
    assert "GUARD_POOL" not in fields and "GUARD_BACKEND" not in fields and "GUARD_POOL_TYPE" not in fields
    assert fields["GUARD_EVENT"] == "finding" and fields["GUARD_KIND"] == "stale-pool"


def test_a_critical_finding_is_a_crit_whatever_level_it_was_logged_at():
    assert journal_entry("warning", {"event": "finding", "severity": "CRITICAL"})[1]["PRIORITY"] == "2"
    assert journal_entry("info", {"event": "finding", "severity": "WARNING"})[1]["PRIORITY"] == "4"
    assert journal_entry("error", {"event": "reload-refused", "severity": "OK"})[1]["PRIORITY"] == "3"
    assert journal_entry("info", {"event": "reloaded"})[1]["PRIORITY"] == "6"
