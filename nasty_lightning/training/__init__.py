"""Fine-tuning: the Lightning module, its metrics, callbacks, checkpoint files, progress lines, the run's log and
warm starts."""
