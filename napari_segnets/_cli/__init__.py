"""Subcommands of the ``napari-segnets`` command line (see :mod:`napari_segnets.cli`)."""
