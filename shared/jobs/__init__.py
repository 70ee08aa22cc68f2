"""Jobs: manifests and definitions, EVENT/COST log lines, instances."""
