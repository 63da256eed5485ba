"""Measuring what was built: offline and live evaluation, reports and plots, throughput benchmarks."""
