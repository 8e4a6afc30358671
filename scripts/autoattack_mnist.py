"""AutoAttack (standard, L-inf) in jaxcv on a small MNIST classifier: robust accuracy after each
stage of the cascade, per seed, and APGD against an alternative implementation of it (e.g. an
earlier jaxcv version, to measure what a change of the algorithm does).

The classifier is scikit-learn's MLPClassifier (one hidden ReLU layer) on a subset of the
training set; its weights are moved into a JAX predict function. Writes one JSON.

  python scripts/autoattack_mnist.py --data ../shared/data/mnist --out results/.../mnist.json \
      [--eps 0.05] [--examples 500] [--seeds 0 1 2] [--other_apgd path/to/apgd.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.neural_network import MLPClassifier

from jaxcv import attacks
from jaxcv.data.sources import read_mnist_idx


def train_classifier(data_dir: str, train_examples: int, hidden: int):
  train = read_mnist_idx(data_dir, 'train')
  x = train.images[:train_examples].reshape(train_examples, -1) / 255.0
  model = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=20, random_state=0)
  model.fit(x, train.labels[:train_examples])
  w1, w2 = (jnp.asarray(w, jnp.float32) for w in model.coefs_)
  b1, b2 = (jnp.asarray(b, jnp.float32) for b in model.intercepts_)
  return lambda images: jax.nn.relu(images.reshape(images.shape[0], -1) @ w1 + b1) @ w2 + b2


def load_module(path: str):
  spec = importlib.util.spec_from_file_location('other_apgd', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data', required=True)
  parser.add_argument('--out', required=True)
  parser.add_argument('--eps', type=float, default=0.05)
  parser.add_argument('--examples', type=int, default=500)
  parser.add_argument('--train_examples', type=int, default=10000)
  parser.add_argument('--hidden', type=int, default=128)
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--steps', type=int, default=100)
  parser.add_argument('--n_queries', type=int, default=5000)
  parser.add_argument('--other_apgd', default=None)
  args = parser.parse_args()

  predict = train_classifier(args.data, args.train_examples, args.hidden)
  test = read_mnist_idx(args.data, 'test')
  x = jnp.asarray(test.images[:args.examples] / 255.0, jnp.float32)
  y = jnp.asarray(test.labels[:args.examples])
  accuracy = lambda images: float(jnp.mean(jnp.argmax(predict(images), -1) == y))
  result = {'eps': args.eps, 'examples': args.examples, 'steps': args.steps,
            'n_queries': args.n_queries, 'clean': accuracy(x), 'seeds': {}}
  other = load_module(args.other_apgd) if args.other_apgd else None
  for seed in args.seeds:
    rng = jax.random.key(seed)
    start = time.time()
    stages = jax.jit(lambda x: attacks.autoattack_stages(
        predict, x, y, rng, eps=args.eps, steps=args.steps, n_queries=args.n_queries))(x)
    row = {f'after_{name}': accuracy(images) for name, images in stages.items()}
    row['max_linf'] = float(jnp.max(jnp.abs(stages['square'] - x)))
    row['seconds'] = round(time.time() - start, 1)
    row['apgd_ce_alone'] = row['after_apgd_ce']
    row['apgd_t_alone'] = accuracy(attacks.apgd_targeted(predict, x, y, rng, eps=args.eps,
                                                         steps=args.steps))
    if other is not None:
      row['other_apgd_ce_alone'] = accuracy(other.apgd(predict, x, y, rng, eps=args.eps,
                                                       steps=args.steps))
      row['other_apgd_t_alone'] = accuracy(other.apgd_targeted(predict, x, y, rng, eps=args.eps,
                                                               steps=args.steps))
    result['seeds'][seed] = row
    print(seed, row, flush=True)
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=1)


if __name__ == '__main__':
  main()
