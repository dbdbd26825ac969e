"""Foundations: configuration, file locations, logs and metrics endpoint, stage processes. Imports no other project package."""
