"""Real-kernel test harness pieces that are not shipped in the mdtrace package."""
