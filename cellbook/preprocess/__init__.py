"""Preprocessing: one module per data family (scrna, bulk, imaging, spectral)."""
