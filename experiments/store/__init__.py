"""Where a cell's results live on disk: files and atomic writes (files), checkpoints, locks, and
the results of a table's prepare step (prepared). Names and keys come from experiments.schema."""
