"""The FiftyOne App with lookalike inside: the plugin found automatically, the dataset served.

The plugin ships in the package (``lookalike/app_plugin``); :func:`install_plugin` links it into
FiftyOne's plugins directory, so an upgrade of lookalike upgrades the plugin with it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .datasets import get_dataset

log = logging.getLogger(__name__)

PLUGIN_DIR = Path(__file__).parent / "app_plugin"
PLUGIN_LINK = "lookalike"  # its name in the plugins directory


def install_plugin() -> Path:
    """Link the plugin into ``fo.config.plugins_dir`` (created if needed); returns the link.

    A folder of that name that is not our link (a copy someone made) is left alone, with a warning."""
    import fiftyone as fo

    if not fo.config.plugins_dir:
        fo.config.plugins_dir = str(Path.home() / "fiftyone" / "__plugins__")
    link = Path(fo.config.plugins_dir).expanduser() / PLUGIN_LINK
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() != PLUGIN_DIR.resolve():
        link.unlink()  # points at another (older) install of lookalike
    if not link.exists() and not link.is_symlink():
        link.symlink_to(PLUGIN_DIR.resolve(), target_is_directory=True)
    elif link.resolve() != PLUGIN_DIR.resolve():
        log.warning("%s is not lookalike's plugin link; leaving it as it is", link)
    return link


def launch(name: str, port: int = 5151, address: str = "localhost") -> Any:
    """Serve dataset ``name`` in the App with the lookalike plugin; returns FiftyOne's session."""
    import fiftyone as fo

    install_plugin()
    return fo.launch_app(get_dataset(name), remote=True, port=port, address=address)
