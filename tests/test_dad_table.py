"benchmarks/dad_table.py: the CLIP foundation teacher goes through models.clip_classifier; the seeded summary's arithmetic."
import importlib.util, sys
from pathlib import Path
import pandas as pd, pytest, torch
from robust_nb.dad import Teacher
from robust_nb.embedded import create, clip_zeroshot
from robust_nb.synthetic import render

_p = Path(__file__).parents[1] / 'benchmarks' / 'dad_table.py'
_spec = importlib.util.spec_from_file_location('dad_table', _p)
dt = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(dt)


def test_clip_teacher_is_the_zero_shot_clip_with_its_normalisation_inside():
    phi = dt.teacher('clip')
    assert isinstance(phi, Teacher) and phi.mean is None          # CLIP's mean/std live in the classifier's Prep
    phi.train(); assert not phi.training                          # a teacher stays in eval mode
    x, _ = render('photo', 16, size=32, seed=0, split='test')
    x = x.float() / 255 if x.dtype == torch.uint8 else x
    with torch.no_grad(): assert torch.allclose(phi(x), clip_zeroshot(create('clip'))(x), atol=1e-5)
    with torch.no_grad(): assert phi(x[:, :, ::2, ::2]).shape == (16, 10)   # 16-px input is resized to CLIP's 32 px
    with pytest.raises(ValueError, match='normalised'): phi((x - .5) * 10)


def test_summary_mean_std_and_cost_relative_to_ce():
    rows = pd.DataFrame([dict(method=m, seed=s, photo=p, v2=p, sketch=p, rendition=p, hard=p, corruptions=p, **{'avg shifts': p},
                              kept_fraction=k, train_s=t)
                         for m, s, p, k, t in [('ce', 0, 10., None, 2.), ('ce', 1, 20., None, 4.),
                                               ('dad', 0, 30., .5, 5.), ('dad', 1, 34., .7, 7.)]])
    s = dt.summarise(rows).set_index('method')
    assert s.loc['ce', 'photo'] == '15.0 ± 7.1' and s.loc['dad', 'avg shifts'] == '32.0 ± 2.8'   # sample std (ddof 1)
    assert s.loc['dad', 'kept_fraction'] == pytest.approx(.6) and s.loc['dad', 'cost vs CE'] == pytest.approx(2.0)
    assert (s['seeds'] == 2).all()
