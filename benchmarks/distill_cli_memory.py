"""Peak memory of the `robust_nb_distill` console script on an ImageFolder of N and of 10N images: it should not depend on
the dataset size (issue 16: the same run on N and 10N images at 64 px peaks within 20%).

Fabricates an ImageFolder of random-pixel PNGs (10 classes, 64 px; `distill_memory.fabricate`), then runs the script on
the first N and on all 10N images, each in a fresh subprocess, and prints each child's peak RSS (ru_maxrss) and their
ratio. The script hands the folder's Dataset to `multihead.distill` (D^a by index, never stored) and, with
`--cache-budget-gb 0`, writes every frozen-backbone feature to fp16 shards in `<out>.features`.

    python benchmarks/distill_cli_memory.py --n 100 [--root /tmp/distill_cli_memory]

Measured 2026-11-29 on the shared 2-core CPU machine (resnet18 student, test_resnet teacher, --blocks 1, 1 epoch,
batch 64): N=100 peaks at 1236 MB (23 s), 10N=1000 at 1232 MB (129 s); ratio 1.00.
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from distill_memory import fabricate, link_subset

CHILD = ("import resource, sys, json; from robust_nb.cli import distill_main; distill_main(sys.argv[1:]); "
         "print(json.dumps(dict(peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))")

def run(data:Path, out:Path, a) -> dict:
    t0 = time.time()
    r = subprocess.run([sys.executable, '-c', CHILD, '--student', a.student, '--teacher', a.teacher, '--data', str(data),
                        '--size', '64', '--blocks', '1', '--epochs', '1', '--batch-size', '64', '--cache-budget-gb', '0',
                        '--device', 'cpu', '--out', str(out)],
                       capture_output=True, text=True, env={**os.environ, 'ROBUST_NB_NO_PROGRESS': '1', 'HF_HUB_OFFLINE': '1'})
    if r.returncode: sys.exit(r.stderr[-3000:])
    peak = json.loads(r.stdout.strip().splitlines()[-1])['peak_rss_mb']
    return dict(images=sum(1 for _ in data.rglob('*.png')), peak_rss_mb=round(peak), wall_s=round(time.time() - t0, 1))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=100); p.add_argument('--root', default='/tmp/distill_cli_memory')
    p.add_argument('--student', default='timm:resnet18'); p.add_argument('--teacher', default='timm:test_resnet')
    a = p.parse_args()
    root = Path(a.root); big, small = root / f'big{a.n}', root / f'small{a.n}'
    if not big.exists(): fabricate(big, 10 * a.n, 64)
    if not small.exists(): link_subset(big, small, a.n)
    res = {tag: run(d, root / f'out-{tag}-{a.n}' / 'mh.pt', a) for tag, d in (('N', small), ('10N', big))}
    print(json.dumps(dict(**res, ratio=round(res['10N']['peak_rss_mb'] / res['N']['peak_rss_mb'], 3))))

if __name__ == '__main__': main()
