"""staffcast: demand forecasts, on-call pools and hiring targets for a nurse staffing agency."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("staffcast")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
