"""Prints one line at once: what the start-latency benchmarks wait for."""
print("trainer started", flush=True)
