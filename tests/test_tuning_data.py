"D^a over any Dataset (fixed by index), the streaming feature cache on disk (fp16 shards, atomic, resumable), and distill on a Dataset."
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np, pytest, torch
from torch.utils.data import DataLoader, TensorDataset
from robust_nb.models import timm_classifier, split_model
from robust_nb.multihead import (MultiHead, TuningData, TuningSet, FeatureShards, tuning_set, cache_features, distill,
                                 item_generator)


def _base(n=12, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 3, size, size, generator=g), torch.arange(n) % 4)


def test_tuning_data_is_fixed_across_constructions_and_workers():
    base = _base()
    d1, d2 = TuningData(base, a=0.75, seed=3), TuningData(base, a=0.75, seed=3)     # default AugMix | Noise2Net
    assert len(d1) == 18 and torch.equal(d1.keep, d2.keep)
    items = [d1[j] for j in range(len(d1))]
    for j, (x, y, aug) in enumerate(items):
        x2, y2, aug2 = d2[j]
        assert torch.equal(x, x2) and int(y) == int(y2) and bool(aug) == bool(aug2)
    # read in reverse order, and in 2 DataLoader worker processes: the same tensors, bit for bit
    for j in reversed(range(len(d1))): assert torch.equal(d2[j][0], items[j][0])
    dl = DataLoader(d2, batch_size=None, num_workers=2, shuffle=False)
    for j, (x, y, aug) in enumerate(dl): assert torch.equal(x, items[j][0]) and bool(aug) == bool(items[j][2])
    # the augmented items are augmented (not the clean image), the clean ones are the base images
    xs = {(int(d1.keep[j]) % 12, bool(a)): x for j, (x, _, a) in enumerate(items)}
    for (i, a), x in xs.items():
        assert torch.equal(x, base[i][0]) != a
    # AugMix for exactly half the images, a different seed another D^a
    assert d1.augmix_half.sum() == 6
    d3 = TuningData(base, a=0.75, seed=4)
    assert not torch.equal(d3.keep, d1.keep) or not all(torch.equal(d3[j][0], items[j][0]) for j in range(len(d1)))


def test_tuning_data_custom_augment_index_seeded():
    base = _base(6)
    noise = lambda x, generator=None: (x + 0.1 * torch.rand(x.shape, generator=generator)).clamp(0, 1)
    d = TuningData(base, a=1., augment=noise, seed=0)
    assert len(d) == 12 and d.key() == TuningData(base, a=1., augment=noise, seed=0).key()
    ts = d.materialise()
    assert isinstance(ts, TuningSet) and ts.is_aug.sum() == 6
    i = 2                                                   # item N+i is image i augmented with generator (seed, i)
    j = int((d.keep == 6 + i).nonzero())
    torch.testing.assert_close(d[j][0], noise(base[i][0][None], generator=item_generator(0, i))[0], atol=0, rtol=0)
    assert isinstance(tuning_set(base, a=0.5), TuningData)                  # tuning_set dispatches on a Dataset
    with pytest.raises(ValueError, match=r"a \(fraction"): TuningData(base, a=0)
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self): yield from base
    with pytest.raises(TypeError, match="map-style Dataset"): TuningData(Stream())


class _Failing:
    "A teacher callable that raises after `k` calls (a kill in the middle of the caching pass)."
    def __init__(self, k): self.k, self.calls = k, 0
    def __call__(self, x, f):
        self.calls += 1
        if self.k is not None and self.calls > self.k: raise KeyboardInterrupt("killed")
        return f.flatten(1)[:, :5] * 2


def test_feature_cache_resumes_after_interruption(tmp_path):
    torch.manual_seed(0)
    mh = MultiHead(split_model(timm_classifier("test_resnet", 4), blocks=2))
    ds = TuningData(_base(20), a=1., augment=lambda x, generator=None: x.flip(-1))   # 40 items
    kw = dict(batch_size=4, budget=0, shard_items=8, key=dict(run="t"))                # 5 shards of 2 batches
    full = cache_features(mh, ds, (_Failing(None),), path=tmp_path / "full", **kw)
    assert isinstance(full, FeatureShards) and full.num_shards == 5
    with pytest.raises(KeyboardInterrupt):
        cache_features(mh, ds, (_Failing(1 + 2 * 3),), path=tmp_path / "cut", **kw)     # first batch + 3 shards, then killed
    shards = sorted(p.name for p in (tmp_path / "cut").iterdir())
    assert shards == ["config.json"] + [f"shard_{c:06d}.safetensors" for c in range(3)]  # no partial or temp file
    with pytest.raises(FileNotFoundError, match="lacks shards"): FeatureShards(tmp_path / "cut")
    t = _Failing(None)
    resumed = cache_features(mh, ds, (t,), path=tmp_path / "cut", **kw)
    assert t.calls == 1 + 2 * 2                           # the first batch (row sizes) + the 2 missing shards only
    for a, b in zip(full.tensors(), resumed.tensors()): assert torch.equal(a, b)
    f, t5, x_y, aug = full[3][0], full[3][1], full[3][2], full[3][3]
    assert f.dtype == torch.float32 and t5.shape == (5,) and aug.dtype == torch.bool
    # the same folder with other settings is refused, naming them
    with pytest.raises(ValueError, match="other settings.*shard_items"):
        cache_features(mh, ds, (_Failing(None),), path=tmp_path / "cut", **{**kw, "shard_items": 4})
    # the in-memory cache (within budget) holds the same values, in float32 (the disk shards hold fp16 features)
    mem = cache_features(mh, ds, (_Failing(None),), batch_size=4)
    assert all(isinstance(m, torch.Tensor) for m in mem)
    torch.testing.assert_close(mem[0], full.tensors()[0], atol=2e-3, rtol=1e-3)
    for a, b in zip(mem[1:], full.tensors()[1:]): assert torch.equal(a, b)


def test_distill_on_a_dataset_equals_its_tensors(tmp_path):
    torch.manual_seed(0)
    st = timm_classifier("test_vit", 4, img_size=16, patch_size=8)
    te = timm_classifier("test_resnet", 4)
    d = TuningData(_base(12), a=0.5, seed=2)                                        # distill wraps a Dataset with its seed=
    kw = dict(blocks=1, epochs=2, batch_size=4, seed=2)
    r_t = distill(st, te, d.materialise(), **kw)                                    # tensors, in memory
    r_d = distill(st, te, d, cache_budget=0, cache_path=tmp_path / "c", cache_dtype=torch.float32, num_workers=2, **kw)
    r_u = distill(st, te, d, cache=False, **kw)                                     # no cache: x read from the Dataset
    for r in (r_d, r_u):
        for a, b in zip(r_t.model.parameters(), r.model.parameters()): torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert [h["step"] for h in r_d.history] == list(range(1, 7)) and r_d.n_seen == 24
    # a plain (image, label) Dataset is wrapped in TuningData with distill's a= and seed=
    r_b = distill(st, te, _base(12), a=0.5, **kw)
    for a, b in zip(r_t.model.parameters(), r_b.model.parameters()): torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


DISTILL_DDP = '''
import os, sys, torch
torch.set_num_threads(1)
from torch.utils.data import TensorDataset
from robust_nb.models import timm_classifier
from robust_nb.multihead import distill
out, bs = sys.argv[1], int(sys.argv[2])
g = torch.Generator().manual_seed(0)
base = TensorDataset(torch.rand(16, 3, 16, 16, generator=g), torch.arange(16) % 4)
torch.manual_seed(0)
st, te = timm_classifier("test_vit", 4, img_size=16, patch_size=8), timm_classifier("test_resnet", 4)
# p ~ 0: every rank draws its own dropout masks (as DDP training does), so only with dropout off are the runs comparable
r = distill(st, te, base, blocks=1, p=1e-7, epochs=2, batch_size=bs, seed=0, cache_budget=0, cache_dtype=torch.float32,
            cache_path=os.path.join(out, "cache"), cache_shard_items=8, progress=False)
rank = int(os.environ.get("RANK", 0))
torch.save(dict(sd=r.model.state_dict(), loss=[h["loss"] for h in r.history]), os.path.join(out, f"r{rank}.pt"))
'''


def test_distill_two_processes_equal_one_with_the_doubled_batch(tmp_path):
    # torchrun, 2 CPU processes (gloo) at batch 4 = this process at batch 8: same D^a, the disk feature cache shared (shard
    # c written by rank c % 2), the same global batches, gradients averaged by DDP; equal weights up to float rounding
    import subprocess, sys
    from robust_nb.core import safe_load
    script = tmp_path / "distill_ddp.py"; script.write_text(DISTILL_DDP)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROBUST_NB_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("ACCELERATE_USE_CPU", None)
    (tmp_path / "one").mkdir(); (tmp_path / "two").mkdir()
    p2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
                         str(tmp_path / "two"), "4"], env=env, capture_output=True, text=True, timeout=300)
    assert p2.returncode == 0, p2.stderr[-3000:]
    saved = sys.argv, torch.get_num_threads()
    try:
        sys.argv = ["distill_ddp", str(tmp_path / "one"), "8"]
        exec(compile(DISTILL_DDP, "distill_ddp", "exec"), {"__name__": "one"})
    finally: sys.argv = saved[0]; torch.set_num_threads(saved[1])
    one, r0, r1 = (safe_load(tmp_path / f) for f in ("one/r0.pt", "two/r0.pt", "two/r1.pt"))
    for k, v in one["sd"].items():
        assert torch.equal(r0["sd"][k], r1["sd"][k])                              # DDP keeps the ranks in step
        torch.testing.assert_close(r0["sd"][k], v, rtol=1e-4, atol=2e-5)         # Adam: lr 1e-3, 4 steps; rounding ~6e-6
    assert r0["loss"] == pytest.approx(one["loss"], rel=1e-5) and len(one["loss"]) == 4
    for d in ("one", "two"):
        assert sorted(p.name for p in (tmp_path / d / "cache").iterdir()) == ["config.json"] + [f"shard_00000{c}.safetensors" for c in (0, 1)]
