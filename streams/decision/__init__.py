"""The decision agent: order assignment, triggered re-plans, optimize and proposals."""
