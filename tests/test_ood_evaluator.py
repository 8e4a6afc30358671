"""The `ood` evaluator: OOD evaluation of a trained run through the single entry point
(`python -m jaxcv.main`, evaluation only), for a plain classifier and for an AFD run."""

import json

import jax
import numpy as np
import pytest

from jaxcv import inference, main, train
from jaxcv.ood import evaluate as evaluate_lib
from jaxcv.tasks import afd
from jaxcv.tasks.adversarial import add_adversarial_config

import test_inference as inference_tests
from conftest import REPO_ROOT

OOD_CONFIG = str(REPO_ROOT / 'configs' / 'ood' / 'evaluate.py')
DATA = 'synthetic:n=128,size=8,classes=4'
# A nested spec (its own commas inside brackets) next to a dataset with options.
OOD_SETS = ('synthetic:n=48,size=12,channels=1,classes=3,'
            'corrupt(kind=gaussian_noise,severity=5):synthetic:n=48,size=8')
ONE = jax.devices()[:1]


def tiny_config(*extra):
  config = inference_tests.tiny_config(*extra, data=DATA)
  config.evals = {}  # Only the OOD evaluation is under test.
  return config


@pytest.fixture(scope='module')
def natural_run(tmp_path_factory):
  return inference_tests.trained(tmp_path_factory, 'natural', tiny_config())


def evaluate_through_main(run, workdir, *extra):
  return main.main(['--config', f'{OOD_CONFIG}:run={run}', '--workdir', str(workdir),
                    f'--config.evals.ood.datasets={OOD_SETS}',
                    '--config.evals.ood.detectors=msp,energy,knn(k=5)',
                    '--config.evals.ood.id_val_examples=32', '--config.evals.ood.cache=false',
                    *extra])


def check_outputs(workdir, classifier):
  summary = json.loads((workdir / 'summary.json').read_text())
  results = json.loads((workdir / 'ood' / 'ood_results.json').read_text())
  assert summary['steps'] == 0
  sets = evaluate_lib.split_datasets(OOD_SETS)
  assert results['ood_datasets'] == sets and len(sets) == 2
  for det in ('msp', 'energy', 'knn(k=5)'):
    for label in sets:
      assert summary[f'ood/{label}/{det}/auroc'] == pytest.approx(
          results['detectors'][det]['ood'][label]['auroc'])
    assert summary[f'ood/mean/{det}/auroc'] == pytest.approx(
        np.mean([summary[f'ood/{label}/{det}/auroc'] for label in sets]))
  assert '## AUROC' in (workdir / 'ood' / 'ood_results.md').read_text()
  scores = np.load(workdir / 'ood' / 'ood_scores.npz')
  # The evaluator scored the exported classifier: MSP of ID-test is its max softmax.
  test_images = results['splits']['id_test']['examples']
  assert scores['msp|id_test'].shape == (test_images,)
  assert summary['ood/id_accuracy'] == pytest.approx(results['id_accuracy'])
  assert classifier.head.kernel.shape == (classifier.head.kernel.shape[0], 4)


def test_ood_evaluation_of_a_plain_classifier_through_main(natural_run, tmp_path):
  assert evaluate_through_main(natural_run, tmp_path / 'eval') == 0
  check_outputs(tmp_path / 'eval', inference.load_run(natural_run).classifier())


def test_ood_evaluation_of_an_afd_run_through_main(natural_run, tmp_path):
  config = tiny_config(f'init_checkpoint={natural_run}')
  config.task = 'afd'
  add_adversarial_config(config, steps=1, step_size=4 / 255)
  afd.add_afd_config(config)
  train.run(config, str(tmp_path / 'afd'), devices=ONE)
  assert evaluate_through_main(tmp_path / 'afd', tmp_path / 'eval') == 0
  run = inference.load_run(tmp_path / 'afd', weights='plain')
  check_outputs(tmp_path / 'eval', run.classifier())
  # The loop's evaluation-only path (AFDTask.from_pretrained, export_classifier) scores the
  # same classifier as the loader's export: the same numbers.
  direct, _ = evaluate_lib.evaluate_classifier(run.classifier(), DATA, OOD_SETS,
                                               'msp,energy,knn(k=5)', id_val_examples=32,
                                               cache=False)
  saved = json.loads((tmp_path / 'eval' / 'ood' / 'ood_results.json').read_text())
  for det in ('msp', 'energy', 'knn(k=5)'):
    for label, values in direct['detectors'][det]['ood'].items():
      for metric, value in values.items():
        assert saved['detectors'][det]['ood'][label][metric] == pytest.approx(value, abs=1e-3)
  assert saved['id_accuracy'] == pytest.approx(direct['id_accuracy'])


def test_user_mistakes_exit_2_with_one_error_line(natural_run, tmp_path, capsys):
  assert evaluate_through_main(natural_run, tmp_path / 'a',
                               '--config.evals.ood.detectors=msp,nope') == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('error:') and 'unknown OOD detector' in err[0]
  assert main.main(['--config', f'{OOD_CONFIG}:run={tmp_path}', '--workdir',
                    str(tmp_path / 'b')]) == 2
  assert 'not a jaxcv run' in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    main.main(['--workdir', str(tmp_path)])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('error:')
  with pytest.raises(SystemExit) as exit_info:
    evaluate_lib.main(['--ood', OOD_SETS])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('error:') and '--checkpoint' in err[0]
