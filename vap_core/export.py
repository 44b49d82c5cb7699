"""Pull the VAP expert out of a released checkpoint into the pack's expert-only safetensors file.

    python -m vap_core.export SRC DST --dtype bf16

Only expert tensors are read, one at a time; the ~33 GB backbone is never loaded.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .checkpoint import DTYPES, TensorSource
from .errors import MissingShardError, NotACheckpointError, VAPError
from .expert import FORMAT, expert_source
from .loading import check_tensors, convert_dtype, module_shapes, storage_dtype
from .released import read_released
from .safetensors_writer import write_streaming

EXPORT_DTYPES = ("bf16", "fp16", "fp32", "fp8_e4m3fn")


def export_expert(src, dst, dtype: str = "bf16", progress=None) -> dict:
    """Write the expert of the released checkpoint `src` to `dst`. Returns the file's metadata."""
    check_destination(Path(dst))
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(EXPORT_DTYPES)}")
    refuse_expert_file(Path(src))
    released = read_released(src)  # reads the config and the headers, no tensor yet
    check_outside(Path(dst), released.tensors.files[0].parent)
    source = expert_source(released)
    tensors, names = source.tensors, source.names
    check_tensors(module_shapes(source.empty()), {w: tensors.shape(n) for w, n in names.items()}, f"{src} (expert)")

    out_dtype = {w: storage_dtype(w, tensors.shape(n), DTYPES[dtype]) for w, n in names.items()}
    specs = [(w, out_dtype[w], tensors.shape(names[w])) for w in sorted(names)]
    meta = source.metadata(dtype)
    total, done = sum(tensors.nbytes(n) for n in names.values()), 0

    def produce(wan_name):
        nonlocal done
        t = convert_dtype(tensors.read(names[wan_name]), out_dtype[wan_name])
        done += tensors.nbytes(names[wan_name])
        if progress:
            progress(done, total)
        return t

    write_streaming(dst, specs, produce, meta)
    return meta


def check_destination(dst: Path):
    """Refuse a DST that cannot be written, before anything is read: a missing folder is more likely
    a typo than a wish for a new one."""
    if dst.is_dir():
        raise NotACheckpointError(f"DST {dst} is a folder: name the file to write, e.g. {dst / 'vap_expert_bf16.safetensors'}.")
    if dst.suffix != ".safetensors":
        raise NotACheckpointError(f"DST {dst} must be a .safetensors file (the only format this pack writes or "
                                  f"reads), e.g. {dst.with_suffix('.safetensors')}. Nothing was read.")
    if not dst.parent.is_dir():
        raise MissingShardError(f"the folder of DST {dst} ({dst.parent}) does not exist. Nothing was read. Check the "
                                f"path, or create the folder first (mkdir -p {dst.parent}).")


def check_outside(dst: Path, weights_folder: Path):
    """Refuse a DST inside the folder of the checkpoint's weights (transformer/): a stray file there would be
    seen by a later scan of its shards or index, or could overwrite one."""
    folder = weights_folder.resolve()
    if dst.resolve().is_relative_to(folder):
        raise NotACheckpointError(f"DST {dst} is inside the checkpoint it exports from ({folder}); nothing was "
                                  "written. Write the expert elsewhere, e.g. ComfyUI/models/vap/.")


def refuse_expert_file(src: Path):
    if src.is_file() and src.suffix == ".safetensors":
        meta = TensorSource([src]).metadata
        if meta.get("format") == FORMAT:
            raise NotACheckpointError(
                f"SRC {src} is already an exported expert file (layers {meta.get('layers')}, {meta.get('dtype')}, "
                f"from {meta.get('source')}); use it directly in models/vap: there is nothing to export.")


class _Progress:
    def __init__(self, stream=sys.stderr):
        self.stream, self.last, self.start = stream, -1, time.monotonic()

    def __call__(self, done, total):
        pct = int(100 * done / max(total, 1))
        if pct != self.last and (pct % 5 == 0 or done == total):
            self.last = pct
            self.stream.write(f"\rexporting expert: {pct:3d}%  {done / 1e9:.2f}/{total / 1e9:.2f} GB  "
                              f"{time.monotonic() - self.start:.0f}s")
            if done == total:
                self.stream.write("\n")
            self.stream.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vap_core.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="released checkpoint: its folder, its transformer/ folder, or its weights file")
    parser.add_argument("dst", help="expert file to write (.safetensors), e.g. ComfyUI/models/vap/vap_expert_bf16.safetensors")
    parser.add_argument("--dtype", choices=EXPORT_DTYPES, default="bf16",
                        help="storage dtype; fp8_e4m3fn stores weight matrices as plain float8 (default: bf16)")
    args = parser.parse_args(argv)
    try:
        meta = export_expert(args.src, args.dst, args.dtype, progress=_Progress())
    except VAPError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst}: expert layers {meta['layers']}, {args.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
