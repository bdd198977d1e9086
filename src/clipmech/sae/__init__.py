"""Top-k sparse autoencoders (methods.md Sec. 7)."""
