"""BioImage Model Zoo packages (model description format 0.5): export and import.

:func:`export_package` writes a checkpoint as a zoo package (``rdf.yaml`` with
``pytorch_state_dict``, ``torchscript`` and ``onnx`` weights, test tensors, cover, README).
:func:`load_package` runs a zoo package (zip or folder) with :func:`napari_segnets.inference.predict`;
:func:`napari_segnets.checkpoints.load` calls it for such paths. Neither imports ``bioimageio.spec``:
it is used (when installed) only to validate what was written.
"""

from __future__ import annotations

from ._export import export_package, export_package_iter
from ._import import is_package, load_package, read_description

__all__ = ["ZooModel", "export_package", "export_package_iter", "is_package", "load_package", "read_description"]


def __getattr__(name):  # torch is imported only when the class is asked for
    if name == "ZooModel":
        from ._runner import ZooModel

        return ZooModel
    raise AttributeError(name)
