"""Hooks on a model's modules: capture what a forward pass computes at named places."""
