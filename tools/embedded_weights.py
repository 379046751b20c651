"""Re-create a shipped embedded model's weights file and record its config, hash and per-domain accuracy.

    python tools/embedded_weights.py NAME [NAME ...]        # e.g. vit resnet clip teacher
    python tools/embedded_weights.py teacher --variant '{"recipe_kw": {"frac": 1.0}}'   # evaluate a variant, ship nothing
    python tools/embedded_weights.py clip teacher --variant '{}' --from-scratch       # the recipe's weights, not the shipped

For each NAME: `robust_nb.embedded.create(NAME)` with its default config (trained now unless the cache holds it; the
shipped file is ignored), stored as fp16 safetensors in robust_nb/assets/embedded/NAME.safetensors with the metadata of
`embedded.save_weights`, then evaluated from that file on the fixed evaluation set (1,000 test images per domain, seed 0;
the 15 corruptions at severity 3 on photo/test). NAME.json beside it records config, cache key, sha256, accuracies and
training time. `clip` is evaluated zero-shot (prompt ensembling over `models.OPENAI_TEMPLATES`). `vq` (the VQGAN
discretiser) records reconstruction MSE and PSNR (dB) per domain on the same fixed images (at its training size and at the
suite's 32 px) instead of accuracy. `vq`, `reference` and `teacher` are small and ship in fp32 (exact), the others in fp16.
"""
import argparse, contextlib, copy, hashlib, json, math, sys, time
from pathlib import Path
import torch
from robust_nb import embedded as E
from robust_nb.synthetic import render, DOMAINS
from robust_nb.corruptions import corrupt, CORRUPTIONS
from robust_nb.core import atomic_write_json, cache_dir

EVAL = dict(n=1000, seed=0, split='test', severity=3)

@torch.no_grad()
def accuracy(model, x, y, bs=500):
    model.eval()
    return 100 * sum((model(x[i:i + bs]).argmax(-1) == y[i:i + bs]).sum().item() for i in range(0, len(x), bs)) / len(x)

def evaluate(model, split:str|None=None) -> dict:
    """Accuracy (%) per domain and the mean over the 15 corruptions at severity 3 (EVAL's fixed sets; `split` overrides
    EVAL's), rounded to 0.01; `corruptions_correct` counts the correct ones among the 15 × n corrupted images."""
    out = {}
    for d in DOMAINS:
        x, y = render(d, EVAL['n'], seed=EVAL['seed'], split=split or EVAL['split'])
        out[d] = accuracy(model, x, y)
        if d == 'photo': xp, yp = x, y
    cs = {c: accuracy(model, corrupt(xp, c, EVAL['severity'], generator=torch.Generator().manual_seed(0)).clamp(0, 1), yp) for c in CORRUPTIONS}
    out['corruptions'] = sum(cs.values()) / len(cs)
    out['natural_shifts'] = sum(out[d] for d in DOMAINS if d != 'photo') / (len(DOMAINS) - 1)
    out = {k: round(v, 2) for k, v in out.items()}
    out['corruptions_correct'] = round(sum(cs.values()) * EVAL['n'] / 100)    # of 15 × n: compare two models exactly
    return out

@torch.no_grad()
def reconstruction(vq, x, bs=250) -> tuple:
    "(MSE, PSNR in dB) of `vq(x)` against `x` (images in [0,1]), averaged over all pixels of `x`."
    vq.eval()
    se = sum(((vq(x[i:i + bs]) - x[i:i + bs]) ** 2).sum().item() for i in range(0, len(x), bs))
    mse = se / x.numel()
    return mse, 10 * math.log10(1 / mse)

def evaluate_vq(vq, size:int) -> dict:
    "Reconstruction MSE and PSNR (dB) per domain of EVAL's fixed images, at `size` (the VQ's own) and at the suite's 32 px."
    out = {}
    for s in dict.fromkeys((size, 32)):
        for d in DOMAINS:
            x, _ = render(d, EVAL['n'], size=s, seed=EVAL['seed'], split=EVAL['split'])
            mse, psnr = reconstruction(vq, x)
            out[f'{d}@{s}'] = dict(mse=round(mse, 6), psnr=round(psnr, 2))
    return out

FP32 = ('teacher', 'vq', 'reference')                  # small: shipped exact

def classifier(name, model):
    return E.clip_zeroshot(model) if name == 'clip' else model

def ship(name:str) -> dict:
    c = E.resolve(name)
    t0 = time.perf_counter()
    spec = E.MODELS[name]
    folder = cache_dir('embedded', name, E.cache_key(name))
    model = E.cached(f'embedded/{name}', c, lambda f: _train(spec, c, f), lambda m, p: E.save_weights(m, p, name, c),
                     lambda p: E.load_weights(spec.build(c), p), 'model.safetensors', spec.version)
    train = json.loads((folder/'train.json').read_text()) if (folder/'train.json').exists() else {}
    path = E.ASSETS/f'{name}.safetensors'; path.parent.mkdir(parents=True, exist_ok=True)
    half = copy.deepcopy(model).half() if name not in FP32 else copy.deepcopy(model)
    E.save_weights(half, path, name, c)
    shipped = E.load_weights(spec.build(c), path).eval()          # what users get: evaluate the shipped file
    acc = evaluate_vq(shipped, c['size']) if name == 'vq' else evaluate(classifier(name, shipped))
    n = sum(p.numel() for p in shipped.parameters())
    rec = dict(name=name, config=c, key=E.cache_key(name), version=spec.version, file=path.name,
               sha256=hashlib.sha256(path.read_bytes()).hexdigest(), bytes=path.stat().st_size, params=n,
               params_image=sum(p.numel() for p in shipped.visual.parameters()) if name == 'clip' else n,
               dtype='float32' if name in FP32 else 'float16', eval=EVAL, train_s=train.get('train_s'),
               **{'reconstruction' if name == 'vq' else 'accuracy': acc},
               command=f"python tools/embedded_weights.py {name}", wall_s=round(time.perf_counter() - t0, 1))
    atomic_write_json(rec, path.with_suffix('.json'))
    return rec

def variant(name:str, cfg:dict, scratch:bool=False) -> dict:
    """A config variant of `name` (trained now unless cached, never shipped): its accuracy on EVAL's test sets and on val.
    `scratch`: inside `embedded.from_scratch()`, so the default config too is the recipe's (trained or cached), not the shipped file."""
    t0 = time.perf_counter()
    with E.from_scratch() if scratch else contextlib.nullcontext(): m = classifier(name, E.create(name, **cfg))
    f, shipped = E.cache_path(name, **cfg)/'train.json', not scratch and E.weights_key(name, **cfg).startswith('shipped-')
    train = None if shipped or not f.exists() else json.loads(f.read_text()).get('train_s')
    out = dict(name=name, overrides=cfg, from_scratch=scratch, key=E.cache_key(name, **cfg), train_s=train, test=evaluate(m))
    out['val'] = evaluate(m, split='val')
    return dict(**out, wall_s=round(time.perf_counter() - t0, 1))

def _train(spec, c, folder):
    torch.manual_seed(c['seed']); t0 = time.perf_counter()
    m = spec.train(spec.build(c), c, folder, True)
    atomic_write_json({'train_s': time.perf_counter() - t0}, folder/'train.json')
    return m

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('names', nargs='+', help=f"embedded models: {', '.join(E.list_models())}")
    p.add_argument('--threads', type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument('--variant', type=json.loads, default=None, metavar='JSON',
                   help='config overrides, e.g. \'{"recipe_kw": {"frac": 1.0}}\': train (or load from the cache) and evaluate '
                        'that variant on the test and val sets; nothing is shipped or written to the package')
    p.add_argument('--from-scratch', action='store_true', help="with --variant: never the shipped file, the recipe's weights "
                   "(from the cache, e.g. one that `robust_nb_quickstart --from-scratch` filled, or trained now)")
    a = p.parse_args()
    if a.from_scratch and a.variant is None: p.error('--from-scratch goes with --variant (use --variant \'{}\' for the default config)')
    if a.threads: torch.set_num_threads(a.threads)
    for nm in a.names: print(json.dumps(variant(nm, a.variant, a.from_scratch) if a.variant is not None else ship(nm)), flush=True)
