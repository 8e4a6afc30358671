"""Builds jaxcv/data/sample/cifar10-sample.tar.gz, the CIFAR-10 sample shipped in the package.

Takes the first 1000 images of each class from train and the first 200 of each class from test
(`k.jpg` is the k-th image of its class in the official order), copying the JPEG bytes unchanged,
in the source's layout `cifar10/{train,test}/<class>/NNNN.jpg`. The output is byte-for-byte
reproducible: members sorted, fixed metadata, gzip timestamp 0.

  python scripts/make_cifar10_sample.py [--source DATA_DIR/cifar10-jpeg.tar.gz] [--out ...]

--source defaults to cifar10-jpeg.tar.gz in $JAXCV_DATA_DIR.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_NAME = 'cifar10-jpeg.tar.gz'
DEFAULT_OUT = REPO / 'jaxcv' / 'data' / 'sample' / 'cifar10-sample.tar.gz'
PER_CLASS = {'train': 1000, 'test': 200}


def select(source: Path) -> dict[str, bytes]:
  """{member name: JPEG bytes} for the images the sample keeps, streaming the source once."""
  kept = {}
  with tarfile.open(source, 'r|gz') as tar:
    for member in tar:
      parts = member.name.split('/')  # cifar10/<split>/<class>/<k>.jpg
      if not member.isfile() or len(parts) != 4 or parts[1] not in PER_CLASS:
        continue
      if int(Path(parts[3]).stem) < PER_CLASS[parts[1]]:
        kept[member.name] = tar.extractfile(member).read()
  return kept


def write(files: dict[str, bytes], out: Path) -> None:
  dirs = sorted({'/'.join(name.split('/')[:i]) for name in files for i in (1, 2, 3)})
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode='w', format=tarfile.USTAR_FORMAT) as tar:
    for name in sorted(dirs + list(files)):
      info = tarfile.TarInfo(name)
      info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, '', ''
      if name in files:
        info.size, info.mode = len(files[name]), 0o644
        tar.addfile(info, io.BytesIO(files[name]))
      else:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
  out.parent.mkdir(parents=True, exist_ok=True)
  with open(out, 'wb') as f, gzip.GzipFile(filename='', mode='wb', fileobj=f, mtime=0,
                                           compresslevel=9) as gz:
    gz.write(buffer.getvalue())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  data_dir = os.environ.get('JAXCV_DATA_DIR')
  parser.add_argument('--source', type=Path,
                      default=Path(data_dir) / SOURCE_NAME if data_dir else None,
                      help=f'the CIFAR-10 JPEG archive (default: $JAXCV_DATA_DIR/{SOURCE_NAME})')
  parser.add_argument('--out', type=Path, default=DEFAULT_OUT)
  args = parser.parse_args()
  if args.source is None:
    parser.error(f'pass --source PATH/{SOURCE_NAME} or set JAXCV_DATA_DIR')
  if not args.source.is_file():
    parser.error(f'--source {args.source} does not exist')
  files = select(args.source)
  expected = 10 * sum(PER_CLASS.values())
  if len(files) != expected:
    raise SystemExit(f'expected {expected} images in {args.source}, found {len(files)}')
  write(files, args.out)
  digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
  print(f'{args.out}: {len(files)} images, {args.out.stat().st_size / 1e6:.2f} MB, sha256 {digest}')


if __name__ == '__main__':
  main()
