"""Dev-only compatibility shim for the reference `imagecorruptions==1.1.2` on today's numpy / scikit-image / setuptools.

The package (a) imports `pkg_resources` (gone with setuptools >= 80), (b) calls `skimage.filters.gaussian(multichannel=)`
(removed in scikit-image 0.19+; now `channel_axis`), (c) uses `np.float_` (removed in numpy 2) and (d) imports
`scipy.ndimage.interpolation`. We patch these at run time, without touching site-packages, and expose
`reference_corrupt(x, name, severity, seed)` that runs the reference image by image on a torch batch.
"""
from __future__ import annotations
import sys, types, importlib, importlib.util
from pathlib import Path
import numpy as np
import torch

def available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ('imagecorruptions', 'skimage', 'cv2', 'scipy', 'PIL'))

def _resource_filename(pkg, path):
    spec = importlib.util.find_spec(pkg.split('.')[0])
    return str(Path(list(spec.submodule_search_locations)[0]) / path)

_mod = None
def load():
    "Import `imagecorruptions` with the run-time patches; return the package."
    global _mod
    if _mod is not None: return _mod
    if 'pkg_resources' not in sys.modules and importlib.util.find_spec('pkg_resources') is None:
        sys.modules['pkg_resources'] = types.SimpleNamespace(resource_filename=_resource_filename)
    if importlib.util.find_spec('scipy.ndimage.interpolation') is None:
        import scipy.ndimage; sys.modules['scipy.ndimage.interpolation'] = scipy.ndimage
    if not hasattr(np, 'float_'): np.float_ = np.float64
    import skimage.filters
    _gaussian = skimage.filters.gaussian
    def gaussian(image, *args, multichannel=None, **kw):
        if multichannel is not None and 'channel_axis' not in kw: kw['channel_axis'] = -1 if multichannel else None
        return _gaussian(image, *args, **kw)
    ic = importlib.import_module('imagecorruptions')
    ic.corruptions.gaussian = gaussian
    _mod = ic
    return ic

def reference_corrupt(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    "Run `imagecorruptions.corrupt` on each image of `x` (float [B,3,H,W] in [0,1]) as uint8 HWC; numpy RNG seeded with `seed`."
    ic = load()
    np.random.seed(seed)
    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = [np.asarray(ic.corrupt(im, corruption_name=name, severity=severity)) for im in u8]
    return torch.from_numpy(np.stack(out).astype(np.float32) / 255).permute(0, 3, 1, 2).contiguous()

DETERMINISTIC = ('defocus_blur', 'zoom_blur', 'brightness', 'contrast', 'pixelate', 'jpeg_compression', 'gaussian_blur', 'saturate')

def psnr(a, b):
    "Per-image PSNR (dB) between batches in [0,1]."
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)

def fidelity(x, names, severities=(1, 2, 3, 4, 5), seed=0):
    "Rows comparing `robust_nb.corruptions.corrupt` with the reference on the same images `x` (one row per name × severity)."
    from robust_nb.corruptions import corrupt
    from robust_nb.core import make_generator
    rows = []
    for n in names:
        for s in severities:
            ref = reference_corrupt(x, n, s, seed)
            ours = corrupt(x, n, s, make_generator(seed))
            dr, do = ref - x, ours - x
            rows.append(dict(corruption=n, severity=s, deterministic=n in DETERMINISTIC,
                             mad=(ours - ref).abs().mean().item(),
                             mad_u8=(torch.floor(ours * 255 + 1e-4) / 255 - ref).abs().mean().item(),  # the reference truncates to uint8
                             max_u8=(torch.floor(ours * 255 + 1e-4) / 255 - ref).abs().max().item(),
                             d_mean_ref=dr.mean().item(), d_mean_ours=do.mean().item(),
                             d_std_ref=dr.std().item(), d_std_ours=do.std().item(),
                             psnr_ref=psnr(ref, x).mean().item(), psnr_ours=psnr(ours, x).mean().item()))
    return rows
