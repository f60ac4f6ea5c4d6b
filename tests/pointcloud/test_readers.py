"""Point-cloud and mesh readers: every format, normalisation, determinism, bad files."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh

from avsearch.errors import DecodeError
from avsearch.media.pointcloud import (
    PointCloudConfig,
    farthest_point_indices,
    load_pointcloud,
    prepare_points,
)

N = 8192


def write_ply(path: Path, xyz: np.ndarray, binary: bool) -> None:
    header = (
        f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\nelement vertex {len(xyz)}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    )
    with path.open("wb") as fh:
        fh.write(header.encode())
        if binary:
            fh.write(xyz.astype("<f4").tobytes())
        else:
            fh.write("".join(f"{x} {y} {z}\n" for x, y, z in xyz).encode())


def write_pcd(path: Path, xyz: np.ndarray, binary: bool) -> None:
    # x y z plus an rgb field, as PCL writes coloured clouds.
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\n"
        f"TYPE F F F U\nCOUNT 1 1 1 1\nWIDTH {len(xyz)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
        f"POINTS {len(xyz)}\nDATA {'binary' if binary else 'ascii'}\n"
    )
    with path.open("wb") as fh:
        fh.write(header.encode())
        if binary:
            rows = np.zeros(len(xyz), dtype=[("xyz", "<f4", (3,)), ("rgb", "<u4")])
            rows["xyz"] = xyz
            fh.write(rows.tobytes())
        else:
            fh.write("".join(f"{x} {y} {z} 4278190080\n" for x, y, z in xyz).encode())


def check_cloud(cloud: np.ndarray) -> None:
    assert cloud.shape == (N, 3) and cloud.dtype == np.float32
    assert np.isfinite(cloud).all()
    np.testing.assert_allclose(cloud.mean(axis=0), 0.0, atol=1e-5)
    assert np.linalg.norm(cloud, axis=1).max() == pytest.approx(1.0, abs=1e-5)


def assert_points_of(cloud: np.ndarray, points: np.ndarray) -> None:
    """The cloud is exactly `points` (each at least once, nothing else) after one centring and one
    isotropic scaling, estimated here from the two point sets rather than taken from the reader."""
    unique = np.unique(cloud.astype(np.float64), axis=0)
    assert len(unique) == len(np.unique(points, axis=0)), "points lost, merged or invented"
    scale = np.linalg.norm(points - points.mean(axis=0)) / np.linalg.norm(unique - unique.mean(axis=0))
    back = cloud.astype(np.float64) * scale + (points.mean(axis=0) - scale * unique.mean(axis=0))
    # Squared distances to every file point as |a|^2 + |b|^2 - 2ab (one matrix product; float64 keeps
    # the cancellation error near 1e-14, far below the 1e-8 tolerance).
    d = (back**2).sum(axis=1)[:, None] + (points**2).sum(axis=1)[None, :] - 2 * back @ points.T
    nearest = d.argmin(axis=1)
    assert d.min(axis=1).max() < 1e-8, "a returned point is none of the file's points"
    assert len(np.unique(nearest)) == len(points), "some of the file's points are missing"


@pytest.fixture(scope="module")
def mesh() -> trimesh.Trimesh:
    return trimesh.creation.box(extents=(1.0, 2.0, 3.0))


@pytest.mark.parametrize(
    "name",
    ["a.ply", "b.ply", "c.npy", "d.npz", "e.npz", "f.pcd", "g.pcd", "h.xyz", "i.txt", "dict.npy"],
)
def test_point_formats(tmp_path: Path, make_cloud, name: str) -> None:
    xyz = make_cloud(3000, seed=1)
    path = tmp_path / name
    if name == "a.ply":
        write_ply(path, xyz, binary=False)
    elif name == "b.ply":
        write_ply(path, xyz, binary=True)
    elif name == "c.npy":
        np.save(path, np.hstack([xyz, np.ones((len(xyz), 3))]))  # xyz + normals: extra columns dropped
    elif name == "d.npz":
        np.savez(path, xyz=xyz, label=np.array(3))
    elif name == "e.npz":
        np.savez(path, xyz.astype(np.float16))  # a single unnamed array
    elif name == "f.pcd":
        write_pcd(path, xyz, binary=False)
    elif name == "g.pcd":
        write_pcd(path, xyz, binary=True)
    elif name == "h.xyz":
        path.write_text("".join(f"{x} {y} {z}\n" for x, y, z in xyz))
    elif name == "i.txt":  # ModelNet40 resampled style: x,y,z,nx,ny,nz
        path.write_text("".join(f"{x:.6f},{y:.6f},{z:.6f},0,0,1\n" for x, y, z in xyz))
    elif name == "dict.npy":  # C-MCR's assets: a pickled dict with float16 'xyz'
        np.save(path, {"xyz": xyz.astype(np.float16), "name": "toy"}, allow_pickle=True)
    cloud = load_pointcloud(path)
    check_cloud(cloud)
    # 3,000 points < 8,192: every one of the file's points is kept (as the file stores it), the rest are
    # repeats, all through one centring and scaling.
    stored = {"b.ply": np.float32, "g.pcd": np.float32, "e.npz": np.float16, "dict.npy": np.float16}
    points = xyz.round(6) if name == "i.txt" else xyz.astype(stored.get(name, np.float64)).astype(np.float64)
    assert_points_of(cloud, points)


def test_large_clouds_keep_the_farthest_point_sample(tmp_path: Path, make_cloud) -> None:
    # A plain reference FPS from the documented start (the point farthest from the centroid) picks the
    # same points as the reader. 1,024 of 1,500 keeps it fast; the code path is the one 8,192 takes.
    cfg = PointCloudConfig(num_points=1024)
    xyz = make_cloud(1500, seed=4)
    np.save(tmp_path / "big.npy", xyz)
    cloud = load_pointcloud(tmp_path / "big.npy", cfg)
    assert cloud.shape == (1024, 3) and cloud.dtype == np.float32
    picked = [int(np.argmax(((xyz - xyz.mean(axis=0)) ** 2).sum(axis=1)))]
    dist = ((xyz - xyz[picked[0]]) ** 2).sum(axis=1)
    while len(picked) < cfg.num_points:
        picked.append(int(np.argmax(dist)))
        dist = np.minimum(dist, ((xyz - xyz[picked[-1]]) ** 2).sum(axis=1))
    assert len(set(picked)) == cfg.num_points
    assert_points_of(cloud, xyz[picked])


@pytest.mark.parametrize("ext", [".off", ".obj", ".stl", ".ply"])
def test_meshes_are_sampled_on_the_surface(tmp_path: Path, mesh: trimesh.Trimesh, ext: str) -> None:
    path = tmp_path / f"box{ext}"
    mesh.export(path)
    cloud = load_pointcloud(path)
    check_cloud(cloud)
    # Surface samples of a 1x2x3 box: every point lies on one of its 6 faces.
    lo, hi = cloud.min(axis=0), cloud.max(axis=0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    np.testing.assert_allclose(half / half[0], [1.0, 2.0, 3.0], rtol=1e-3)
    assert np.isclose(np.abs(cloud - centre), half, atol=1e-4).any(axis=1).all()
    if ext == ".off":
        assert np.array_equal(cloud, load_pointcloud(path))  # fixed-seed sampling


def test_resampling_is_deterministic_and_order_free_at_start(make_cloud) -> None:
    xyz = make_cloud(9000, seed=2)
    a, b = prepare_points(xyz), prepare_points(xyz.copy())
    assert np.array_equal(a, b)
    # FPS starts at the point farthest from the centroid, whatever the file's point order.
    perm = np.random.default_rng(0).permutation(len(xyz))
    start = farthest_point_indices(xyz, 1)[0]
    assert np.array_equal(xyz[perm][farthest_point_indices(xyz[perm], 1)[0]], xyz[start])


def test_small_clouds_are_padded(make_cloud) -> None:
    cloud = prepare_points(make_cloud(100, seed=3))
    check_cloud(cloud)
    assert len(np.unique(cloud, axis=0)) == 100


def test_nan_rows_dropped(make_cloud) -> None:
    xyz = make_cloud(1000)
    xyz[::10] = np.nan
    cloud = prepare_points(xyz)
    check_cloud(cloud)
    assert np.isfinite(cloud).all()  # the NaN rows were dropped, not propagated


def test_config_num_points(make_cloud) -> None:
    cloud = prepare_points(make_cloud(5000), PointCloudConfig(num_points=1024))
    assert cloud.shape == (1024, 3)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.ply", None, "no such file"),
        ("x.ply", b"not a ply at all", "not a .ply point cloud or mesh: it holds text"),
        ("empty.xyz", b"", "empty file (0 bytes)"),
        ("blank.xyz", b"# only a comment\n", "no points"),
        ("cols.xyz", b"1 2\n3 4\n", "fewer than 3 columns"),
        ("words.xyz", b"a b c\n", "non-numeric"),
        ("words.txt", b"a b c\n", "not an audio, image, video or point-cloud file"),  # prose: not media
        ("few.xyz", b"1 2 3\n4 5 6\n", "only 2 valid points"),
        ("same.xyz", b"1 2 3\n" * 50, "all points coincide"),
        ("trunc.npy", b"\x93NUMPY\x01\x00", "not a readable .npy array"),
        ("huge.npz", "huge", "array 'xyz' the header announces a (10000000000, 3) float32 array"),
        ("shape.npz", "shape", "expected an (N, 3) array"),
        ("nokey.npz", "nokey", "no 'xyz' array"),
        ("evil.npy", "evil", "refusing to unpickle"),
        (
            "z.pcd",
            b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nPOINTS 9\nDATA binary_compressed\n\x00",
            "binary_compressed",
        ),  # fmt: skip
        ("t.pcd", b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 100\nDATA binary\n\x00\x00", "truncated"),
        ("a.las", b"LASF", "unsupported point-cloud format"),
        ("broken.stl", b"solid x\nfacet normal 0 0", "no vertices"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content, reason: str) -> None:
    path = tmp_path / name
    if content == "shape":
        np.savez(path, xyz=np.zeros((10, 2)))
    elif content == "nokey":
        np.savez(path, a=np.zeros((10, 3)), b=np.zeros((10, 3)))
    elif content == "huge":  # a compressed member whose .npy header claims 120 GB: never decompressed
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**10, 3)})
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("xyz.npy", header.getvalue() + bytes(12))
    elif content == "evil":
        arr = np.empty((), dtype=object)
        arr[()] = {"xyz": Evil()}
        with path.open("wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": ()})
            pickle.dump(arr, fh, protocol=3)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DecodeError) as info:
        load_pointcloud(path)
    message = str(info.value)
    assert str(path) in message and reason in message, message
    assert "\n" not in message


def test_binary_ply_is_little_endian_floats(tmp_path: Path) -> None:
    # A hand-packed binary PLY (no library on the writing side) reads back to the same points.
    pts = [(float(i), float(i % 7), float(i % 13)) for i in range(600)]
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 600\nproperty float x\n"
    header += b"property float y\nproperty float z\nend_header\n"
    body = b"".join(struct.pack("<3f", *p) for p in pts)
    (tmp_path / "p.ply").write_bytes(header + body)
    cloud = load_pointcloud(tmp_path / "p.ply")
    expected = prepare_points(np.array(pts))
    np.testing.assert_allclose(cloud, expected, atol=1e-6)


@pytest.mark.parametrize(
    "name", ["a.ply", "b.ply", "c.npy", "d.npz", "f.pcd", "g.pcd", "h.xyz", "i.txt", "dict.npy", "j.csv", "k.pcd"]
)
@pytest.mark.parametrize("alias", ["shape.png", "shape"])
def test_point_files_are_read_by_content_whatever_their_name(tmp_path: Path, make_cloud, name: str, alias: str) -> None:
    xyz = make_cloud(500, seed=5)
    path = tmp_path / name
    if name.endswith(".ply"):
        write_ply(path, xyz, binary=name == "b.ply")
    elif name == "c.npy":
        np.save(path, xyz)
    elif name == "d.npz":
        np.savez_compressed(path, points=xyz)
    elif name in ("f.pcd", "g.pcd"):
        write_pcd(path, xyz, binary=name == "g.pcd")
    elif name == "k.pcd":  # no '# .PCD' comment line: told by its VERSION/FIELDS header
        write_pcd(path, xyz, binary=True)
        path.write_bytes(path.read_bytes().split(b"\n", 1)[1])
    elif name == "h.xyz":
        path.write_text("".join(f"{x} {y} {z}\n" for x, y, z in xyz))
    elif name == "i.txt":
        path.write_text("".join(f"{x},{y},{z},0,0,1\n" for x, y, z in xyz))
    elif name == "j.csv":  # a spreadsheet export: a header line names the columns, x y z not first
        path.write_text("id,X,Y,Z\n" + "".join(f"{i},{x},{y},{z}\n" for i, (x, y, z) in enumerate(xyz)))
    elif name == "dict.npy":
        np.save(path, {"xyz": xyz.astype(np.float16)}, allow_pickle=True)
    other = tmp_path / alias
    other.write_bytes(path.read_bytes())
    cloud = load_pointcloud(other)
    check_cloud(cloud)
    np.testing.assert_array_equal(cloud, load_pointcloud(path))


@pytest.mark.parametrize("file_type", ["off", "obj", "stl", "stl_ascii", "ply"])
def test_meshes_are_read_by_content_whatever_their_name(tmp_path: Path, mesh: trimesh.Trimesh, file_type: str) -> None:
    data = mesh.export(file_type=file_type)
    path = tmp_path / "model.png"  # a misleading name: the content decides
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    cloud = load_pointcloud(path)
    lo, hi = cloud.min(axis=0), cloud.max(axis=0)
    np.testing.assert_allclose((hi - lo) / (hi - lo)[0], [1.0, 2.0, 3.0], rtol=1e-3)  # the 1x2x3 box


def test_a_lying_npy_header_is_refused_without_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.npy"
    with path.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (10**10, 3)})
        fh.write(bytes(24))
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("the array was loaded"))
    with pytest.raises(DecodeError, match=r"huge.npy: the header announces a \(10000000000, 3\) float64 array"):
        load_pointcloud(path)
