"""The state engine: events in, per-array state + findings out.  Knows nothing of sources."""
