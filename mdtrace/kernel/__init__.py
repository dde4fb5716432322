"""Kernel knowledge: flag tables, BTF reading, probe-point discovery."""
