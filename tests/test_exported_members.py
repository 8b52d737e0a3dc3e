import lookalike


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(lookalike) if not name.startswith("_")}
    modules = {"api", "cli", "config", "datasets", "demo", "embedding", "exceptions", "graph", "index", "models"}
    assert set(lookalike.__all__) == public - modules


def test_every_export_is_documented() -> None:
    for name in lookalike.__all__:
        assert getattr(lookalike, name).__doc__, name
