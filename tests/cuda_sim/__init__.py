"""Tests of the CUDA backend in numba's simulator (run by tests/test_cuda_simulator.py)."""
