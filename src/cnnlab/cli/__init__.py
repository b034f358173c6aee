"""The `cnnlab` command line: parsing arguments and wiring library parts together, nothing else."""
