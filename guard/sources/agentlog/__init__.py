"""The agent log as evidence: which pools the agent was told to hold and to drop, when it
restarted and reconnected, and which failures a storage adaptor caused.

The agent's pool caches live inside its JVM; its log is the only record of what went in
and out of them. The guard must read that record in every shape it meets: the file itself
(log4j 1 and log4j 2 layouts, rotated, gzipped), journald and rsyslog captures, and
excerpts pasted into tickets (markdown quotes, `grep -n` prefixes, redacted host names,
traces cut short, a trace with no header at all). None of that may raise: a log the guard
cannot read is reported in a SourceStatus, never fatal to the check.

Incident logs run to gigabytes and nearly every line is INFO/DEBUG chatter that matches
nothing, so each line first meets fixed-position and substring checks; only the few that
pass reach a regular expression. Lines are streamed one at a time and stack traces are
judged as they go by (no trace is kept in memory), so memory stays flat whatever the size.

The strings matched are the agent's own (Agent.java, AgentShell.java,
LibvirtStorageAdaptor.java, LinstorStorageAdaptor.java, KVMHAMonitor.java in
apache/cloudstack), including the spellings older releases used.

The jobs, a module each: rotation (the rotated set and its order), reading (plain or
gzip, capped, and the status `check` reports), cursor (reading on from where the last
reader stopped, across rotation), stamps (line shapes and timestamps),
scanner (lines into records), traces (what a stack trace says), messages (which
messages are events).
"""

from .cursor import LogRead, read_agent_log, read_log
from .reading import MAX_LINE_BYTES, SOURCE_NAME, IncrementalParser, iter_events, parse_lines
from .rotation import copytruncate_copy, log_set, ordered

__all__ = ["MAX_LINE_BYTES", "SOURCE_NAME", "IncrementalParser", "LogRead", "copytruncate_copy",
           "iter_events", "log_set", "ordered", "parse_lines", "read_agent_log", "read_log"]
