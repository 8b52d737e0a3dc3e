import pkgutil

import lookalike


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(lookalike) if not name.startswith("_")}
    submodules = {m.name for m in pkgutil.iter_modules(lookalike.__path__)}
    assert set(lookalike.__all__) == public - submodules


def test_every_export_is_documented() -> None:
    for name in lookalike.__all__:
        assert getattr(lookalike, name).__doc__, name
