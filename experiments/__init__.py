"""What a grid cell is and how it runs: ``schema`` (what its files hold), ``scales`` (its
settings), ``grid/`` (every table's cells), ``run/`` (training one cell), ``store/`` (its files
on disk), ``measure/`` (prepare steps), ``identity``, ``optimizers``, ``baselines/`` and
``benchmarks/``. docs/architecture.md walks through them."""
