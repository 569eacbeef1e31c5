"""Fleet simulator, load generator, scenario scoring and benchmarks."""
