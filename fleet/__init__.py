"""Real-time telemetry and decisioning for last-mile delivery fleets: the shared kernel."""
