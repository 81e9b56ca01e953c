"""``python -m stdl_edge``: the ``stdl-edge`` command, for launchers that run a module
(``torchrun --nproc-per-node 2 -m stdl_edge train ...``)."""

from __future__ import annotations

from stdl_edge.cli import main

if __name__ == "__main__":
    main()
