"""Load tests: scenarios, traffic, probes, verdicts and reports of `fleet load run`."""
