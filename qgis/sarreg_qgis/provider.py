"""The Processing provider ``sarreg`` and its one setting: the path of the sarreg executable."""
from __future__ import annotations

from qgis.core import QgsProcessingProvider

from .algorithms import ALGORITHMS

SETTING_EXECUTABLE = "SARREG_EXECUTABLE"


def executable_setting() -> str | None:
    """Processing > Options > Providers > sarreg > sarreg executable (None outside QGIS's Processing)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:
        return None
    return ProcessingConfig.getSetting(SETTING_EXECUTABLE) or None


class SarregProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "sarreg"

    def name(self) -> str:
        return "sarreg"

    def longName(self) -> str:  # noqa: N802
        return "sarreg: SAR co-registration"

    def load(self) -> bool:
        try:
            from processing.core.ProcessingConfig import ProcessingConfig, Setting
        except ImportError:  # Processing's Python plugin is not loaded: the environment / PATH decide
            pass
        else:
            ProcessingConfig.addSetting(Setting(
                self.name(), SETTING_EXECUTABLE,
                "sarreg executable (empty: $SARREG_EXECUTABLE, else sarreg on PATH, else the checkout's .venv)", "",
                valuetype=Setting.FILE))
            ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        try:
            from processing.core.ProcessingConfig import ProcessingConfig
        except ImportError:
            return
        ProcessingConfig.removeSetting(SETTING_EXECUTABLE)

    def loadAlgorithms(self) -> None:  # noqa: N802
        for cls in ALGORITHMS:
            self.addAlgorithm(cls())
