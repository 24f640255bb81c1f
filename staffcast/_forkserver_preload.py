"""Preloaded by the forecast pool's forkserver only (never import it elsewhere): the forkserver
stops when the run that started it dies (staffcast.die_with_parent)."""

from staffcast.die_with_parent import die_with_parent

die_with_parent()
