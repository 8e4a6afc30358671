"""Converts a PyTorch-ecosystem checkpoint file once into a jaxcv checkpoint.

    python -m jaxcv.pretrained.convert --kind torchvision_resnet \\
        --input resnet50-11ad3fa6.pth --output pretrained/resnet50
    python -m jaxcv.main --config ... --config.init_checkpoint=pretrained/resnet50

The output folder holds `checkpoints/0` (the parameters and BatchNorm statistics, read like any
run's by `init_checkpoint`) and `pretrained.json` (the source, the zoo model it fits, its
attributes, class count and input size: what the config must name).
"""

from __future__ import annotations

import argparse
import os
import sys

from jaxcv import main as main_lib

_EPILOG = """kinds: torchvision_resnet, timm_vit (options in the spec grammar, e.g.
'timm_vit(num_heads=6)', 'timm_vit(prefix="module.backbone.")'); see docs/pretrained.md."""


def write_checkpoint(converted, output: str, source: dict) -> str:
  """Writes `converted` under `output` (a new folder); returns its checkpoint step folder."""
  import jax  # pylint: disable=import-outside-toplevel
  from jaxcv import checkpoint as checkpoint_lib  # pylint: disable=import-outside-toplevel
  from jaxcv import pretrained, workdir  # pylint: disable=import-outside-toplevel
  from jaxcv.errors import ConfigError  # pylint: disable=import-outside-toplevel
  directory = checkpoint_lib.checkpoint_dir(output)
  if os.path.isdir(directory) and os.listdir(directory):
    raise ConfigError(f'--output {output} already holds checkpoints; choose a new folder')
  os.makedirs(output, exist_ok=True)
  workdir.ensure_writable(output, '--output')
  state = jax.tree.map(jax.numpy.asarray, pretrained.raw_state(converted))
  checkpointer = checkpoint_lib.Checkpointer(directory, keep=1, async_save=False)
  try:
    checkpointer.save(0, state, {'pretrained': source})
  finally:
    checkpointer.close()
  workdir.write_json(os.path.join(output, pretrained.RECORD_FILE), {
      **source, 'model': converted.model, 'model_kwargs': converted.model_kwargs,
      'num_classes': converted.num_classes, 'image_size': converted.image_size})
  return os.path.join(directory, '0')


def main(argv=None) -> int:
  parser = main_lib.ArgumentParser(
      prog='python -m jaxcv.pretrained.convert', description=__doc__, epilog=_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--kind', required=True, help="converter spec, e.g. 'torchvision_resnet'")
  parser.add_argument('--input', required=True, help='the checkpoint file (.safetensors, .npz, '
                      '.pth/.pt/.bin: the last need PyTorch)')
  parser.add_argument('--output', required=True, help='a new folder for the jaxcv checkpoint')
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  main_lib.setup_logging()
  from jaxcv import pretrained  # pylint: disable=import-outside-toplevel
  from jaxcv.errors import UserError  # pylint: disable=import-outside-toplevel
  try:
    converted = pretrained.convert_file(args.kind, args.input)
    step_dir = write_checkpoint(converted, args.output, {
        'kind': args.kind, 'input': os.path.abspath(args.input)})
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'{converted.describe()}\nwritten to {step_dir}; use init_checkpoint={args.output}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
