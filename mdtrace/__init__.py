"""mdtrace: eBPF live tracer and hang diagnoser for Linux md and dm-raid."""

__version__ = "0.1.0"
