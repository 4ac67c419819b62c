"""Exceptions for bad input that the CLIs report in one line; importable without jax or tensorflow."""


class WeightsError(ValueError):
    """A checkpoint that does not fit the network; the message names the file and every bad key."""
