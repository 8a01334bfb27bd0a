"""Build the release artifact: `python tools/build_release.py` → dist/zstack-<version>.tar.gz.

The tarball holds one directory, zstack-<version>/, with install.sh, installer/ (the Ansible
playbooks), wheels/zstack-<version>-py3-none-any.whl, constraints.txt (the versions of its
dependencies that install.sh and zstack-ctl upgrade install) and VERSION. Beside it go
zstack-<version>.tar.gz.sha256 and the install.sh to publish: the same script with the version,
the tarball's sha256 and (with --base-url) the URL it is served from baked in, so that
`curl -fsSL <base-url>/install.sh | bash -s -- ...` fetches and checks the tarball by itself.

Invariants: the build reads a copy of the sources (the work tree gets no build/ or egg-info), and
the same sources give byte-identical wheels and tarballs (fixed timestamps, sorted entries), so a
rerun of install.sh from a checkout sees an unchanged release and changes nothing.
`--stage DIR` writes the unpacked zstack-<version>/ layout to DIR instead (install.sh uses it).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "mn", "kvmagent", "simulator", "zstack_plugins")
EPOCH = 315532800  # 1980-01-01: the oldest time a zip (wheel) entry can hold
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.retry", ".pytest_cache")


def version(root: Path = ROOT) -> str:
    """The version in mn/__init__.py (the one the wheel carries)."""
    m = re.search(r'^__version__ = "([^"]+)"', (root / "mn" / "__init__.py").read_text(), re.M)
    if not m:
        raise SystemExit(f"build_release: no __version__ in {root / 'mn' / '__init__.py'}")
    return m.group(1)


def build_wheel(out: Path, root: Path = ROOT) -> Path:
    """pip-build the project's wheel from a copy of its sources into `out`; returns the wheel."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zstack-build-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in SOURCES:
            path = root / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=IGNORE)
            else:
                shutil.copy2(path, src / name)
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH), PIP_DISABLE_PIP_VERSION_CHECK="1")
        wheels = Path(tmp) / "wheels"
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
                           env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"build_release: pip wheel failed:\n{r.stdout}{r.stderr}")
        built = sorted(wheels.glob("zstack-*.whl"))
        if len(built) != 1:
            raise SystemExit(f"build_release: expected one zstack wheel, pip made {built}")
        dest = out / built[0].name
        shutil.copyfile(built[0], dest)
        return dest


def stage(dest: Path, root: Path = ROOT) -> Path:
    """Write the unpacked release layout (install.sh, installer/, wheels/, constraints.txt, VERSION)
    into `dest`."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(root / "install.sh", dest / "install.sh")
    shutil.copy2(root / "constraints.txt", dest / "constraints.txt")
    shutil.copytree(root / "installer", dest / "installer", ignore=IGNORE)
    build_wheel(dest / "wheels", root)
    (dest / "VERSION").write_text(version(root) + "\n")
    return dest


def _tar_entry(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def tarball(staged: Path, out: Path) -> Path:
    """A reproducible tar.gz of `staged` under the top directory `out`'s stem (sorted, fixed times)."""
    top = out.name[: -len(".tar.gz")]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(staged, arcname=top, recursive=False, filter=_tar_entry)
        for path in sorted(staged.rglob("*")):
            tar.add(path, arcname=f"{top}/{path.relative_to(staged)}", recursive=False, filter=_tar_entry)
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=EPOCH) as gz:
        gz.write(buf.getvalue())
    return out


def publish_script(script: str, release_version: str, sha256: str, base_url: str) -> str:
    """install.sh with the release facts baked into its RELEASE_* lines."""
    values = {"RELEASE_VERSION": release_version, "RELEASE_SHA256": sha256, "RELEASE_BASE_URL": base_url}
    for key, value in values.items():
        script, n = re.subn(rf'^{key}=""$', f'{key}="{value}"', script, count=1, flags=re.M)
        if n != 1:
            raise SystemExit(f'build_release: install.sh has no line {key}="" to fill in')
    return script


def build(dist: Path, base_url: str = "", root: Path = ROOT) -> Path:
    """The release tarball, its .sha256 and the install.sh to publish, in `dist`; returns the tarball."""
    v = version(root)
    dist.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zstack-release-") as tmp:
        staged = stage(Path(tmp) / f"zstack-{v}", root)
        out = tarball(staged, dist / f"zstack-{v}.tar.gz")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    (dist / f"{out.name}.sha256").write_text(f"{digest}  {out.name}\n")
    script = dist / "install.sh"
    script.write_text(publish_script((root / "install.sh").read_text(), v, digest, base_url.rstrip("/")))
    script.chmod(0o755)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build dist/zstack-<version>.tar.gz (and the install.sh to "
                                "publish beside it).")
    p.add_argument("--dist", type=Path, default=ROOT / "dist", help="output directory (default: dist/)")
    p.add_argument("--base-url", default="", help="the URL the dist directory will be served from; baked "
                   "into the published install.sh so that, piped from curl, it fetches the tarball there")
    p.add_argument("--stage", type=Path, help="write the unpacked release layout here instead of a tarball")
    args = p.parse_args(argv)
    if args.stage:
        print(stage(args.stage.resolve()))
        return 0
    out = build(args.dist.resolve(), args.base_url)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
