"""Platforms the verifier can evaluate in-process: backends of Benchmark API v1 and their party kits.

`weak` is a deliberately insecure negative control (never a product); `sampan` and `flower` wrap real platforms.
Each module loads only when named (`sampan.verify.kits.get_kit`), so an optional extra is needed only when used.
"""
