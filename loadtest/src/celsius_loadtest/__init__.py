"""Load test and comparison report for celsius."""
