"""Build ``decision._sisr``, the compiled SISR search, ahead of time (numba's pycc).

python -m decision.sisr_build [--check]

``make setup`` runs it; it needs a C compiler and Python's headers. ``--check`` exits 1 when
the module is missing or older than ``decision/sisr_kernel.py`` instead of building it.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE = "_sisr"
KERNEL = HERE / "sisr_kernel.py"
SIGNATURE = (
    "void(i8, f8, f8, i8[:, ::1], i8[::1], f8[::1], i8[:, ::1], i8[::1], f8[::1], "
    "i8[:, ::1], f8[:, ::1], f8[::1], f8[::1], f8[::1], f8[::1], f8, i8)"
)


def built() -> Path | None:
    """The built module's file, if there is one."""
    found = sorted(HERE.glob(f"{MODULE}.*.so")) + sorted(HERE.glob(f"{MODULE}.*.pyd"))
    return found[0] if found else None


def current() -> bool:
    """Whether the built module is newer than the kernel's source."""
    path = built()
    return path is not None and path.stat().st_mtime >= KERNEL.stat().st_mtime


def build() -> Path:
    """Compile the kernel into ``decision/_sisr.<abi>.so``; returns its path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending-deprecation notice
        from numba.pycc import CC

        from decision import sisr_kernel

        cc = CC(MODULE)
        cc.output_dir = str(HERE)
        cc.verbose = False
        cc.export("search", SIGNATURE)(sisr_kernel.search)
        cc.compile()
    path = built()
    if path is None:
        raise RuntimeError("numba's pycc wrote no module")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check it is built")
    args = parser.parse_args()
    if current():
        return 0
    if args.check:
        print("decision._sisr is missing or stale: run python -m decision.sisr_build")
        return 1
    print(f"built {build().name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
