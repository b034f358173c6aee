"""`python -m cnnlab` (also what `torchrun -m cnnlab train ...` runs)."""

from cnnlab.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
