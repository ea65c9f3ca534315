"""sarreg for QGIS: a Processing provider whose algorithms run the installed ``sarreg`` command.

QGIS's Python never imports sarreg (nor torch): the algorithms start ``sarreg`` in a subprocess
(``runner.py``) and take its options from ``cli_spec.json`` (generated from the CLI by ``qgis/make_spec.py``).
"""


def classFactory(iface):  # noqa: N802 - QGIS's entry point
    from .plugin import SarregPlugin

    return SarregPlugin(iface)
