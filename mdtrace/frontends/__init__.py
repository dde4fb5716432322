"""Front ends that render engine snapshots (TUI, exporter)."""
