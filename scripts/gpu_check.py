"""``python -m bizoo.scripts.gpu_check OUT_DIR [--quick] [--skip-tests] [--budget SECONDS] [--steps ...]``: the one
script to run on a machine with a GPU, under the name it is documented and scripted with. Its code, and its help, are
``bizoo.scripts.bench.gpu_check``, beside the benchmarks it runs; this module only runs it."""

from .bench.gpu_check import PROG, add_arguments, main, run

__all__ = ["PROG", "add_arguments", "main", "run"]

if __name__ == "__main__":
    raise SystemExit(main())
