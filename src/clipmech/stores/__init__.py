"""Resumable, atomically published zarr stores of activations, through xarray."""
