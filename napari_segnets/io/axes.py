"""One axis model for every reader: declared axes -> (Z, Y, X), voxel sizes moved with them.

Readers hand over the array as stored plus one letter per stored axis, as the file declares it:
``z``/``y``/``x`` space, ``c`` channel, ``t`` time, ``s`` samples of a pixel (colour or alpha),
anything else (tifffile's ``i``/``q``, ...) an unnamed stack axis. :func:`to_zyx` squeezes
singleton axes, turns RGB samples into grey, moves Y and X last with the one remaining axis as
the stack, and refuses what cannot be one single-channel 2D/3D image, in one sentence each.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import InputError

_QUIET_STACK = "zqi"  # z itself, and tifffile's unknown/page axes: the stack by construction


def check_dtype(dtype, name: str) -> None:
    """Refuse pixel types that are not numbers: strings, records, objects, dates, complex."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise InputError(f"{name} holds complex numbers; save the magnitude as a real image first.")
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise InputError(
            f"{name} holds {dtype} values (text, records or objects), not pixel intensities; "
            "choose an image dataset."
        )


def _upper(letters) -> str:
    return ", ".join(a.upper() for a in letters)


def _take(array, axis: int, index: int):
    return array[tuple(index if i == axis else slice(None) for i in range(array.ndim))]


def to_zyx(
    array,
    axes: str | None,
    per_axis: dict,
    notes: list[str],
    *,
    name: str,
    rgb: bool = False,
    alpha: bool = False,
):
    """Reorder ``array`` to (Y, X) or (Z, Y, X); returns (array, axes, per_axis).

    Parameters
    ----------
    array : numpy or dask array, as stored
    axes : str or None
        One letter per stored axis, or None when the file declares nothing.
    per_axis : dict
        Lists with one entry per stored axis (voxel size, scale); moved with the axes.
    notes : list
        Where readings worth knowing are written ("RGB converted to grey", "T read as z").
    rgb, alpha : bool
        The sample axis (``s``, else the last) holds RGB(A) colour, or grey + alpha.
    """
    from ._common import _rgb_to_grey

    shape = tuple(int(s) for s in array.shape)
    letters = list(axes.lower()) if axes and len(axes) == len(shape) else None
    declared = letters is not None
    letters = letters or ["?"] * len(shape)
    per_axis = {k: list(v) for k, v in per_axis.items() if v is not None and len(v) == len(shape)}

    def drop(axis: int):
        nonlocal array, shape
        array = _take(array, axis, 0)
        shape = shape[:axis] + shape[axis + 1 :]
        del letters[axis]
        for v in per_axis.values():
            del v[axis]

    guessed = ""
    if not declared and len(shape) == 3 and shape[-1] <= 4 < min(shape[:2]):
        # A stack of 3-pixel-wide slices is implausible: a small last axis holds channels.
        letters[:] = ["y", "x", "c"]
        declared = True
        guessed = f" (the file does not name its axes, so its shape {shape} was read as Y, X, C)"
    # 1. Samples of one pixel: colour -> grey, grey + alpha -> grey, anything else is refused.
    if rgb or alpha:
        si = letters.index("s") if "s" in letters else len(shape) - 1
        n = shape[si]
        if alpha and n == 2:
            drop(si)
            notes.append("Grey + alpha image: the alpha (transparency) samples were dropped.")
        elif rgb and n in (3, 4):
            if si != len(shape) - 1:  # planar: samples stored before the rows
                order = [i for i in range(len(shape)) if i != si] + [si]
                array = array.transpose(order)
                letters[:] = [letters[i] for i in order]
                for k, v in per_axis.items():
                    per_axis[k] = [v[i] for i in order]
                shape = tuple(shape[i] for i in order)
            kind = "RGBA" if n == 4 else "RGB"
            note = f"{kind} image converted to grey (luminance); the colour was dropped."
            notes.append(note)
            warnings.warn(f"{name}: {note}", UserWarning, stacklevel=4)
            array = _rgb_to_grey(array)
            shape = shape[:-1]
            del letters[-1]
            for v in per_axis.values():
                del v[-1]
        elif n != 1:
            raise InputError(
                f"{name} has {n} colour samples per pixel; only grey, RGB or RGBA images can be read."
            )
    if "s" in letters and shape[letters.index("s")] > 1:
        n = shape[letters.index("s")]
        raise InputError(
            f"{name} has {n} samples per pixel that are not RGB colour; "
            "save one sample (channel) per file as a grey image."
        )
    # 2. Singleton axes carry nothing (keep two so a 1 x N image stays an image).
    # Y and X are dropped last, leading axes first (a 1 x N image stays (1, N)).
    while len(shape) > 2 and 1 in shape:
        ones = [i for i, n in enumerate(shape) if n == 1]
        drop(min(ones, key=lambda i: (letters[i] in "yx", i)))
    # 3. Channels and extra dimensions cannot become one grey stack.
    if "c" in letters:
        n = shape[letters.index("c")]
        extra = f" and {len(shape)} dimensions (axes {_upper(letters)})" if len(shape) > 3 else ""
        raise InputError(
            f"{name} has {n} channels{extra}{guessed}; only single-channel stacks can be read, "
            "so save one channel as its own file."
        )
    if len(shape) > 3:
        ax = f" (axes {''.join(letters).upper()})" if declared else ""
        raise InputError(
            f"{name} has {len(shape)} dimensions {shape}{ax}; only 2D (Y, X) or 3D (Z, Y, X) "
            "single-channel stacks can be read, so save one channel/time point as its own file."
        )
    # 4. Y and X last, the remaining axis (if any) first, as the stack.
    if declared and "y" in letters and "x" in letters:
        iy, ix = letters.index("y"), letters.index("x")
        rest = [i for i in range(len(shape)) if i not in (iy, ix)]
        order = rest + [iy, ix]
        if order != list(range(len(shape))):
            notes.append(
                f"The file stores its axes as {_upper(letters)}; they were reordered to "
                f"{_upper([letters[i] for i in order])}."
            )
            array = array.transpose(order)
            letters[:] = [letters[i] for i in order]
            for k, v in per_axis.items():
                per_axis[k] = [v[i] for i in order]
            shape = tuple(shape[i] for i in order)
        if rest and letters[0] not in _QUIET_STACK:
            notes.append(
                f"Axis {letters[0].upper()} (size {shape[0]}) is read as the stack (z) axis."
            )
    elif len(shape) == 3 and declared:
        notes.append(
            f"The file's axes {_upper(letters)} name no Y and X; they were read as Z, Y, X."
        )
    elif declared and set(letters) != {"y", "x"}:
        notes.append(f"The file's axes {_upper(letters)} were read as Y, X.")
    return array, "zyx"[-len(shape) :], per_axis
