"""Resumable block output: a product written block by block, finished as a COG or an h5.

A :class:`BlockStore` keeps the blocks of a ``(C, H, W)`` product in a raw band-sequential
file next to the output, ``.NAME.tta-resume-KEY.part``, and a journal
``.NAME.tta-resume-KEY.journal`` (a JSON header line, then the id of each finished block,
appended after the block's bytes are written and synced). ``KEY`` is a hash of the inputs and
options (see :func:`resume_key`): a rerun of the same command finds the finished blocks and
continues; a run with other inputs or options discards another run's leftovers for the same
output. The part files follow the hidden ``.NAME.tta-...part`` naming of
:mod:`tta.io.atomic` but are not removed as stale: they are kept until the product is
finished, and only a finished product is renamed onto the output path (through
:func:`~tta.io.atomic.atomic_output`), so a killed run (Ctrl-C or ``kill -9``) never leaves a
partial file at the output path.

Finishing reads the part through a GDAL VRT (``VRTRawRasterBand``) and writes:

* GeoTIFF: GDAL's COG driver through ``rasterio.shutil.copy`` (tiled 256², deflate with the
  horizontal predictor, overviews by averaging, Cloud-Optimized layout), with the
  georeferencing, band descriptions and nodata value;
* HDF5: the toolkit's product layout (datasets ``ms``, ``pan``, ``fused``, chunked and
  gzip-compressed, copied window by window; root attributes as :func:`tta.io.h5.write_h5`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from tta.errors import InputError, OutputError

__all__ = ["BlockStore", "resume_key"]

_TAG = ".tta-resume-"
_GDAL_TYPES = {"uint16": "UInt16", "float32": "Float32"}
#: GDAL block cache while finishing (MiB): bounds the memory of the COG copy.
CACHE_MB = 256


def resume_key(files: Iterable[str | Path], options: dict[str, Any]) -> str:
    """16 hex digits identifying a run: the input files (resolved path, size, mtime) and
    the options (any JSON-serialisable dict)."""
    items = []
    for f in files:
        p = Path(f)
        st = p.stat() if p.exists() else None
        items.append([str(p.resolve()), st.st_size if st else None,
                      st.st_mtime_ns if st else None])
    text = json.dumps({"files": items, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class BlockStore:
    """The finished blocks of one product (see the module docstring).

    Args:
        output: The product's final path.
        key: :func:`resume_key` of the run.
        shape: ``(C, H, W)``.
        dtype: ``"uint16"`` or ``"float32"``.
        stamp: Anything that must match for blocks to be reused (e.g. a digest of the adapted
            network); a journal with another stamp is discarded.
    """

    def __init__(self, output: str | Path, key: str, shape: tuple[int, int, int], dtype: str,
                 stamp: str = "") -> None:
        if dtype not in _GDAL_TYPES:
            raise InputError(f"output dtype must be one of {', '.join(_GDAL_TYPES)}, "
                             f"got {dtype!r}")
        self.output = Path(output)
        self.key = key
        self.shape = tuple(int(v) for v in shape)
        self.dtype = np.dtype(dtype)
        self.stamp = stamp
        base = self.output.parent / f".{self.output.name}{_TAG}{key}"
        self.part = base.with_name(base.name + ".part")
        self.journal = base.with_name(base.name + ".journal")
        self.vrt = base.with_name(base.name + ".vrt")
        self.done: set[int] = set()
        self.resumed = 0
        self.discarded: list[Path] = []
        self._fd: int | None = None
        self._jf: Any = None

    # ------------------------------------------------------------------ lifecycle
    def _header(self) -> dict[str, Any]:
        return {"key": self.key, "shape": list(self.shape), "dtype": self.dtype.name,
                "stamp": self.stamp}

    def _leftovers(self) -> list[Path]:
        prefix = f".{self.output.name}{_TAG}"
        with contextlib.suppress(OSError):
            return [p for p in self.output.parent.iterdir()
                    if p.name.startswith(prefix) and not p.name.startswith(prefix + self.key)]
        return []

    def open(self) -> BlockStore:
        """Lock the journal, load the finished blocks (if the header matches), open the part.

        Raises:
            OutputError: Another process is writing this product, or the folder is not
                writable.
        """
        for p in self._leftovers():  # another run's leftovers for this output
            with contextlib.suppress(OSError):
                p.unlink()
                self.discarded.append(p)
        try:
            self._jf = open(self.journal, "a+")
            fcntl.flock(self._jf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"{self.output}: another run is writing this product "
                              f"(journal {self.journal.name} is locked)") from None
        except OSError as exc:
            raise OutputError(f"{self.output}: cannot write the journal ({exc.strerror})") \
                from None
        self._jf.seek(0)
        lines = self._jf.read().splitlines()
        header = None
        with contextlib.suppress(ValueError, IndexError):
            header = json.loads(lines[0])
        size = int(np.prod(self.shape)) * self.dtype.itemsize
        if header == self._header() and self.part.exists() and \
                self.part.stat().st_size == size:
            for line in lines[1:]:
                with contextlib.suppress(ValueError):
                    self.done.add(int(line))
        else:
            self._jf.seek(0)
            self._jf.truncate()
            self._jf.write(json.dumps(self._header()) + "\n")
            self._flush_journal()
            with contextlib.suppress(FileNotFoundError):
                self.part.unlink()
        self.resumed = len(self.done)
        self._fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(self._fd, size)  # sparse: unwritten blocks take no disk space
        return self

    def close(self) -> None:
        """Release the part and the journal lock (the files stay for a resume)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._jf is not None:
            self._jf.close()
            self._jf = None

    def remove(self) -> None:
        """Close and delete the part, the journal and the VRT."""
        self.close()
        for p in (self.part, self.journal, self.vrt):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def __enter__(self) -> BlockStore:
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _flush_journal(self) -> None:
        self._jf.flush()
        os.fsync(self._jf.fileno())

    # ------------------------------------------------------------------ blocks
    def _offsets(self, y: int, x: int, h: int, w: int) -> Iterable[tuple[int, int, int]]:
        c, big_h, big_w = self.shape
        item = self.dtype.itemsize
        for b in range(c):
            for row in range(y, y + h):
                yield b, row - y, ((b * big_h + row) * big_w + x) * item

    def write(self, block: int, y: int, x: int, data: np.ndarray) -> None:
        """Write a finished block (``(C, h, w)`` at PAN ``(y, x)``) and journal it."""
        data = np.ascontiguousarray(data, dtype=self.dtype)
        c, h, w = data.shape
        if c != self.shape[0] or y + h > self.shape[1] or x + w > self.shape[2]:
            raise ValueError(f"block {data.shape} at {(y, x)} outside {self.shape}")
        for b, r, off in self._offsets(y, x, h, w):
            os.pwrite(self._fd, data[b, r].tobytes(), off)
        os.fdatasync(self._fd)
        self._jf.write(f"{block}\n")
        self._flush_journal()
        self.done.add(block)

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """A window ``(C, h, w)`` of the part."""
        out = np.empty((self.shape[0], h, w), dtype=self.dtype)
        n = w * self.dtype.itemsize
        for b, r, off in self._offsets(y, x, h, w):
            out[b, r] = np.frombuffer(os.pread(self._fd, n, off), dtype=self.dtype)
        return out

    # ------------------------------------------------------------------ finishing
    def _write_vrt(self, transform: Any, crs: str | None, bands: tuple[str, ...],
                   nodata: float | None) -> None:
        c, h, w = self.shape
        item = self.dtype.itemsize
        parts = [f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">']
        if crs:
            from rasterio.crs import CRS

            parts.append(f"<SRS>{escape(CRS.from_user_input(crs).to_wkt())}</SRS>")
        if transform is not None:
            t = transform
            parts.append(f"<GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, "
                         f"{t.e!r}</GeoTransform>")
        for b in range(c):
            parts.append(
                f'<VRTRasterBand dataType="{_GDAL_TYPES[self.dtype.name]}" band="{b + 1}" '
                'subClass="VRTRawRasterBand">'
                + (f"<Description>{escape(bands[b])}</Description>" if b < len(bands) else "")
                + (f"<NoDataValue>{nodata!r}</NoDataValue>" if nodata is not None else "")
                + f'<SourceFilename relativeToVRT="1">{escape(self.part.name)}</SourceFilename>'
                f"<ImageOffset>{b * h * w * item}</ImageOffset><PixelOffset>{item}</PixelOffset>"
                f"<LineOffset>{w * item}</LineOffset><ByteOrder>LSB</ByteOrder></VRTRasterBand>")
        parts.append("</VRTDataset>")
        self.vrt.write_text("\n".join(parts))

    def finish_cog(self, inputs: Iterable[str | Path], *, transform: Any, crs: str | None,
                   bands: tuple[str, ...], nodata: float | None, overwrite: bool) -> Path:
        """Write the product as a Cloud-Optimized GeoTIFF at the output path, atomically;
        then remove the part, journal and VRT."""
        import rasterio
        import rasterio.shutil

        from tta.io.atomic import atomic_output
        from tta.io.geotiff import _quiet, _writing

        self._write_vrt(transform, crs, bands, nodata)
        predictor = 3 if self.dtype.name == "float32" else 2
        with (_writing(self.output), atomic_output(self.output, inputs, overwrite=overwrite)
              as tmp, rasterio.Env(GDAL_CACHEMAX=CACHE_MB, GDAL_NUM_THREADS=1), _quiet()):
            rasterio.shutil.copy(str(self.vrt), str(tmp), driver="COG", COMPRESS="DEFLATE",
                                 PREDICTOR=predictor, BLOCKSIZE=256, OVERVIEWS="AUTO",
                                 RESAMPLING="AVERAGE", BIGTIFF="IF_SAFER")
        self.remove()
        return self.output

    def finish_h5(self, inputs: Iterable[str | Path], *, read_window: Callable[..., Any],
                  attrs: dict[str, Any], ms_size: tuple[int, int], ratio: int,
                  overwrite: bool, rows: int = 1024) -> Path:
        """Write the toolkit's h5 product (``ms``, ``pan``, ``fused``) at the output path,
        atomically, copying ``rows`` PAN rows at a time (``read_window(window)`` gives the
        scene window); then remove the part and the journal."""
        import h5py

        from tta.io.atomic import atomic_output

        c, big_h, big_w = self.shape
        h, w = ms_size
        step = max(1, rows // ratio)
        kw = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        with atomic_output(self.output, inputs, overwrite=overwrite) as tmp, \
                h5py.File(tmp, "w") as f:
            ms = f.create_dataset("ms", (1, c, h, w), "float32",
                                  chunks=(1, c, min(h, 256), min(w, 256)), **kw)
            pan = f.create_dataset("pan", (1, 1, big_h, big_w), "float32",
                                   chunks=(1, 1, min(big_h, 512), min(big_w, 512)), **kw)
            fused = f.create_dataset("fused", (1, c, big_h, big_w), "float32",
                                     chunks=(1, c, min(big_h, 256), min(big_w, 256)), **kw)
            mask = None
            for y in range(0, h, step):
                hh = min(step, h - y)
                scene = read_window((y, 0, hh, w))
                ms[0, :, y:y + hh] = scene.ms
                pan[0, 0, ratio * y:ratio * (y + hh)] = scene.pan
                fused[0, :, ratio * y:ratio * (y + hh)] = self.read(ratio * y, 0, ratio * hh,
                                                                    big_w)
                if scene.nodata is not None:
                    if mask is None:
                        mask = f.create_dataset("nodata", (1, 1, big_h, big_w), "uint8",
                                                chunks=(1, 1, min(big_h, 512),
                                                        min(big_w, 512)), **kw)
                    mask[0, 0, ratio * y:ratio * (y + hh)] = scene.nodata
            for k, v in attrs.items():
                if v is not None:
                    f.attrs[k] = v
        self.remove()
        return self.output
