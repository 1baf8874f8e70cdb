"""Numba kernels: plain functions over arrays that write into caller-allocated outputs. They check nothing; the layers
and engines above them validate every argument first (Numba does not check array bounds)."""
