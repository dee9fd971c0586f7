"""Pretrained pansharpening architectures, model cards and weights (the model zoo).

Populated by the zoo work; shipped as its own top-level package so weights and cards travel
with the wheel.
"""

__all__: list[str] = []
