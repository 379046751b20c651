import json, re
import numpy as np
import pandas as pd
import pytest
from robust_nb.corruptions import SEVERITIES
from robust_nb.evaluate import Results
from robust_nb.metrics import ALEXNET
from robust_nb.report import (accuracy_table, cost_table, results_table, f_correct_table, report_text, report_html, write_report,
                              severity_table, severity_curves, corruption_bars, pareto_front, pareto_plot, teacher_student_bars)

CS = ['gaussian_noise', 'fog', 'pixelate']


def make(name, k, clean=.8, v2=.7):
    "k x AlexNet's top-1 errors on CS at every severity, so mCE (AlexNet-normalised) = 100 k exactly."
    rows = [dict(shift='clean', kind='clean', n=10, top1=clean, top5=1., ece=.05, rms_ce=.07, nll=.9),
            dict(shift='v2', kind='natural', n=10, top1=v2, top5=1., ece=.1, rms_ce=.1, nll=1.2)]
    rows += [dict(shift=f'{c}-{s}', kind='corruption', corruption=c, severity=s, n=10, top1=1 - k * e, top5=1., ece=.1,
                  rms_ce=.1, nll=2.) for c in CS for s, e in zip(SEVERITIES, ALEXNET.errors[c])]
    return Results(name, 'imagenet-test', pd.DataFrame(rows), ALEXNET.subset(CS).to_dict())


RS = {'student': make('student', .8), 'teacher': make('teacher', .5, .85, .75)}
COSTS = {'student': dict(params_tuned=772_000, params_total=3_862_978, train_ms_per_img=.41234),
         'teacher': dict(params_total=761_226, latency_ms=.15)}
FC = {'clean': .95, 'v2': .61, 'fog-3': .99}


def test_accuracy_table_labels_units_and_hand_computed_values():
    t = accuracy_table(RS)
    assert all(c.endswith('(%)') or '(%, ' in c for c in t.columns), list(t.columns)
    assert t.loc['student', 'top-1 clean (%)'] == 80. and t.loc['teacher', 'top-1 v2 (%)'] == 75.
    norm = 'alexnet[3/15]'                                       # the normaliser is named in the column
    assert t[f'mCE (%, {norm})'].tolist() == [80., 50.]
    mean_err = np.mean([e for c in CS for e in ALEXNET.errors[c]])
    assert t.loc['teacher', 'top-1 corruptions (%)'] == round(100 * (1 - .5 * mean_err), 1)
    assert t.loc['student', 'top-1 avg shifts (%)'] == round((70 + 100 * (1 - .8 * mean_err)) / 2, 1)


def test_counts_are_integers_and_costs_carry_units(tmp_path):
    c = cost_table(COSTS)
    assert list(c.columns) == ['params tuned', 'params total', 'train (ms/img)', 'latency (ms/img)']
    assert str(c['params total'].dtype) == str(c['params tuned'].dtype) == 'Int64'
    assert c.loc['student', 'params total'] == 3_862_978 and pd.isna(c.loc['teacher', 'params tuned'])
    assert c.loc['student', 'train (ms/img)'] == .412
    s = c.to_string()
    assert '3862978' in s and '3862978.0' not in s and '772000.0' not in s
    # counts that arrive as floats (a transposed frame, a JSON round trip) still print as integers
    assert str(cost_table({'a': dict(params_total=5.0), 'b': dict(params_total=None)})['params total'].dtype) == 'Int64'
    with pytest.raises(ValueError, match="fractional"):
        cost_table({'a': dict(params_total=1.5)})
    paths = write_report(RS, tmp_path, COSTS)
    text = paths['summary'].read_text()
    assert ',3862978,' in text and '3862978.0' not in text and '761226' in text and '761226.0' not in text


def test_results_table_joins_accuracy_and_costs():
    t = results_table(RS, COSTS)
    assert list(t.index) == ['student', 'teacher']
    assert 'top-1 clean (%)' in t and 'params total' in t and str(t['params total'].dtype) == 'Int64'
    assert results_table(RS).equals(accuracy_table(RS))


def test_f_correct_table_layouts_and_errors():
    t = f_correct_table(FC)
    assert list(t.columns) == ['F_correct'] and t.index.name == 'shift' and t.F_correct.tolist() == [.95, .61, .99]
    assert f_correct_table(pd.Series(FC)).equals(t)
    t2 = f_correct_table({'ours': FC, 'w/o KLD': {'clean': .9, 'v2': .5}})
    assert list(t2.columns) == ['ours', 'w/o KLD'] and pd.isna(t2.loc['fog-3', 'w/o KLD'])
    with pytest.raises(ValueError, match="fraction in \\[0, 1\\].*not percent"):
        f_correct_table({'clean': 95.})


def test_report_text_labels_every_table():
    s = report_text(RS, COSTS, {'multi-head (ours)': FC})
    i_acc, i_cost, i_fc = s.index('Accuracy and robustness (%)'), s.index('Costs:'), s.index('F_correct:')
    assert i_acc < i_cost < i_fc
    assert 'top-1 clean (%)' in s[i_acc:i_cost] and 'params' not in s[i_acc:i_cost]    # the % heading never covers counts
    assert 'params total' in s[i_cost:i_fc] and 'ms/img' in s[i_cost:i_fc]
    assert 'multi-head (ours)' in s[i_fc:] and '0.61' in s[i_fc:]
    assert '3862978.0' not in s
    assert 'F_correct' not in report_text(RS)                   # sections appear only when given
    s = report_text(RS, dict(reversed(COSTS.items())))           # cost rows follow the models' order, not the costs'
    i = s.index('Costs:')
    assert s.index('student', i) < s.index('teacher', i)


def test_html_order_labels_and_f_correct(tmp_path):
    h = report_html(RS, COSTS, f_correct=FC)
    pos = [h.index(m) for m in ('<h2>Main comparison</h2>', '<h2>Figures</h2>', '<h2>Details</h2>')]
    assert pos == sorted(pos)                                    # main comparison, then figures, then details
    assert pos[1] < h.index('Plotly.newPlot') < pos[2]           # the figures sit in their section
    acc = h[h.index('Accuracy and robustness (%)'):h.index('<h3>Costs</h3>')]
    assert 'top-1 clean (%)' in acc and 'params' not in acc and 'ms/img' not in acc
    assert 'Summary (%)' not in h and '3862978.0' not in h and '3862978' in h
    fc = h[h.index('F_correct per shift'):]
    assert pos[2] < h.index('F_correct per shift') and 'fraction of images' in fc
    assert re.search(r'<th>v2</th>\s*<td>0.61</td>', fc)
    assert 'F_correct' not in report_html(RS)


def test_write_report_files(tmp_path):
    paths = write_report(RS, tmp_path / 'out', COSTS, f_correct=FC, title='two models')
    assert sorted(paths) == ['csv', 'f_correct', 'html', 'json', 'summary']
    h = paths['html'].read_text()
    assert 'src="http' not in h and len(h) > 1_000_000          # plotly.js inlined once: the file opens offline
    assert h.count('Plotly.newPlot') == 2 and '<title>two models</title>' in h
    back = {k: Results.from_dict(d) for k, d in json.loads(paths['json'].read_text()).items()}
    pd.testing.assert_series_equal(back['teacher'].summary(), RS['teacher'].summary())
    assert len(pd.read_csv(paths['csv'])) == 2 * len(RS['student'].shifts)
    assert pd.read_csv(paths['f_correct'], index_col='shift').F_correct.to_dict() == FC


def test_figures():
    t = severity_table(RS)
    assert len(t) == 2 * len(CS) * 5 and t.top1.between(0, 100).all()
    assert (severity_table(RS, 'nll').nll == 2.).all()            # NLL is not a percentage
    f = severity_curves(RS, cols=2)
    assert len(f.data) == 2 * len(CS) and f.layout.yaxis.title.text == 'top-1 accuracy (%)'
    assert len(corruption_bars(RS).data) == 2
    with pytest.raises(ValueError, match="no corruption shifts"):
        severity_curves(Results('x', 's', RS['student'].shifts.query("kind != 'corruption'")))


def test_pareto_and_teacher_student():
    assert pareto_front([750, 3950, 2500, 570], [64.9, 62.9, 52.1, 62.1]) == [3, 0]
    f = pareto_plot([dict(name='Ours', train_ms_per_img=750, accuracy=64.9), dict(name='WiSE', train_ms_per_img=3950, accuracy=62.9)])
    assert list(f.data[1].x) == [750] and f.layout.xaxis.title.text == 'training cost (ms/img)'
    with pytest.raises(KeyError, match="'accuracy'"):
        pareto_plot([dict(name='a', train_ms_per_img=1, acc=2)])
    f = teacher_student_bars([dict(student=s, teacher=t, accuracy=a) for s, t, a in
                              [('RN50', None, 50), ('RN50', 'RN34', 53), ('RN101', None, 55), ('RN101', 'RN34', 58)]])
    assert [d.name for d in f.data] == ['None', 'RN34'] and f.layout.yaxis.title.text == 'accuracy (%)'
