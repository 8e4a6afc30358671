"""The sampling sweep's bookkeeping on synthetic points: best guidance per (model, sampler, steps)
and which model wins at each sampling budget (the paper's crossover reading)."""

from jaxcv.diffusion import sampling_sweep


def _point(width, steps, guidance, fid, cost_per_step):
  return {'width': width, 'sampler': 'ddim', 'steps': steps, 'guidance': guidance, 'fid': fid,
          'sampling_cost': cost_per_step * steps}


# A small model (cost 0.25 per step) that is better at few steps, a big one (cost 1.0) that is
# better with many: the crossover the paper reports.
POINTS = [
    _point(16, 4, 1.0, 30.0, 0.25), _point(16, 4, 2.0, 25.0, 0.25),   # best w=2: 25
    _point(16, 16, 1.0, 20.0, 0.25), _point(16, 16, 2.0, 22.0, 0.25),  # best w=1: 20
    _point(64, 4, 1.0, 40.0, 1.0), _point(64, 4, 2.0, 35.0, 1.0),      # best w=2: 35
    _point(64, 16, 1.0, 12.0, 1.0), _point(64, 16, 3.0, 10.0, 1.0),    # best w=3: 10
]


def test_best_per_steps_keeps_the_lowest_fid_over_guidance():
  best = sampling_sweep.best_per_steps(POINTS)
  assert [(p['width'], p['steps'], p['guidance'], p['fid']) for p in best] == [
      (16, 4, 2.0, 25.0), (16, 16, 1.0, 20.0), (64, 4, 2.0, 35.0), (64, 16, 3.0, 10.0)]


def test_winners_by_cost_show_the_small_model_winning_cheap_budgets():
  best = sampling_sweep.best_per_steps(POINTS)
  winners = sampling_sweep.winners_by_cost(best)
  # Budgets are the sampling costs that occur: 1 (16 x 4 steps), 4 (16 x 16 and 64 x 4), 16.
  assert winners == [('ddim', 1.0, 16, 25.0), ('ddim', 4.0, 16, 20.0), ('ddim', 16.0, 64, 10.0)]


def test_a_model_outside_the_budget_never_wins():
  best = sampling_sweep.best_per_steps([_point(64, 2, 1.0, 1.0, 1.0), _point(16, 2, 1.0, 9.0, 0.25)])
  assert sampling_sweep.winners_by_cost(best) == [('ddim', 0.5, 16, 9.0), ('ddim', 2.0, 64, 1.0)]


def test_samplers_are_ranked_separately():
  """A DPM-Solver++ point never wins a DDIM budget, nor takes DDIM's best guidance."""
  dpm = [{**p, 'sampler': 'dpm_solver_pp', 'fid': p['fid'] - 5.0} for p in POINTS]
  best = sampling_sweep.best_per_steps(POINTS + dpm)
  assert len(best) == 8 and {p['sampler'] for p in best} == {'ddim', 'dpm_solver_pp'}
  winners = sampling_sweep.winners_by_cost(best)
  assert winners[:3] == sampling_sweep.winners_by_cost(sampling_sweep.best_per_steps(POINTS))
  assert winners[3:] == [('dpm_solver_pp', 1.0, 16, 20.0), ('dpm_solver_pp', 4.0, 16, 15.0),
                         ('dpm_solver_pp', 16.0, 64, 5.0)]


def test_noise_summary_is_the_spread_over_seeds_per_width():
  noise = {'points': [{'width': 16, 'seed': s, 'fid': f} for s, f in enumerate((10.0, 12.0, 14.0))]
           + [{'width': 64, 'seed': 0, 'fid': 5.0}]}
  rows = sampling_sweep.noise_summary(noise)
  assert [(r['width'], r['seeds'], r['fid_mean']) for r in rows] == [(16, 3, 12.0), (64, 1, 5.0)]
  assert rows[0]['fid_std'] == 2.0 and rows[1]['fid_std'] != rows[1]['fid_std']  # One seed: nan.
