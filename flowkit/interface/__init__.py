"""The interface layer: the Python API (``api``), the command line over it (``cli``), the commands it runs
(``commands``: sample, eval, compare, invert, encode) and every registry in one place (``registries``, for
``flowkit list``). The top of the stack: imports any layer; nothing in flowkit imports it but ``flowkit/__init__``
(lazily) and ``__main__``.
"""
