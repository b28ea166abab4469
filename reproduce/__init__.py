"""The ``python -m reproduce`` CLI: run the paper's tables (locally or on Slurm) and render
paper_tables/ from result files or W&B runs."""
