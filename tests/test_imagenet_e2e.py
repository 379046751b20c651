"""ImageNet-shaped end-to-end run of the console scripts: teacher -> distill -> DAD generation -> DAD training -> evaluation.

A tmp tree of all 1000 wnid class folders (one tiny JPEG each, read at 224 px), real architectures with random weights
saved as safetensors (timm `resnet50` teacher, open_clip `ViT-B-16` student), each stage for one or two steps through
`robust_nb.cli.<tool>_main`, in-process. What is checked: exit status 0, the files each stage writes, its config/results
JSON, and that 1000 classes flow through every stage. Two costs are cut, and only these:
- CLIP's zero-shot initialisation of the student's linear head would encode 1000 class names x 80 prompt templates
  with the text tower (80,000 passes, ~0.2 s each on this CPU: hours). `models.text_class_embeddings` is replaced by a
  seeded random unit-norm [1000, 512] matrix; the image tower, the head and everything after are the real code.
- The discretiser is the embedded VQ (`--vq embedded:vq`): a real taming f8 VQGAN at 224 px costs minutes per image here.
  Evaluation reads 4 of the 1000 val images and 4 of the 1000 ImageNet-P `rotate` videos (`robust_nb_eval --max-images 4`;
  the videos need PyAV and are left out without it).
With random weights the teacher is rarely right, so DAD's correctness filter usually keeps none of the 4 samples and
DAD training runs on its clean-image path; the DAD term itself is covered by tests/test_dad.py."""
import importlib.util, json, time
import pytest, torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from robust_nb import cli, models
from robust_nb.data import imagenet_wnids

N_CLASSES = 1000

def _tree(root, seed):
    "root/<wnid>/<wnid>_0.JPEG for every ImageNet wnid: one 8-px JPEG per class (resized to 224 px when read)."
    g = torch.Generator().manual_seed(seed)
    for i, w in enumerate(imagenet_wnids()):
        (root/w).mkdir(parents=True)
        rgb = (torch.rand(8, 8, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(rgb).save(root/w/f'{w}_{i}.JPEG', quality=90)
    return root

def _imagenet_p(root, seed):
    "root/rotate/<wnid>/v.mp4 for every wnid: one 4-frame 16-px H.264 video (PyAV), copied into each class folder."
    import av, numpy as np, shutil
    g = np.random.default_rng(seed)
    src = root/'v.mp4'; root.mkdir(parents=True)
    with av.open(str(src), 'w') as c:
        s = c.add_stream('libx264', rate=10); s.width = s.height = 16; s.pix_fmt = 'yuv420p'
        for _ in range(4):
            for pkt in s.encode(av.VideoFrame.from_ndarray(g.integers(0, 256, (16, 16, 3), dtype=np.uint8), format='rgb24')): c.mux(pkt)
        for pkt in s.encode(): c.mux(pkt)
    for w in imagenet_wnids():
        (root/'rotate'/w).mkdir(parents=True); shutil.copyfile(src, root/'rotate'/w/'v.mp4')
    src.unlink()

def _run(main, argv, times, name):
    "Run console-script `main(argv)` in-process; it must end without SystemExit (exit status 0)."
    t0 = time.perf_counter()
    try: main([*argv, '--device', 'cpu'])
    except SystemExit as e: pytest.fail(f"{name} exited with status {e.code}")
    times[name] = time.perf_counter() - t0

def _random_text_embeddings(clip, tokenizer, class_names, templates=None, device=None):
    return F.normalize(torch.randn(len(class_names), clip.text_projection.shape[1], generator=torch.Generator().manual_seed(0)), dim=-1)

@pytest.fixture(scope='module')
def world(tmp_path_factory):
    "The fabricated ImageNet train/val trees and random-weight checkpoints of the real architectures."
    import timm, open_clip
    root = tmp_path_factory.mktemp('imagenet')
    _tree(root/'train', 0); _tree(root/'val_root'/'val', 1)
    if importlib.util.find_spec('av'): _imagenet_p(root/'val_root'/'imagenet-p', 2)
    torch.manual_seed(0)
    save_file(timm.create_model('resnet50', pretrained=False).state_dict(), root/'resnet50.safetensors')
    clip = open_clip.create_model('ViT-B-16')
    save_file({k: v.half().contiguous() for k, v in clip.state_dict().items()}, root/'ViT-B-16.safetensors')   # fp16 halves the file
    return root

def test_imagenet_chain(world, monkeypatch, capsys):
    monkeypatch.setattr(models, 'text_class_embeddings', _random_text_embeddings)
    r, times = world, {}
    data = ['--data', str(r/'train'), '--classes', 'imagenet', '--size', '224']
    # 1. teacher: robustify the ResNet-50 with AugMix (JSD over clean + 2 views), 2 steps of 1 image
    _run(cli.teacher_main, ['--model', f"timm:resnet50@{r/'resnet50.safetensors'}", *data, '--recipe', 'augmix',
                            '--epochs', '1', '--max-steps', '2', '--batch-size', '1', '--out', str(r/'teacher.pt')], times, 'teacher')
    tj = json.loads((r/'teacher.pt.json').read_text())
    assert tj['num_classes'] == N_CLASSES and len(tj['class_names']) == N_CLASSES and tj['recipe'] == 'augmix'
    assert tj['config']['max_steps'] == 2 and tj['class_names'][0] == 'tench'
    teacher = f"timm:resnet50@{r/'teacher.pt'}"
    # 2. multi-head distillation: CLIP ViT-B/16 student (1000-class linear head), the ResNet-50 teacher, D^a from 4 images
    _run(cli.distill_main, ['--student', f"clip:ViT-B-16@{r/'ViT-B-16.safetensors'}", '--teacher', teacher, *data, '--n', '4',
                            '--blocks', '1', '--epochs', '2', '--batch-size', '4', '--out', str(r/'distilled.pt')], times, 'distill')
    dj = json.loads((r/'distilled.pt.json').read_text())
    assert len(dj['class_names']) == N_CLASSES and 0 < dj['frac'] < 0.2 and dj['n_tuned'] < dj['n_total']
    assert dj['split'] == 'branches' and dj['blocks'] == 1          # the tutorial's recipe: heads = the last MLP branch
    rebuilt = cli.resolve_model(f"distilled:{r/'distilled.pt'}", N_CLASSES)      # the tutorial's evaluation: same staging, same keys
    assert rebuilt.model.state_dict().keys() == torch.load(r/'distilled.pt', weights_only=True)['state_dict'].keys()
    assert rebuilt.model.head_blocks == 1 and rebuilt.model.heads[0][0].per_token       # each head: the last MLP branch
    sd = torch.load(r/'distilled.pt', weights_only=True)['state_dict']
    heads = {k: v.shape for k, v in sd.items() if v.ndim == 2 and v.shape[0] == N_CLASSES}
    assert len(heads) >= 3, f"the three heads of eq. 3-5 each predict 1000 classes, found {heads}"
    # 3. DAD generation: attack the robust teacher, discretise, keep what it still gets right (4 images, 2 shards)
    _run(cli.dad_generate_main, ['--out', str(r/'dad'), '--teacher', teacher, '--vq', 'embedded:vq', *data, '--n', '4',
                                 '--chunk-size', '2'], times, 'dad_generate')
    gj = json.loads((r/'dad'/'config.json').read_text())    # a random teacher is right on few or none: the filter may keep 0
    assert gj['n_items'] == 4 and len(json.loads((r/'dad'/'classes.json').read_text())['classes']) == N_CLASSES
    # 4. DAD training: a ResNet-50 student from scratch on clean + DAD samples, 1 step
    _run(cli.dad_train_main, ['--samples', str(r/'dad'), '--method', 'dad', '--student', 'timm:resnet50', '--teacher', teacher,
                              *data, '--n', '4', '--epochs', '1', '--max-steps', '1', '--batch-size', '2',
                              '--out', str(r/'student.pt')], times, 'dad_train')
    sj = json.loads((r/'student.pt.json').read_text())
    assert sj['num_classes'] == N_CLASSES and sj['method'] == 'dad'
    # 5. evaluation on the ImageNet suite (val of 1000 wnid folders), the trained student read back from its checkpoint
    _run(cli.eval_main, ['--model', f"timm:resnet50@{r/'student.pt'}", '--suite', 'imagenet', '--root', str(r/'val_root'),
                         '--max-images', '4', '--batch-size', '1', '--workers', '0', '--out', str(r/'eval')], times, 'eval')
    with capsys.disabled(): print('\nImageNet e2e stage seconds:', {k: round(v, 1) for k, v in times.items()})
    res = json.loads((r/'eval'/'results.json').read_text())       # {model: Results.to_dict()}
    assert list(res) == [f"timm:resnet50@{r/'student.pt'}"]
    res = res[f"timm:resnet50@{r/'student.pt'}"]
    assert res['info']['num_classes'] == N_CLASSES
    has_p = (r/'val_root'/'imagenet-p').is_dir()
    assert [s['shift'] for s in res['shifts']] == ['imagenet'] + ['imagenet_p-rotate'] * has_p
    assert all(s['n'] == 4 for s in res['shifts'])
    if has_p:                                       # ImageNet-P in the main flow: flip probability per video, mFP in the summary
        assert 0 <= res['shifts'][1]['flip_prob'] <= 1 and res['shifts'][1]['kind'] == 'perturbation'
        assert 'mFP (%, unnormalised)' in (r/'eval'/'summary.csv').read_text().splitlines()[0]
    assert (r/'eval'/'report.html').stat().st_size > 0
