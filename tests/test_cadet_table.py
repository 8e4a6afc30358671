"""CADet (paper 9): configs/cadet/table.py at `runlocal` through jaxcv.sweep.run_table: the
supervised classifier, a SimCLR run with its linear probe, the CADet benchmark and the MMD
power curves, and the rendered tables and figures."""

import json

import pytest

from jaxcv import sweep
from jaxcv.cadet import benchmark, two_sample

from conftest import REPO_ROOT


@pytest.fixture(scope='module')
def table_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('cadet_table')
  records = sweep.run_table(f'{REPO_ROOT}/configs/cadet/table.py:runlocal,seeds=1', str(workdir))
  assert {r['name']: r['status'] for r in records} == {
      'classifier': 'ok', 'random_encoder': 'ok', 'simclr_s0': 'ok', 'cadet_s0': 'ok',
      'two_sample_s0': 'ok'}
  return workdir


def test_simclr_row_trains_and_probes(table_dir):
  summary = json.loads((table_dir / 'simclr_s0' / 'summary.json').read_text())
  assert 0 <= summary['probe/accuracy'] <= 1 and summary['steps'] == 6
  assert summary['probe/feature_dim'] == 16  # small_cnn of width 8: 2 x 8 pooled features.
  untrained = json.loads((table_dir / 'random_encoder' / 'summary.json').read_text())
  assert untrained['steps'] == 0 and 0 <= untrained['probe/accuracy'] <= 1


def test_cadet_row_scores_every_split_and_term(table_dir):
  results = json.loads((table_dir / 'cadet_s0' / 'cadet' / benchmark.RESULTS_FILE).read_text())
  splits = results['splits']
  assert {k: v['shift'] for k, v in splits.items() if v['shift'] != 'id'} == {
      'synthetic': 'novel', 'contrast_s5': 'corruption', 'pgd': 'adversarial',
      'cw': 'adversarial'}
  assert splits['pgd']['dtype'] == 'float32' and splits['id_test']['examples'] == 40
  assert set(results['auroc']) == {'m_in', 'm_out', 'cadet'}
  for entry in results['auroc'].values():
    assert all(0 <= v <= 100 for v in entry['splits'].values())
    assert set(entry['types']) == {'novel', 'corruption', 'adversarial'}
  rates = results['rejection_rate']['cadet']
  assert set(rates) == {'id_val', 'id_test', 'synthetic', 'contrast_s5', 'pgd', 'cw'}
  assert results['attack_accuracy']['pgd'] <= results['attack_accuracy']['clean']
  summary = json.loads((table_dir / 'cadet_s0' / 'summary.json').read_text())
  assert summary['cadet/auroc/m_in/pgd'] == pytest.approx(results['auroc']['m_in']['splits']['pgd'])
  assert 'cadet/reject/cadet/id_test' in summary and 'cadet/fpr95/m_out/synthetic' in summary


def test_two_sample_row_and_rendered_outputs(table_dir):
  results = json.loads((table_dir / 'two_sample_s0' / two_sample.RESULTS_FILE).read_text())
  assert set(results['power']) == {'cosine', 'gaussian'}
  assert set(results['power']['cosine']) == {'10', '20'} == set(results['type1']['cosine'])
  assert all(0 <= r['rate'] <= 1 for r in results['power']['gaussian'].values())
  assert results['pool_sizes']['x'] == results['pool_sizes']['shift'] and results['aligned']
  for name in ('cadet_table.md', 'two_sample.md', 'table.md'):
    assert (table_dir / name).stat().st_size > 200
  for name in ('cadet_auroc.png', 'power_curve.png'):
    assert (table_dir / name).stat().st_size > 1000
  assert '| m_in |' in (table_dir / 'cadet_table.md').read_text()
  assert '| cosine | power |' in (table_dir / 'two_sample.md').read_text()
