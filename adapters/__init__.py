"""Adapter modules attached at a network's feature-extractor | channel-mapper interface.

Populated by the adaptation-engine work (Feature Tailor, CAT, SWIFT masks and baselines);
shipped as its own top-level package so third parties can register adapters beside ours.
"""

__all__: list[str] = []
