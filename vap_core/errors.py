"""Errors raised for bad files and bad inputs. Every message says what is wrong and what to do."""


class VAPError(Exception):
    """Base of every error raised by vap_core."""


class NotACheckpointError(VAPError, ValueError):
    """The file or folder is not what was asked for (not a VAP checkpoint, not an expert file, a pickle...)."""


class MissingShardError(VAPError, FileNotFoundError):
    """A file that a checkpoint's index names, or the checkpoint itself, is not on disk."""


class CorruptCheckpointError(VAPError, ValueError):
    """A safetensors file that cannot be read: truncated, damaged, or not safetensors at all."""


class CheckpointMismatchError(VAPError, ValueError):
    """A checkpoint whose tensors do not match the model: missing, unexpected or wrongly shaped tensors."""


class IncompatibleExpertError(VAPError, ValueError):
    """An expert whose width, heads or layer indices do not fit the backbone it is paired with."""


class InputError(VAPError, ValueError):
    """Model inputs with wrong shapes, channel counts or batch sizes."""


def check_fit(where: str, sizes, layers, num_layers: int, advice: str):
    """Raise IncompatibleExpertError naming each (what, the expert's, the backbone's) size that differs and the
    expert layers beyond the backbone's depth, then `advice`."""
    problems = [f"{what} {mine} vs the backbone's {theirs}" for what, mine, theirs in sizes if mine != theirs]
    outside = [i for i in layers if i >= num_layers]
    if outside:
        problems.append(f"expert layers {outside} beyond the backbone's {num_layers} layers")
    if problems:
        raise IncompatibleExpertError(f"{where} does not fit this backbone: {'; '.join(problems)}. {advice}")


def broadcast_rows(name: str, tensor, b: int):
    """A reference input with 1 row or b rows, as b rows (the target's batch)."""
    if tensor.shape[0] not in (1, b):
        raise InputError(f"{name} has batch {tensor.shape[0]}; expected 1 or {b} (the batch of x).")
    return tensor.expand(b, *tensor.shape[1:])


# ComfyUI shows an error's type as module.name; the pack's module path is a filesystem path there.
for _error in (VAPError, NotACheckpointError, MissingShardError, CorruptCheckpointError, CheckpointMismatchError,
               IncompatibleExpertError, InputError):
    _error.__module__ = "video_as_prompt"
