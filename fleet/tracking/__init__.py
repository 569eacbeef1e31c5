"""Route tracking and alerts: pure state machines over pings, events, plans and commands."""
