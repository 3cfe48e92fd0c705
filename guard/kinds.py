"""Every kind of finding, and what it asks of the operator: the manual's FINDINGS section
is written from this table, and a test holds it to the kinds the code can emit, so the
two never drift."""

from __future__ import annotations

FINDING_KINDS: dict[str, str] = {
    "stale-pool": "The running agent still holds a pool that was removed (or put into maintenance, "
                  "or moved out of this host's scope). CRITICAL when the next VM stop fails through "
                  "it (LINSTOR) or its HA heartbeat will reboot the host (LINSTOR, StorPool, NFS); "
                  "WARNING otherwise. Asks for an agent restart at a quiet moment (the daemon does "
                  "it in remediate mode), unless the finding says a restart would not help.",
    "stop-failure": "The agent logged a failed VM stop; the finding names its cause when one is "
                    "visible (a stale pool, an outage) and takes that cause's severity.",
    "backend-unreachable": "A pool this host uses has a backend that does not answer its probe. "
                           "Says what fails next on this host (VM starts, attaches, migrations; "
                           "every VM stop for LINSTOR; the HA heartbeat's reboot for NFS, LINSTOR "
                           "and StorPool). Fix the backend: an agent restart will not help.",
    "agent-down": "No cloudstack-agent runs (or it is not installed): start it, or install it on "
                  "a host meant to be a KVM host.",
    "agent-disconnected": "The agent runs but holds no connection to the management server it "
                          "is configured for.",
    "orphan-libvirt-pool": "libvirt still defines a pool the management server removed; "
                           "CloudStack never deletes it: `virsh pool-destroy` and "
                           "`virsh pool-undefine` once nothing uses it.",
    "pool-inactive": "A pool the management server lists as Up is inactive in libvirt: VMs on it "
                     "cannot start here.",
    "source-unavailable": "A source of evidence (agent log, libvirt, management API, ...) cannot "
                          "be read: the verdict is UNKNOWN for what only it could tell. The "
                          "finding names the file, key or service and the fix.",
    "probe": "`cloudstack-guard probe` only: a target that did not answer as its protocol must.",
}

FRESH_HOST = ("On a fresh host (the package installed, no agent and no libvirtd yet) `check` "
              "answers CRITICAL agent-down, saying the agent is not installed when systemd knows "
              "no cloudstack-agent unit, and UNKNOWN source-unavailable for agent.properties, the "
              "agent log and libvirt, each naming the file or socket and the fix. Configure "
              "[management] for full coverage.")
