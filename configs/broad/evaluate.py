"""The BROAD benchmark of a trained classifier: an evaluation-only run (total_steps=0,
init_checkpoint=run) whose `broad` evaluator (jaxcv/evaluators/broad.py) builds every shift
split, scores every detector and ensemble and writes the AUROC tables.

  python -m jaxcv.main --config configs/broad/evaluate.py:preset=cpu,run=runs/broad/id_s0,transfer=runs/broad/transfer \
      --workdir runs/broad/broad_s0

Arguments: preset (runlocal / cpu / gpu: the split sizes below), run, transfer (the second
model for the transfer attacks; empty: white-box only), generator (a class-conditional diffusion
run whose samples form the synthetic split, `generated(...)` in jaxcv/ood/shifts; empty: no
synthetic split), seed (the data splits and subsets, the
same for every ID model by default, so that the spread is over models). Every setting is also a
--config.evals.broad.KEY override (keys: broad.run_benchmark's arguments).
"""

import ml_collections

from jaxcv import config as config_lib
from jaxcv.errors import ConfigError
from jaxcv.ood import broad

# Split sizes per preset: ID-train subset the detectors are fitted on, ID-val, ID-ens (the
# ensembles' fitting split), ID-test, and images per shift split.
PRESETS = {
    # runlocal: every split a multiple of one batch, so that each pass compiles once.
    'runlocal': dict(fit_examples=288, id_val_examples=96, id_ens_examples=96,
                     id_test_examples=192, ood_examples=48, batch_size=48, attack_steps=3,
                     severities='5', corruptions='contrast', attacks='pgd',
                     novel='synthetic:n=64,size=24,classes=3@test', gmm_components='1,2',
                     detectors='msp,energy,mds,mds_all,vim,knn(k=5),gram(powers=2)',
                     ensemble_members='msp,energy,mds,knn(k=5),gram(powers=2)'),
    # cpu: every detector but ODIN (its input-gradient pass would cost more than the rest of
    # the evaluation together on 2 CPU cores; its ranking follows MSP's at T = 1000).
    'cpu': dict(fit_examples=3000, id_val_examples=1000, id_ens_examples=1000,
                id_test_examples=2000, ood_examples=1000,
                detectors=broad.DEFAULT_DETECTORS.replace(',odin', '')),
    'gpu': dict(fit_examples=0, id_val_examples=1000, id_ens_examples=1000, id_test_examples=0,
                ood_examples=2000, attacks='pgd,fgsm,apgd'),
}


# The synthetic split per preset: samples per class and sampler steps (DDIM, no guidance).
GENERATED = {'runlocal': (5, 2), 'cpu': (100, 20), 'gpu': (200, 50)}


def get_config(arg=None):
  from jaxcv.evaluators import ood  # pylint: disable=import-outside-toplevel
  arg = config_lib.parse_arg(arg, preset='cpu', run='', transfer='', generator='', seed=0)
  if arg.preset not in PRESETS:
    raise ConfigError(f'preset must be one of {", ".join(PRESETS)}, got {arg.preset!r}')
  if not arg.run:
    raise ConfigError('configs/broad/evaluate.py needs run=<workdir of the ID classifier>')
  config = ood.evaluation_config(arg.run)  # The run's own config, evaluation only.
  settings = dict(PRESETS[arg.preset])
  if arg.generator:
    per_class, steps = GENERATED[arg.preset]
    settings['synthetic'] = (f'generated(run={arg.generator},per_class={per_class},'
                             f'steps={steps},seed={arg.seed}):{config.data.name}',)
  config.evals = ml_collections.ConfigDict({'broad': {
      'type': 'broad', 'transfer_run': arg.transfer, 'seed': arg.seed, **settings}})
  return config
