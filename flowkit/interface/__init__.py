"""The interface layer: the Python API (``api``), the command line over it (``cli``), the commands it runs
(``commands``: sample, eval, compare, invert, encode) and every registry in one place (``registries``, for
``flowkit list``). The top of the stack: imports any layer; nothing in flowkit imports it but ``flowkit/__init__``
(lazily) and ``__main__``.
"""


def main() -> int | None:
    """The ``flowkit`` console script: Ctrl-C handled from the first moment (``flowkit.runtime.interrupt``), then
    the typer app (``flowkit.interface.cli``)."""
    from flowkit.runtime.interrupt import install

    install()
    from flowkit.interface.cli import main as run

    return run()
