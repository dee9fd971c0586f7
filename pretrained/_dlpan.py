"""Records of the DLPan-Toolbox checkpoints (provenance only; the files are not shipped).

The files are the pretrained networks published in liangjiandeng/DLPan-Toolbox,
``01-DL-toolbox(Pytorch)/UDL/pretrained-model/``, trained by its authors on the PanCollection
training set of each sensor with inputs divided by 2047 (``cfg.img_range = 2047.0``).
"""

from __future__ import annotations

from pretrained.registry import WeightsRecord, register_weights

__all__ = ["dlpan_weights"]

_BANDS = {
    "WV3": ("coastal", "blue", "green", "yellow", "red", "rededge", "nir1", "nir2"),
    "WV2": ("coastal", "blue", "green", "yellow", "red", "rededge", "nir1", "nir2"),
    "QB": ("blue", "green", "red", "nir"),
}
_SOURCE = ("https://github.com/liangjiandeng/DLPan-Toolbox "
           "01-DL-toolbox(Pytorch)/UDL/pretrained-model/")


def dlpan_weights(arch: str, digests: dict[str, str]) -> tuple[WeightsRecord, ...]:
    """Register one record per sensor for ``dlpan/<sensor>/<arch>.pth``.

    Args:
        arch: Registered model name (also the file stem).
        digests: ``{sensor name: sha256}``.
    """
    return tuple(
        register_weights(WeightsRecord(
            arch=arch,
            file=f"dlpan/{sensor.lower()}/{arch}.pth",
            sha256=sha,
            sensor=sensor,
            bands=_BANDS[sensor],
            ratio=4,
            max_value=2047.0,
            training_data=f"PanCollection {sensor} training set (reduced resolution, Wald)",
            licence="GPL-2.0",
            source=_SOURCE,
            origin="dlpan",
        ))
        for sensor, sha in digests.items()
    )
