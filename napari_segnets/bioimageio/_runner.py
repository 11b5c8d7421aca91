"""A zoo model (ONNX or TorchScript weights) as a module that ``predict`` can tile."""

from __future__ import annotations

import io
import math

import torch

from ..errors import CheckpointError, InputError
from ._ops import output_ops


def _valid(n: int, lo: int, step: int) -> int:
    """The smallest size ``lo + k * step`` that is at least ``n`` (``lo`` for fixed sizes)."""
    if step == 0:
        if n > lo:
            raise InputError(f"This zoo model takes windows of exactly {lo} pixels: use tile <= {lo}.")
        return lo
    return lo if n <= lo else lo + math.ceil((n - lo) / step) * step


class ZooModel(torch.nn.Module):
    """A BioImage Model Zoo model (ONNX or TorchScript) with the attributes ``predict`` tiles by.

    Windows are padded (mirrored) at their bottom/right up to the next size the package accepts
    and cropped back; the declared postprocessing runs inside ``forward`` (so
    ``output_activation`` is ``"none"``). ``halo`` is the declared output halo or, where none is
    declared, the reach of a one-pixel change measured once on random input.
    """

    arch = "bioimageio"
    task = "segment"
    in_channels = 1
    output_activation = "none"

    def __init__(self, rdf, files, fmt, entry, inp, out, kinds_in, kinds_out, device):
        super().__init__()
        from ._import import _size_rule, axis_id

        self.name = str(rdf.get("name", "zoo model"))
        self.weight_format = fmt
        self.kinds_in, self.kinds_out = kinds_in, kinds_out
        axes = {axis_id(a): a for a in inp["axes"] if a.get("type") == "space"}
        self.rules = (_size_rule(axes["y"]), _size_rule(axes["x"]))
        self.batch_one = any(a.get("type") == "batch" and a.get("size") == 1 for a in inp["axes"])
        steps = [s for _, s in self.rules if s]
        self.size_multiple = math.lcm(*steps) if len(steps) == 2 else (steps[0] if steps else 1)
        fixed = [lo for lo, s in self.rules if s == 0]
        self.max_tile = min(fixed) if fixed else None
        chan = next((a for a in out["axes"] if a.get("type") == "channel"), None)
        self.out_channels = (len(chan.get("channel_names") or []) or int(chan.get("size", 1))) if chan else 1
        self.post = output_ops(out.get("postprocessing") or [])
        self.config = {"arch": self.arch, "name": self.name, "weight_format": fmt}
        data = files.read(entry["source"], entry.get("sha256"))
        self.session = None
        if fmt == "onnx":
            import onnxruntime as ort

            providers = ["CPUExecutionProvider"]
            if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            self.session = ort.InferenceSession(data, providers=providers)
            self.input_name = self.session.get_inputs()[0].name
        else:
            self.ts = torch.jit.load(io.BytesIO(data), map_location="cpu")
        halos = [int(a.get("halo", 0) or 0) for a in out["axes"] if a.get("type") == "space"]
        self.halo = max(halos) if any(halos) else self.measure_halo()
        self.halo_declared = any(halos)

    def __deepcopy__(self, memo):  # stateless between calls: predict's prepared copy may share it
        return self

    def _to_declared(self, x):
        """(N, 1, H, W) -> the declared input layout."""
        names = {"b": 0, "c": 1, "y": 2, "x": 3}
        keep = [k for k in self.kinds_in if k in names]
        t = x
        for k, i in (("c", 1), ("b", 0)):
            if k not in self.kinds_in:
                t = t.squeeze(i)
                names = {n: (j - 1 if j > i else j) for n, j in names.items() if n != k}
        return t.permute(*[names[k] for k in keep])

    def _from_declared(self, y):
        """The declared output layout -> (N, C, H, W)."""
        kinds = list(self.kinds_out)
        for k in ("b", "c"):
            if k not in kinds:
                y = y.unsqueeze(0)
                kinds.insert(0, k)
        return y.permute(*[kinds.index(k) for k in ("b", "c", "y", "x")])

    def _run(self, x):
        if self.session is not None:
            arr = x.detach().float().cpu().contiguous().numpy()
            y = torch.from_numpy(self.session.run(None, {self.input_name: arr})[0])
            return y.to(x.device)
        return self.ts(x)

    def forward(self, x):
        n, _, h, w = x.shape
        th, tw = _valid(h, *self.rules[0]), _valid(w, *self.rules[1])
        if (th, tw) != (h, w):
            mode = "reflect" if th - h < h and tw - w < w else "replicate"
            x = torch.nn.functional.pad(x, (0, tw - w, 0, th - h), mode=mode)
        x = x.float().contiguous()
        if self.batch_one and n > 1:
            y = torch.cat([self._from_declared(self._run(self._to_declared(x[i : i + 1]))) for i in range(n)])
        else:
            y = self._from_declared(self._run(self._to_declared(x)))
        if y.shape[-2:] != (th, tw):
            raise CheckpointError(f"The zoo model returned {tuple(y.shape)} for a {th} x {tw} window.")
        return self.post(y[..., :h, :w].float())

    @torch.inference_mode()
    def measure_halo(self) -> int:
        """The farthest output pixel a one-pixel change of the input reaches (on random input)."""
        size = tuple(_valid(max(lo, 256), lo, s) if s else lo for lo, s in self.rules)
        gen = torch.Generator().manual_seed(0)
        x = torch.rand((1, 1, *size), generator=gen)
        cy, cx = size[0] // 2, size[1] // 2
        y0 = self.forward(x)
        x[..., cy, cx] += 1.0
        changed = (self.forward(x) - y0).abs().amax(dim=(0, 1)) > 1e-6
        ys, xs = torch.nonzero(changed, as_tuple=True)
        if len(ys) == 0:
            return 0
        return int(max((ys - cy).abs().max(), (xs - cx).abs().max()))
