"""Domain generalisation: DomainBed's protocol, shared by the DG methods (ERM++ plugs in here).

- splits.py: `domainbed(test=ENV,holdout=0.2,seed=TRIAL):NAME`, a derived dataset with DomainBed's
  per-environment in/out splits (train / val / test / test_in / test_out / train_full), and
  `evals_config()`, the evaluators the selection methods read.
- mnist.py: RotatedMNIST and ColoredMNIST built from MNIST as DomainBed does (dataset names
  rotated_mnist / colored_mnist in the registry).
- selection.py: training-domain validation and the test-domain oracle over finished runs.
- erm_pp.py: ERM++ (task 'erm_pp': linear probing / attention-only parameter masks, frozen or
  unfrozen BN, fresh head; pass-1 length and DomainBed selection as table rows). Its uniform
  weight average with refreshed BN statistics is the loop's (jaxcv/averaging.py). docs/erm_pp.md.
- miro.py: the MIRO regulariser (ERM++'s optional one; `erm_pp.miro`): per-stage variance
  encoders and the loss against a frozen copy of the starting network's features.
- Elsewhere: `config.data.balance_domains` (one minibatch per training domain, device loader)
  and the 'domains' evaluator (accuracy per domain, jaxcv/evaluators/domains.py).

See docs/domain_generalization.md.
"""
