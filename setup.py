"""Build hook only (all metadata lives in setup.cfg): the shipped weights become package data of the wheel.

``models/`` stays at the top level of the checkout (design card); ``build_py`` copies ``models/*.pt`` into
``sarreg/_models/`` of the build, so ``pip install .`` (non-editable) installs them next to the code, where
``importlib.resources`` finds them. Editable installs skip the copy: the code then finds the checkout's ``models/``.
"""
from __future__ import annotations

import glob
import os

from setuptools import setup
from setuptools.command.build_py import build_py

MODELS = "models"
TARGET = ("sarreg", "_models")


class BuildPyWithModels(build_py):
    """``build_py`` plus the top-level ``models/*.pt`` copied into ``sarreg/_models/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = os.path.join(self.build_lib, *TARGET)
        self.mkpath(target)
        for src in sorted(glob.glob(os.path.join(MODELS, "*.pt"))):
            self.copy_file(src, os.path.join(target, os.path.basename(src)))


setup(cmdclass={"build_py": BuildPyWithModels})
