"""Check a wheel set for the GPU machine: drop what it already has, then make sure nothing is missing.

    python benchmarks/gpu/check_wheels.py WHEEL_DIR PRESENT_FILE ROOT [ROOT ...]

Wheels of packages listed in PRESENT_FILE (the device image's packages, ``name`` or ``name==version``) are deleted:
the device's own copy is used; so are wheels no ROOT package needs through carried wheels (pip downloads the
dependencies of present packages too). Every remaining wheel's ``Requires-Dist`` (markers evaluated for CPython 3.12 on
Linux x86-64, with the extras a root or a carried requirement names, e.g. ``jsonargparse[signatures]``) must then be
met by a carried wheel or a present package (its version checked when the file gives one). Exit status 1, with the
list, when something is unmet or two versions of one package are carried.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

DEVICE = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
          "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}


def read_present(path: Path) -> dict[str, Version | None]:
    present: dict[str, Version | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            present[canonicalize_name(name)] = Version(version) if version else None
    return present


def requirements(wheel: Path, extras: set[str] = frozenset()) -> list[Requirement]:
    """The wheel's ``Requires-Dist`` that apply on the device, those of the named ``extras`` included."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode("utf-8").splitlines()
    found = []
    for line in lines:
        if line.startswith("Requires-Dist:"):
            requirement = Requirement(line.split(":", 1)[1].strip())
            if requirement.marker is None or any(requirement.marker.evaluate({**DEVICE, "extra": extra})
                                                 for extra in {"", *extras}):
                found.append(requirement)
    return found


def main() -> int:
    wheel_dir, present = Path(sys.argv[1]), read_present(Path(sys.argv[2]))
    root_requirements = [Requirement(root) for root in sys.argv[3:]]
    roots = [canonicalize_name(root.name) for root in root_requirements]
    extras: dict[str, set[str]] = {}  # the extras asked of each package, by a root or through a requirement
    for root in root_requirements:
        extras.setdefault(canonicalize_name(root.name), set()).update(root.extras)
    carried: dict[str, tuple[Version, Path]] = {}
    problems = []
    for wheel in sorted(wheel_dir.glob("*.whl")):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        if name in present:
            wheel.unlink()  # the device has it
            continue
        if name in carried:
            problems.append(f"two versions of {name}: {carried[name][0]} and {version}")
        carried[name] = (version, wheel)
    needed, queue = set(), [root for root in roots if root in carried]
    while queue:
        name = queue.pop()
        if name not in needed:
            needed.add(name)
            for requirement in requirements(carried[name][1], extras.get(name, set())):
                wanted = canonicalize_name(requirement.name)
                extras.setdefault(wanted, set()).update(requirement.extras)
                if wanted in carried:
                    queue.append(wanted)
    for name in set(carried) - needed:
        carried.pop(name)[1].unlink()
    for name, (_, wheel) in sorted(carried.items()):
        for requirement in requirements(wheel, extras.get(name, set())):
            wanted = canonicalize_name(requirement.name)
            if wanted in carried:
                if not requirement.specifier.contains(carried[wanted][0], prereleases=True):
                    problems.append(f"{name} needs {requirement}, carried {carried[wanted][0]}")
            elif wanted in present:
                version = present[wanted]
                if version is not None and not requirement.specifier.contains(version, prereleases=True):
                    problems.append(f"{name} needs {requirement}, the device has {version}")
            else:
                problems.append(f"{name} needs {requirement}: neither carried nor on the device")
    size = sum(wheel.stat().st_size for _, wheel in carried.values())
    print(f"{len(carried)} wheels carried ({size / 2**20:.1f} MiB), {len(present)} packages taken from the device")
    for problem in problems:
        print(f"  UNMET: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
