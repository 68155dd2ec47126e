"""Training: the trainer, optimizers, learning-rate schedules, a run's settings, MPI
data parallelism, batch staging and the per-layer profiler. The top library floor."""
