"""The FiftyOne App with lookalike inside: the plugin found automatically, the dataset served.

The plugin ships in the package (``lookalike/app_plugin``); :func:`install_plugin` links it into
FiftyOne's plugins directory, so an upgrade of lookalike upgrades the plugin with it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .datasets import get_dataset
from .exceptions import LookalikeError

log = logging.getLogger(__name__)

PLUGIN_DIR = Path(__file__).parent / "app_plugin"
PLUGIN_LINK = "lookalike"  # its name in the plugins directory
CONNECT_TIMEOUT = 120  # seconds for the App server to answer: its first start in a fresh environment is slow


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
    session = fo.launch_app(get_dataset(name), remote=True, port=port, address=address)
    _wait_until_connected(session, f"{address}:{port}")
    return session


def _wait_until_connected(session: Any, where: str) -> None:
    """Return once ``session`` can be changed.

    FiftyOne's session connects to its server from a thread and, when its first try comes before the
    server is up, tries again 10 s later; until then every change to the session (its view, its spaces)
    raises "Client is not connected"."""
    import requests

    client = getattr(session, "_client", None)
    if client is None:
        return
    deadline = time.monotonic() + CONNECT_TIMEOUT

    def wait_for(ready: Any) -> None:
        while not ready():
            if time.monotonic() > deadline:
                raise LookalikeError(f"the FiftyOne App on {where} did not answer in {CONNECT_TIMEOUT} s; check "
                                     "that the port is free, or run `fiftyone app launch` to see why")
            time.sleep(0.2)

    def server_answers() -> bool:
        try:
            requests.get(f"{client.origin}/fiftyone", timeout=5)
            return True
        except requests.RequestException:
            return False

    wait_for(server_answers)
    time.sleep(1)  # a first try of the session's thread that failed before the server was up lands by now
    wait_for(lambda: getattr(client, "_connected", True))
