"""Training one cell: ``cell.run_cell`` (lock, identity check, resume, fit, record), built from
``trainer`` (data, model, optimizer, Lightning Trainer), ``monitor`` (the callback writing
metrics.jsonl), ``record`` (result.json), ``stop`` (SIGTERM/SIGINT), ``mirror`` (W&B) and
``preflight`` (the checks made once before any worker starts)."""
