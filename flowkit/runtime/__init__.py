"""The runtime layer: what every layer above may use to touch the machine and the disk.

Safe checkpoint reading and atomic writes (``checkpoint``), run directories with one writer (``rundir``), memory
checks before an allocation (``memory``), non-finite watching (``finite``), and progress lines and bars
(``progress``, ``ticker``). Imports only the ground floor (``flowkit.errors``, ``flowkit.registry``).
"""
