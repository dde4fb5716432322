"""`mdtrace top`: a Textual terminal UI over engine snapshots (live or replayed)."""
