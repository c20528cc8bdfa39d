"""Strip the debug symbols from the compiled modules of wheels, so the GPU wheel set fits the 64 MiB a device call
carries (spaCy's wheel drops from 34 to about 8 MB; the code is unchanged, only symbol tables go).

    python benchmarks/gpu/strip_wheels.py WHEEL [WHEEL ...]

Each ``*.so`` is run through ``strip --strip-unneeded``; RECORD gets the new sha256 and sizes, so pip installs the
wheel as usual.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def strip_wheel(wheel: Path) -> tuple[int, int]:
    before = wheel.stat().st_size
    with zipfile.ZipFile(wheel) as source:
        if not any(name.endswith(".so") for name in source.namelist()):
            return before, before
        contents = {info.filename: source.read(info) for info in source.infolist()}
    with tempfile.TemporaryDirectory() as scratch:
        for name, data in contents.items():
            if name.endswith(".so"):
                path = Path(scratch) / "module.so"
                path.write_bytes(data)
                subprocess.run(["strip", "--strip-unneeded", str(path)], check=True)
                contents[name] = path.read_bytes()
    record = next(name for name in contents if name.endswith(".dist-info/RECORD"))
    rows = []
    for line in contents[record].decode().splitlines():
        name = line.split(",")[0]
        if name in contents and name != record:
            rows.append(f"{name},{record_hash(contents[name])},{len(contents[name])}")
        elif line:
            rows.append(line)
    contents[record] = ("\n".join(rows) + "\n").encode()
    slim = wheel.with_suffix(".stripped")
    with zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in contents.items():
            target.writestr(name, data)
    slim.replace(wheel)
    return before, wheel.stat().st_size


def main() -> None:
    total_before = total_after = 0
    for argument in sys.argv[1:]:
        before, after = strip_wheel(Path(argument))
        total_before, total_after = total_before + before, total_after + after
    print(f"stripped: {total_before / 2**20:.1f} → {total_after / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
