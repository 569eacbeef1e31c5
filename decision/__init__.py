"""Route re-optimisation with OR-Tools."""
