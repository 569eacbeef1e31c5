"""ETA agent: learned arrival times of remaining stops, published per route."""
