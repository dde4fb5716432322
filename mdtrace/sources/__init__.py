"""Event sources: live BPF (bcc_source), recorded traces (replay), sysfs poller (sysfs)."""
