"""Route tracking: plans, events, commands, moved pings and the stale timer per driver."""
