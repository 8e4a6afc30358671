"""Errors a user can cause and fix: the entry point prints these as one line, without a traceback."""


class UserError(Exception):
  """A mistake in the config, the command line or the data that the user can fix."""


class ConfigError(UserError):
  """An invalid config value or combination of values."""


class DatasetNotFoundError(UserError):
  """A named dataset whose files are not where they are expected."""


class CheckpointError(UserError):
  """No usable checkpoint where one is required."""


class NonFiniteLossError(UserError):
  """The training loss became NaN or infinite."""


class CheckpointSaveError(CheckpointError):
  """Writing a checkpoint failed (a full or unwritable disk, ...); earlier checkpoints are kept."""


class WorkdirLockedError(UserError):
  """Another run is using the same workdir."""


class DatasetFormatError(UserError):
  """Data files that exist but cannot be read as asked (mixed sizes, wrong format, ...)."""
