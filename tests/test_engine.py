import json, math, os, random
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset
from robust_nb.core import safe_load
from robust_nb.engine import fit, FitResult, read_log, model_signature, OPTIMIZERS

N, D, C = 96, 6, 3

def make_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (N,), generator=g)
    return torch.randn(N, D, generator=g) + 2 * torch.eye(C, D)[y], y

def make_model(seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, C))

class Boom(Exception): pass

def noisy_loss(kill_at=None, counter=None):
    "CE with input noise and dropout from torch's global RNG (must be restored on resume); raises at call `kill_at`."
    counter = counter if counter is not None else [0]
    def f(model, batch):
        counter[0] += 1
        if kill_at is not None and counter[0] == kill_at: raise Boom(f"killed at call {counter[0]}")
        x, y = batch[0], batch[1]
        x = x + 0.1 * torch.randn_like(x) + 0.01 * random.random() + 0.01 * float(np.random.rand())
        logits = model(x)
        return F.cross_entropy(logits, y), {'acc': (logits.argmax(1) == y).float().mean().item()}
    return f

KW = dict(epochs=3, batch_size=20, lr=0.05, warmup=0.2, seed=3, progress=False)   # 5 batches/epoch (last of 16), 15 steps

def weights(m): return {k: v.clone() for k, v in m.state_dict().items()}

def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), k

_REFS = {}
def reference(data, tag='', **kw):
    "The uninterrupted run (cached per data kind, tag and options: the resume tests compare against it)."
    key = (type(data).__name__, tag, repr(sorted(kw.items())))
    if key not in _REFS: _REFS[key] = fit(make_model(), noisy_loss(), data, **{**KW, **kw})
    return _REFS[key]

def kill_and_resume(data_fn, tmp_path, kill_at, ckpt_every, **kw):
    d = tmp_path / 'ck'
    with pytest.raises(Boom):
        fit(make_model(), noisy_loss(kill_at), data_fn(), ckpt_dir=d, ckpt_every=ckpt_every, log_file=tmp_path / 'log.jsonl', **{**KW, **kw})
    torch.manual_seed(123); random.seed(5); np.random.seed(7)      # a new process would have other RNG states
    return fit(make_model(seed=99), noisy_loss(), data_fn(), ckpt_dir=d, ckpt_every=ckpt_every, log_file=tmp_path / 'log.jsonl', **{**KW, **kw})

@pytest.mark.parametrize('kill_at,ckpt_every', [(8, 7), (12, 5), (6, 5), (11, 5)])
def test_exact_resume_tensors(tmp_path, kill_at, ckpt_every):
    # (8,7): killed between checkpoints mid-epoch (recomputes step 8); (12,5): after an epoch boundary;
    # (6,5): right after a checkpoint at the end of an epoch; (11,5): checkpoint exactly at the end of epoch 1
    ref = reference(make_data(), ema_decay=0.9, grad_clip=1.0)
    res = kill_and_resume(make_data, tmp_path, kill_at, ckpt_every, ema_decay=0.9, grad_clip=1.0)
    assert_same(weights(ref.model), weights(res.model))
    assert_same(weights(ref.ema), weights(res.ema))
    # the history and the log file have each step exactly once, with the same losses
    assert [r['step'] for r in res.history] == list(range(1, 16))
    assert [r['loss'] for r in res.history] == [r['loss'] for r in ref.history]
    assert [r['step'] for r in read_log(tmp_path / 'log.jsonl')] == list(range(1, 16))

class AugDataset(Dataset):
    "A Dataset whose items are augmented with torch's global RNG (num_workers=0: exact after resume)."
    def __init__(self): self.x, self.y = make_data()
    def __len__(self): return N
    def __getitem__(self, i): return self.x[i] + 0.05 * torch.randn(D), int(self.y[i])

def test_exact_resume_dataset(tmp_path):
    ref = reference(AugDataset())
    res = kill_and_resume(AugDataset, tmp_path, 9, 4)
    assert_same(weights(ref.model), weights(res.model))

def test_exact_resume_user_dataloader(tmp_path):
    # a user DataLoader with shuffle=True and a seeded generator, and an augmenting dataset
    def dl(): return DataLoader(AugDataset(), batch_size=20, shuffle=True, generator=torch.Generator().manual_seed(0))
    ref = reference(dl(), tag='seeded generator')
    res = kill_and_resume(dl, tmp_path, 9, 4)
    assert_same(weights(ref.model), weights(res.model))
    # without a generator the shuffle seed comes from torch's global RNG, which fit seeds and checkpoints
    def dl2(): return DataLoader(AugDataset(), batch_size=20, shuffle=True)
    ref = reference(dl2(), tag='no generator')
    res = kill_and_resume(dl2, tmp_path / 'b', 12, 4)
    assert_same(weights(ref.model), weights(res.model))

def test_stop_after_and_finished_run(tmp_path):
    d = tmp_path / 'ck'
    ref = reference(make_data())
    part = fit(make_model(), noisy_loss(), make_data(), ckpt_dir=d, ckpt_every=3, stop_after=7, **KW)
    assert len(part.history) == 7 and safe_load(d / 'last.pt')['step'] == 6
    res = fit(make_model(), noisy_loss(), make_data(), ckpt_dir=d, ckpt_every=3, **KW)
    assert_same(weights(ref.model), weights(res.model))
    # a finished run is loaded, not retrained
    calls = [0]
    again = fit(make_model(), noisy_loss(counter=calls), make_data(), ckpt_dir=d, ckpt_every=3, **KW)
    assert calls[0] == 0 and len(again.history) == 15
    assert_same(weights(ref.model), weights(again.model))

def test_same_seed_same_weights_and_seed_matters():
    a, b = fit(make_model(), noisy_loss(), make_data(), **KW), reference(make_data())
    assert_same(weights(a.model), weights(b.model))
    c = reference(make_data(), seed=4)
    assert not torch.equal(a.model[0].weight, c.model[0].weight)

def test_history_schedule_and_log_csv(tmp_path):
    res = fit(make_model(), noisy_loss(), make_data(), log_file=tmp_path / 'log.csv', **KW)
    assert isinstance(res, FitResult) and res.ckpt_dir is None and not res.model.training
    h = res.history
    assert [r['epoch'] for r in h] == [0] * 5 + [1] * 5 + [2] * 5
    lrs = [r['lr'] for r in h]
    assert lrs[:3] == pytest.approx([0.05 / 3, 0.1 / 3, 0.05])                    # 3 warmup steps (20% of 15)
    assert lrs[3:] == pytest.approx([0.025 * (1 + math.cos(math.pi * s / 12)) for s in range(12)])
    assert all(r['img_per_s'] > 0 and 'acc' in r for r in h)
    assert res.ms_per_img > 0
    logged = read_log(tmp_path / 'log.csv')
    assert [r['step'] for r in logged] == list(range(1, 16)) and logged[4]['loss'] == pytest.approx(h[4]['loss'])

def test_loss_decreases_with_each_optimizer():
    for opt in ('adamw', 'adam', 'sgd'):
        res = fit(nn.Linear(D, C), lambda m, b: F.cross_entropy(m(b[0]), b[1]), make_data(), epochs=4, batch_size=32, lr=0.1,
                  opt=opt, progress=False)
        assert res.history[-1]['loss'] < res.history[0]['loss'] * 0.7, opt
    # a callable and an instance are accepted; params as param groups
    m = nn.Linear(D, C)
    res = fit(m, lambda m, b: F.cross_entropy(m(b[0]), b[1]), make_data(), max_steps=3, batch_size=32,
              opt=torch.optim.SGD(m.parameters(), lr=0.5), schedule='constant', progress=False)
    assert [r['lr'] for r in res.history] == [0.5] * 3
    m = nn.Linear(D, C)
    res = fit(m, lambda m, b: F.cross_entropy(m(b[0]), b[1]), make_data(), max_steps=2, batch_size=32, schedule='constant',
              params=[{'params': [m.weight], 'lr': 0.2}, {'params': [m.bias]}], lr=0.1, opt=torch.optim.SGD, progress=False)
    assert res.history[0]['lr'] == 0.2

def test_frozen_params_untouched():
    m = make_model(); before = m[0].weight.clone()
    m[0].weight.requires_grad_(False)
    fit(m, noisy_loss(), make_data(), max_steps=3, batch_size=20, progress=False)
    assert torch.equal(m[0].weight, before)

def test_max_steps_overrides_epochs_and_spans_epochs():
    res = fit(make_model(), noisy_loss(), make_data(), epochs=1, max_steps=7, batch_size=20, progress=False)
    assert [r['epoch'] for r in res.history] == [0] * 5 + [1] * 2

def test_ema_is_an_average():
    res = fit(make_model(), noisy_loss(), make_data(), ema_decay=0.5, **KW)
    assert res.ema is not None and not torch.equal(res.ema.module[0].weight, res.model[0].weight)
    res1 = fit(make_model(), noisy_loss(), make_data(), ema_decay=0.999, max_steps=1, batch_size=20, progress=False)
    assert torch.equal(res1.ema.module[0].weight, res1.model[0].weight)                # first update copies the weights

def test_bf16_runs_on_cpu():
    res = fit(make_model(), noisy_loss(), make_data(), mixed_precision='bf16', grad_clip=0.5, max_steps=3, batch_size=20, progress=False)
    assert all(math.isfinite(r['loss']) and r['grad_norm'] >= 0 for r in res.history)
    assert res.model[0].weight.dtype == torch.float32
    res = fit(make_model(), noisy_loss(), make_data(), max_steps=2, batch_size=20, progress=False)   # back to fp32
    assert len(res.history) == 2

def test_nan_loss_keeps_checkpoint(tmp_path):
    d = tmp_path / 'ck'
    calls = [0]
    def loss(m, b):
        calls[0] += 1
        l = F.cross_entropy(m(b[0]), b[1])
        return l * float('nan') if calls[0] == 8 else l
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 8 .*last checkpoint .*last.pt \(step 5\) is intact"):
        fit(make_model(), loss, make_data(), ckpt_dir=d, ckpt_every=5, **KW)
    ck = safe_load(d / 'last.pt')
    assert ck['step'] == 5 and all(torch.isfinite(v).all() for v in ck['model'].values() if v.is_floating_point())
    m = make_model(); m.load_state_dict(ck['model'])

def test_inf_loss_without_checkpoint():
    with pytest.raises(FloatingPointError, match="loss is inf at step 1.*no checkpoint"):
        fit(make_model(), lambda m, b: m(b[0]).sum() * float('inf'), make_data(), max_steps=2, batch_size=20, progress=False)

def test_nonfinite_weights_never_checkpointed(tmp_path):
    d = tmp_path / 'ck'
    fit(make_model(), noisy_loss(), make_data(), ckpt_dir=d, ckpt_every=2, max_steps=2, batch_size=20, progress=False)
    with pytest.raises(ValueError, match="saved with optimizer AdamW, this run uses SGD"):
        fit(make_model(), noisy_loss(), make_data(), ckpt_dir=d, max_steps=2, batch_size=20, opt='sgd', progress=False)
    d, calls = tmp_path / 'ck2', [0]
    def blowup(m, b):   # step 1: zero loss (no update); step 2: finite loss with gradient 1e30 -> inf weights after SGD
        calls[0] += 1
        return (m[0].weight * 1e30).sum() if calls[0] > 1 else m(b[0]).sum() * 0
    with pytest.raises(FloatingPointError, match="non-finite weights at step 2: checkpoint not written"):
        fit(make_model(), blowup, make_data(), ckpt_dir=d, ckpt_every=1, max_steps=4, batch_size=20, lr=1e10, opt='sgd',
            schedule='constant', progress=False)
    good = make_model().state_dict()
    after = safe_load(d / 'last.pt')
    assert after['step'] == 1 and all(torch.equal(good[k], after['model'][k]) for k, _ in make_model().named_parameters())

def test_checkpoint_from_another_model(tmp_path):
    d = tmp_path / 'ck'
    fit(make_model(), noisy_loss(), make_data(), ckpt_dir=d, max_steps=2, batch_size=20, progress=False)
    before = (d / 'last.pt').read_bytes()
    with pytest.raises(ValueError, match=r"was saved from a different model: \d+ mismatched keys, e\.g\. .*point ckpt_dir elsewhere or delete it"):
        fit(nn.Sequential(nn.Linear(D, 8), nn.Linear(8, C)), noisy_loss(), make_data(), ckpt_dir=d, max_steps=2, batch_size=20, progress=False)
    assert (d / 'last.pt').read_bytes() == before

def test_empty_data():
    e = (torch.zeros(0, D), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="data yields no batches"):
        fit(make_model(), noisy_loss(), e, progress=False)
    with pytest.raises(ValueError, match="data yields no batches .*an empty loader"):
        fit(make_model(), noisy_loss(), DataLoader(TensorDataset(*e), batch_size=4), progress=False)
    with pytest.raises(ValueError, match="drop_last"):
        fit(make_model(), noisy_loss(), make_data(), batch_size=200, drop_last=True, progress=False)
    class Empty(torch.utils.data.IterableDataset):
        def __iter__(self): return iter([])
    with pytest.raises(ValueError, match="yielded no batches in epoch 0"):
        fit(make_model(), noisy_loss(), Empty(), max_steps=3, progress=False)

def test_bad_arguments():
    m, l, d = make_model(), noisy_loss(), make_data()
    with pytest.raises(ValueError, match="lr must be > 0"): fit(m, l, d, lr=0)
    with pytest.raises(ValueError, match="lr must be > 0"): fit(m, l, d, lr=-1e-3)
    with pytest.raises(KeyError, match="unknown optimizer 'lamb'; valid names: adam, adamw, sgd"): fit(m, l, d, opt='lamb')
    with pytest.raises(KeyError, match="unknown schedule 'step'; valid names: constant, cosine"): fit(m, l, d, schedule='step')
    with pytest.raises(ValueError, match="pass epochs= or max_steps="): fit(m, l, d, epochs=None)
    with pytest.raises(ValueError, match="mixed_precision must be"): fit(m, l, d, mixed_precision='fp8')
    with pytest.raises(ValueError, match="different lengths"): fit(m, l, (d[0], d[1][:5]))
    with pytest.raises(TypeError, match="pass a tuple"): fit(m, l, d[0])
    with pytest.raises(TypeError, match="loss_fn must return a scalar tensor"):
        fit(m, lambda m, b: m(b[0]), d, progress=False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(make_model().requires_grad_(False), l, d)
    with pytest.raises(ValueError, match="ema_decay"): fit(m, l, d, ema_decay=1.5)

def test_dataset_batches_are_tuples_and_dicts_pass_through():
    seen = []
    def loss(m, b):
        seen.append(type(b)); x, y = (b['x'], b['y']) if isinstance(b, dict) else b
        return F.cross_entropy(m(x), y)
    fit(nn.Linear(D, C), loss, TensorDataset(*make_data()), max_steps=1, batch_size=8, progress=False)
    class DictDS(Dataset):
        def __init__(self): self.x, self.y = make_data()
        def __len__(self): return N
        def __getitem__(self, i): return {'x': self.x[i], 'y': self.y[i]}
    fit(nn.Linear(D, C), loss, DictDS(), max_steps=1, batch_size=8, progress=False)
    assert seen == [tuple, dict]

def test_model_signature():
    assert model_signature(make_model(1)) == model_signature(make_model(2))
    assert model_signature(make_model()) != model_signature(nn.Linear(D, C))

SCRIPT = '''
import os, sys, time, torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1)
from robust_nb.core import atomic_save
from robust_nb.engine import fit
ckpt, kill_at = sys.argv[1], int(sys.argv[2])
g = torch.Generator().manual_seed(0)
y = torch.randint(0, 3, (200,), generator=g); x = torch.randn(200, 6, generator=g) + 2 * torch.eye(3, 6)[y]
torch.manual_seed(1)
model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
calls = [0]
def loss_fn(m, b):
    calls[0] += 1
    if calls[0] == kill_at:                      # tell the parent where we are, then wait to be SIGKILLed
        open(os.path.join(ckpt, 'at_kill'), 'w').close(); time.sleep(300)
    return F.cross_entropy(m(b[0] + 0.1 * torch.randn_like(b[0])), b[1])
res = fit(model, loss_fn, (x, y), epochs=3, batch_size=32, lr=0.02, warmup=0.1, ema_decay=0.9, ckpt_dir=ckpt, ckpt_every=4,
          log_file=os.path.join(ckpt, 'log.jsonl'), seed=0, progress=False)
atomic_save(res.model.state_dict(), os.path.join(ckpt, 'final.pt'))
'''

def test_resume_after_real_sigkill(tmp_path):
    import signal, subprocess, sys, time
    script = tmp_path / 'train.py'; script.write_text(SCRIPT)
    run = lambda d, k: subprocess.Popen([sys.executable, str(script), str(d), str(k)], env={**os.environ, 'ROBUST_NB_NO_PROGRESS': '1'})
    ref, killed = tmp_path / 'ref', tmp_path / 'killed'
    ref.mkdir(); killed.mkdir()
    assert run(ref, 0).wait(timeout=300) == 0
    p = run(killed, 11)                                                  # 7 steps per epoch: killed in epoch 1, after ckpt 8
    t0 = time.time()
    while not (killed / 'at_kill').exists():
        assert p.poll() is None and time.time() - t0 < 300, "the training process died before reaching the kill point"
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL); p.wait()
    assert safe_load(killed / 'last.pt')['step'] == 8 and not (killed / 'final.pt').exists()
    assert run(killed, 0).wait(timeout=300) == 0
    a, b = safe_load(ref / 'final.pt'), safe_load(killed / 'final.pt')
    assert_same(a, b)
    assert [r['step'] for r in read_log(killed / 'log.jsonl')] == list(range(1, 22))

def test_checkpoint_keeps_no_history(tmp_path):
    # the history lives in the log (default ckpt_dir/log.jsonl): the checkpoint's size does not grow with the run
    sizes = {}
    for steps in (3, 15):
        d = tmp_path / f'ck{steps}'
        res = fit(make_model(), noisy_loss(), make_data(), ckpt_dir=d, max_steps=steps, **{**KW, 'epochs': None})
        ck = safe_load(d / 'last.pt')
        assert 'history' not in ck and ck['step'] == steps and ck['log_file'] == str(d / 'log.jsonl')
        assert read_log(d / 'log.jsonl') == res.history
        sizes[steps] = (d / 'last.pt').stat().st_size
    assert abs(sizes[15] - sizes[3]) < 64, sizes

def test_resume_history_from_csv_log(tmp_path):
    ref = reference(make_data())
    d, log = tmp_path / 'ck', tmp_path / 'log.csv'
    fit(make_model(), noisy_loss(), make_data(), ckpt_dir=d, ckpt_every=4, log_file=log, stop_after=10, **KW)
    assert [r['step'] for r in read_log(log)] == list(range(1, 11))       # steps 9, 10 are past the checkpoint (8)
    res = fit(make_model(), noisy_loss(), make_data(), ckpt_dir=d, ckpt_every=4, log_file=log, **KW)
    assert_same(weights(ref.model), weights(res.model))
    assert [(type(r['step']), r['step']) for r in res.history] == [(int, s) for s in range(1, 16)]
    assert [r['loss'] for r in res.history] == [r['loss'] for r in ref.history]   # floats round-trip exactly
    assert read_log(log) == res.history

def test_resume_without_the_log_warns(tmp_path):
    d = tmp_path / 'ck'
    fit(make_model(), noisy_loss(), make_data(), ckpt_dir=d, ckpt_every=4, stop_after=6, **KW)
    (d / 'log.jsonl').unlink()
    with pytest.warns(UserWarning, match=r"no log file holds the history of steps 1\.\.4 .*log.jsonl \(missing\)"):
        res = fit(make_model(), noisy_loss(), make_data(), ckpt_dir=d, ckpt_every=4, **KW)
    assert [r['step'] for r in res.history] == list(range(5, 16))
    assert_same(weights(reference(make_data()).model), weights(res.model))   # the weights do not depend on the log
    # a checkpoint of the old format (history inside) still resumes with its history
    d2 = tmp_path / 'ck2'
    part = fit(make_model(), noisy_loss(), make_data(), ckpt_dir=d2, ckpt_every=4, stop_after=6, **KW)
    ck = safe_load(d2 / 'last.pt'); ck['history'] = part.history[:4]; torch.save(ck, d2 / 'last.pt')
    (d2 / 'log.jsonl').unlink()
    res = fit(make_model(), noisy_loss(), make_data(), ckpt_dir=d2, ckpt_every=4, **KW)
    assert [r['step'] for r in res.history] == list(range(1, 16))

DDP_SCRIPT = '''
import json, os, sys, torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1)
import robust_nb.engine as E
out = sys.argv[1]
writes = []                                      # every file this process writes through the engine's atomic writers
_save, _write = E.atomic_save, E.atomic_write_bytes
E.atomic_save = lambda obj, path: (writes.append(str(path)), _save(obj, path))[1]
E.atomic_write_bytes = lambda path, data: (writes.append(str(path)), _write(path, data))[1]
g = torch.Generator().manual_seed(0)
y = torch.randint(0, 3, (96,), generator=g); x = torch.randn(96, 6, generator=g) + 2 * torch.eye(3, 6)[y]
def model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
ce = lambda m, b: F.cross_entropy(m(b[0]), b[1])
noisy = lambda m, b: F.cross_entropy(m(b[0] + 0.3 * torch.randn_like(b[0])), b[1])   # each process its own RNG stream
kw = dict(epochs=2, batch_size=16, lr=0.05, seed=0, progress=False)            # 96 = 3 global batches of 2 x 16
plain = E.fit(model(), ce, (x, y), ckpt_dir=os.path.join(out, 'plain'), ckpt_every=2, **kw)
full = E.fit(model(), noisy, (x, y), ckpt_dir=os.path.join(out, 'full'), ckpt_every=2, **kw)
E.fit(model(), noisy, (x, y), ckpt_dir=os.path.join(out, 'resumed'), ckpt_every=2, stop_after=3, **kw)   # "killed" at 3
from accelerate import PartialState
st = PartialState()
torch.manual_seed(123 + st.process_index)                                   # a new process has other RNG states
resumed = E.fit(model(), noisy, (x, y), ckpt_dir=os.path.join(out, 'resumed'), ckpt_every=2, **kw)
torch.save(dict(world=st.num_processes, rank=st.process_index, writes=writes, plain=plain.model.state_dict(),
                full=full.model.state_dict(), resumed=resumed.model.state_dict(),
                losses=[r['loss'] for r in plain.history]), os.path.join(out, f'rank{st.process_index}.pt'))
'''

def test_two_processes_on_cpu(tmp_path):
    # torchrun with 2 CPU processes (gloo): DDP keeps the ranks in step, the pair equals one process with the doubled
    # batch, only rank 0 writes the checkpoint and the log, and a killed 2-process run resumes bit-exactly
    import subprocess, sys
    script = tmp_path / 'ddp.py'; script.write_text(DDP_SCRIPT)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'ROBUST_NB_NO_PROGRESS': '1'}
    env.pop('ACCELERATE_USE_CPU', None)                  # fit itself must see that there is no GPU
    p = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(script),
                        str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r0, r1 = safe_load(tmp_path / 'rank0.pt'), safe_load(tmp_path / 'rank1.pt')
    assert (r0['world'], r0['rank'], r1['world'], r1['rank']) == (2, 0, 2, 1)
    for k in ('plain', 'full', 'resumed'): assert_same(r0[k], r1[k])
    assert not torch.equal(r0['plain']['0.weight'], r0['full']['0.weight'])
    assert_same(r0['full'], r0['resumed'])
    # = one process with batch 32 (same global batches, gradients averaged by DDP), up to float rounding
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (96,), generator=g); x = torch.randn(96, 6, generator=g) + 2 * torch.eye(3, 6)[y]
    torch.manual_seed(1)
    one = fit(nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)), lambda m, b: F.cross_entropy(m(b[0]), b[1]),
              (x, y), epochs=2, batch_size=32, lr=0.05, seed=0, progress=False)
    for k, v in one.model.state_dict().items(): torch.testing.assert_close(r0['plain'][k], v, rtol=1e-5, atol=1e-6)
    assert r0['losses'] == pytest.approx([r['loss'] for r in one.history], rel=1e-5)
    # rank 0 writes checkpoints and logs; rank 1 only its RNG state beside the checkpoint
    assert {os.path.basename(w) for w in r0['writes']} == {'last.pt', 'log.jsonl'}
    assert {os.path.basename(w) for w in r1['writes']} == {'rng_1.pt'}
    for run in ('plain', 'full', 'resumed'):
        assert [r['step'] for r in read_log(tmp_path / run / 'log.jsonl')] == list(range(1, 7))
        assert safe_load(tmp_path / run / 'last.pt')['step'] == 6

def _png_folder(root, classes=3, per_class=8, size=20):
    "A fabricated ImageFolder tree of random-pixel PNGs."
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f'c{c}').mkdir(parents=True)
        for i in range(per_class): Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / f'c{c}' / f'{i}.png')
    return root

def test_exact_resume_image_folder_with_workers(tmp_path):
    # random crops/flips drawn inside worker processes (issue: resume diverged at the first step after the checkpoint)
    import torchvision.transforms as T
    from robust_nb.data import image_folder
    root = _png_folder(tmp_path / 'imgs')
    ds = lambda: image_folder(root, transform=T.Compose([T.RandomResizedCrop(12), T.RandomHorizontalFlip(), T.ToTensor()]))[0]
    def model():
        torch.manual_seed(0); return nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 3))
    ce = lambda m, b: F.cross_entropy(m(b[0]), b[1])
    loaders = {'dataset': lambda: ds(),
               'user loader': lambda: DataLoader(ds(), batch_size=5, shuffle=True, num_workers=1, generator=torch.Generator().manual_seed(0))}
    for name, data in loaders.items():
        kw = dict(epochs=2, batch_size=5, lr=0.1, seed=0, progress=False, **({'num_workers': 1} if name == 'dataset' else {}))
        ref = fit(model(), ce, data(), **kw)                                        # 5 batches per epoch, 10 steps
        d = tmp_path / name
        part = fit(model(), ce, data(), ckpt_dir=d, ckpt_every=3, stop_after=4, **kw)   # "killed" mid-epoch after ckpt 3
        assert len(part.history) == 4 and safe_load(d / 'last.pt')['step'] == 3
        torch.manual_seed(123); random.seed(5); np.random.seed(7)
        res = fit(model(), ce, data(), ckpt_dir=d, ckpt_every=3, **kw)
        assert [r['loss'] for r in res.history] == [r['loss'] for r in ref.history], name
        assert_same(weights(ref.model), weights(res.model))
        if name == 'dataset':   # fit's own loader: the augmentation depends on (seed, epoch, batch), not on the workers
            assert_same(weights(ref.model), weights(fit(model(), ce, data(), **{**kw, 'num_workers': 0}).model))

def test_seed_everything_then_build_gives_identical_weights():
    from robust_nb.engine import seed_everything
    def run(seed):
        seed_everything(seed)
        m = nn.Sequential(nn.Linear(D, 16), nn.Dropout(0.3), nn.Linear(16, C))
        return weights(fit(m, noisy_loss(), make_data(), **{**KW, 'seed': seed}).model)
    a = run(0)
    torch.manual_seed(99)                                         # whatever ran before: the seed decides
    assert_same(a, run(0))
    assert not torch.equal(a['0.weight'], run(1)['0.weight'])

def test_non_finite_weights_message_names_only_a_real_checkpoint(tmp_path):
    "A diverged run (huge lr: finite loss, infinite weights) must not claim that a never-written last.pt holds good weights."
    blow = lambda m, b: m[0].weight[0, 0] * 1e38 + 0 * m(b[0]).sum()   # finite loss, gradient 1e38: one SGD step at lr 4 -> inf
    d = tmp_path / 'ck'
    with pytest.raises(FloatingPointError, match=r"non-finite weights at step 1: checkpoint not written; no checkpoint was written before"):
        fit(make_model(), blow, make_data(), ckpt_dir=d, ckpt_every=1, lr=4., opt='sgd', max_steps=3, batch_size=20, progress=False)
    assert not (d / 'last.pt').exists()
    calls = [0]
    def late(m, b):
        calls[0] += 1
        return blow(m, b) if calls[0] == 3 else 0 * m(b[0]).sum()     # two harmless steps, checkpointed
    with pytest.raises(FloatingPointError, match=r"non-finite weights at step 3: .*last\.pt still holds the last good one \(step 2\)"):
        fit(make_model(), late, make_data(), ckpt_dir=tmp_path / 'ck2', ckpt_every=1, lr=4., opt='sgd', max_steps=5,
            batch_size=20, warmup=0., progress=False)
    assert safe_load(tmp_path / 'ck2' / 'last.pt')['step'] == 2

def test_nonfinite_weights_without_a_checkpoint_say_so(tmp_path):
    # a run that diverges before its first checkpoint must not claim that last.pt holds a good one
    blowup = lambda m, b: (m[0].weight * 1e30).sum()
    with pytest.raises(FloatingPointError, match="non-finite weights at step 1: checkpoint not written; no checkpoint was written before"):
        fit(make_model(), blowup, make_data(), ckpt_dir=tmp_path / 'ck', max_steps=1, batch_size=20, lr=1e10, opt='sgd',
            schedule='constant', progress=False)
    assert not (tmp_path / 'ck' / 'last.pt').exists()
