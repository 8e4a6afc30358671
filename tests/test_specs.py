"""The one spec grammar (jaxcv/specs.py) and the parsers built on it."""

import re

import pytest

from jaxcv import specs
from jaxcv.errors import ConfigError


def test_values_are_literals_else_text():
  spec = specs.parse('f(i=3, x=-1e-3, b=True, n=None, s="a,b)", t=(1, 2), l=[3], word=noise, '
                     "q='it''s', path=/data/x.npz)")
  assert spec.name == 'f'
  assert spec.kwargs == {'i': 3, 'x': -1e-3, 'b': True, 'n': None, 's': 'a,b)', 't': (1, 2),
                         'l': [3], 'word': 'noise', 'q': 'its', 'path': '/data/x.npz'}
  assert spec.raw['s'] == '"a,b)"' and spec.raw['word'] == 'noise'
  assert specs.parse(' flip ') == specs.Spec('flip', text='flip')
  assert specs.parse('f()').kwargs == {} and specs.parse('f(a=1,)').kwargs == {'a': 1}


def test_nested_specs_are_values():
  spec = specs.parse('shift(data=corrupt(kind=noise,severity=5):cifar10, then=pgd(steps=20, '
                     'step_size=0.003))')
  assert spec.kwargs == {'data': 'corrupt(kind=noise,severity=5):cifar10',
                         'then': 'pgd(steps=20, step_size=0.003)'}
  inner = specs.parse(spec.kwargs['then'])
  assert inner.kwargs == {'steps': 20, 'step_size': 0.003}


def test_lists_and_pipelines_split_at_top_level_only():
  assert specs.split("corrupt(kind=noise,severity=5):cifar10, mnist,, knn(k=(1,2)),s='a,b'") == [
      'corrupt(kind=noise,severity=5):cifar10', 'mnist', 'knn(k=(1,2))', "s='a,b'"]
  assert specs.split('') == [] and specs.split(None) == []
  pipeline = specs.parse_pipeline('crop(padding=4)|flip|coin(alpha=2.0,wrap="a|b")')
  assert [(s.name, s.kwargs) for s in pipeline] == [
      ('crop', {'padding': 4}), ('flip', {}), ('coin', {'alpha': 2.0, 'wrap': 'a|b'})]
  assert [s.name for s in specs.parse_list('msp, energy(temperature=2)')] == ['msp', 'energy']


def test_prefixed_names_nest():
  spec, rest = specs.parse_prefixed('jpeg(quality=10):cuda(pb=0.3):cifar10')
  assert (spec.name, spec.kwargs, spec.args, spec.text) == (
      'jpeg', {'quality': 10}, 'quality=10', 'jpeg(quality=10)')
  spec, rest = specs.parse_prefixed(rest)
  assert (spec.name, spec.kwargs, rest) == ('cuda', {'pb': 0.3}, 'cifar10')
  assert specs.parse_prefixed('grayscale:cifar10')[0].args is None
  assert specs.parse_prefixed('cifar10') is None
  assert specs.parse_prefixed('cuda(pb=0.3):') is None
  # Only the prefix is read: the rest may be any path.
  assert specs.parse_prefixed("folder:/data/it's (1)")[1] == "/data/it's (1)"


@pytest.mark.parametrize('text,position,expected', [
    ('crop(4)', 5, 'key=value'),
    ('crop(padding=4', 14, "')' for the '(' at position 4"),
    ('crop(padding=4))', 15, 'the end'),
    ('crop|flip', 4, "'(' or the end"),
    ('f(a="x)', 7, 'a closing " for the quote at position 4'),
    ('(a=1)', 0, 'a name'),
    ('f(a=1,,b=2)', 6, 'key=value'),
    ('f(a=)', 4, 'a value for a'),
    ('f(a=[1,2)', 8, "']' for the '[' at position 4"),
])
def test_errors_give_position_and_expectation(text, position, expected):
  with pytest.raises(ConfigError, match=re.escape(f'position {position}: expected {expected}')):
    specs.parse(text)


def test_other_errors():
  with pytest.raises(ConfigError, match="'a' is given twice"):
    specs.parse('f(a=1, a=2)')
  with pytest.raises(ConfigError, match='position 3: expected a separator or the end'):
    specs.split('a,b),c')
  with pytest.raises(ConfigError, match='OOD detector list'):
    specs.split('msp,knn(k=5', what='OOD detector list')


def test_bind_checks_names_and_types():
  accepted = {'pb': 0.3, 'seed': 0, 'method': 'cuda', 'flag': False, 'sizes': (1,), 'any': None}
  spec = specs.parse("k(pb=1, seed=2, method=15, flag=True, sizes=[2, 3], any='x')")
  assert specs.bind(spec, accepted) == {'pb': 1.0, 'seed': 2, 'method': '15', 'flag': True,
                                        'sizes': (2, 3), 'any': 'x'}
  with pytest.raises(ConfigError, match="no argument 'colour'; it takes pb, seed"):
    specs.bind(specs.parse('k(colour=red)'), accepted)
  for bad, message in [('k(pb=high)', 'pb=high is not a float'), ('k(seed=1.5)', 'not a int'),
                       ('k(flag=1)', 'not a bool'), ('k(sizes=3)', 'not a tuple')]:
    with pytest.raises(ConfigError, match=message):
      specs.bind(specs.parse(bad), accepted)


def test_parameters_of_a_function():
  def op(rng, images, padding: int = 4, *, mode='constant', required):
    del rng, images, padding, mode, required
  assert specs.parameters(op, skip=2) == {'padding': 4, 'mode': 'constant',
                                          'required': specs.inspect.Parameter.empty}


def test_users_of_the_grammar():
  from jaxcv.data import registry
  from jaxcv.diffusion import sampling_sweep
  from jaxcv.ood import evaluate
  # --ood: the inner comma of a derived dataset's options does not split the list.
  assert evaluate.split_datasets('corrupt(kind=noise,severity=5):cifar10,mnist') == [
      'corrupt(kind=noise,severity=5):cifar10', 'mnist']
  assert registry.parse_derived_options('k', "method='vuda', test=15", {'method': '', 'test': ''}
                                        ) == {'method': 'vuda', 'test': '15'}
  assert sampling_sweep.parse_samplers('ddim(steps=(2,4)),dpm_solver_pp(steps=4),ddpm') == {
      'ddim': (2, 4), 'dpm_solver_pp': (4,), 'ddpm': sampling_sweep.DEFAULT_STEPS['ddpm']}
  with pytest.raises(ConfigError, match='unknown sampler'):
    sampling_sweep.parse_samplers('euler')
