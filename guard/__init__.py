"""cloudstack-guard: finds stale storage pools held by a running CloudStack KVM agent."""
__version__ = "0.1.0"
