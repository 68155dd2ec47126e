"""``numbacnn data import-cifar10``: the official CIFAR-10 and CIFAR-100 distributions,
built here byte for byte in their published layouts (binary records, Python 2 style
pickles, tar.gz), imported, trained on, and refused when damaged or tampered with."""

from __future__ import annotations

import io
import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_ok, assert_one_error, run

from numbacnn.errors import DataError
from numbacnn.io.cifar import import_cifar
from numbacnn.io.dataset_files import load_dataset
from numbacnn.io.safe_pickle import UnsafePickleError, safe_loads

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]
PER_BATCH = 12  # the official batches hold 10,000 records; the layout is the same


def batches(seed: int = 0, classes: int = 10, n: int = PER_BATCH) -> list[tuple]:
    """Six (images uint8 N×3×32×32, labels) batches: five train, one test."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
             rng.integers(0, classes, n)) for _ in range(6)]


def binary_record_bytes(x: np.ndarray, *labels: np.ndarray) -> bytes:
    """Records of label byte(s) then the R, G, B planes (3,072 bytes)."""
    rows = [np.stack(labels, axis=1).astype(np.uint8), x.reshape(len(x), -1)]
    return np.concatenate(rows, axis=1).tobytes()


def py2_pickle(obj: object) -> bytes:
    """Protocol 2 with byte-string keys, as Python 2's cPickle wrote the originals."""
    return pickle.dumps(obj, protocol=2)


def cifar10_files(kind: str, parts: list[tuple]) -> dict[str, bytes]:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if kind == "binary":
        files = {f"{n}.bin": binary_record_bytes(x, y)
                 for n, (x, y) in zip(names, parts, strict=True)}
        files["batches.meta.txt"] = ("\n".join(CLASSES) + "\n\n").encode()
        return files
    files = {"batches.meta": py2_pickle({b"label_names": [c.encode() for c in CLASSES],
                                        b"num_cases_per_batch": PER_BATCH, b"num_vis": 3072})}
    for n, (x, y) in zip(names, parts, strict=True):
        files[n] = py2_pickle({b"batch_label": f"{n} of 5".encode(), b"labels": y.tolist(),
                               b"data": x.reshape(len(x), -1),
                               b"filenames": [f"img_{i}.png".encode() for i in range(len(x))]})
    return files


def cifar100_files(kind: str, x: list, fine: list, coarse: list) -> dict[str, bytes]:
    fine_names = [f"fine{k}" for k in range(100)]
    coarse_names = [f"coarse{k}" for k in range(20)]
    if kind == "binary":
        return {"train.bin": binary_record_bytes(x[0], coarse[0], fine[0]),
                "test.bin": binary_record_bytes(x[1], coarse[1], fine[1]),
                "fine_label_names.txt": "\n".join(fine_names).encode(),
                "coarse_label_names.txt": "\n".join(coarse_names).encode()}
    files = {"meta": py2_pickle({b"fine_label_names": [n.encode() for n in fine_names],
                                 b"coarse_label_names": [n.encode() for n in coarse_names]})}
    for split, i in (("train", 0), ("test", 1)):
        files[split] = py2_pickle({b"data": x[i].reshape(len(x[i]), -1),
                                   b"fine_labels": fine[i].tolist(),
                                   b"coarse_labels": coarse[i].tolist()})
    return files


def write_tar(path: Path, folder: str, files: dict[str, bytes],
              extra: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        folder_info = tarfile.TarInfo(folder)
        folder_info.type = tarfile.DIRTYPE
        tar.addfile(folder_info)
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return path


def write_folder(path: Path, files: dict[str, bytes]) -> Path:
    path.mkdir(parents=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


FOLDER = {"binary": "cifar-10-batches-bin", "python": "cifar-10-batches-py"}


def assert_cifar10(ds, parts) -> None:
    assert ds.class_names == CLASSES and ds.input_shape == (3, 32, 32)
    np.testing.assert_array_equal(ds.x_train, np.concatenate([x for x, _ in parts[:5]]))
    np.testing.assert_array_equal(ds.y_train, np.concatenate([y for _, y in parts[:5]]))
    np.testing.assert_array_equal(ds.x_test, parts[5][0])
    np.testing.assert_array_equal(ds.y_test, parts[5][1])


@pytest.mark.parametrize("kind", ["binary", "python"])
def test_archive_and_folder_import_bit_exact(tmp_path: Path, kind: str) -> None:
    parts = batches()
    files = cifar10_files(kind, parts)
    archive = write_tar(tmp_path / f"cifar-10-{kind}.tar.gz", FOLDER[kind], files)
    assert_cifar10(import_cifar(archive), parts)
    extracted = write_folder(tmp_path / "x" / FOLDER[kind], files)
    assert_cifar10(import_cifar(extracted), parts)  # the folder itself
    assert_cifar10(import_cifar(extracted.parent), parts)  # the folder holding it


def test_binary_planes_are_r_g_b_rows_top_to_bottom(tmp_path: Path) -> None:
    parts = batches()
    record = bytearray(cifar10_files("binary", parts)["test_batch.bin"][:3073])
    record[1 + 1024 + 32 * 5 + 7] = 201  # G plane, row 5, column 7 of image 0
    files = cifar10_files("binary", parts)
    files["test_batch.bin"] = bytes(record) + files["test_batch.bin"][3073:]
    ds = import_cifar(write_folder(tmp_path / FOLDER["binary"], files))
    assert ds.x_test[0, 1, 5, 7] == 201 and ds.y_test[0] == record[0]


@pytest.mark.parametrize("kind", ["binary", "python"])
def test_cifar100_fine_and_coarse_labels(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(3)
    x = [rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8) for n in (9, 4)]
    fine = [rng.integers(0, 100, n) for n in (9, 4)]
    coarse = [rng.integers(0, 20, n) for n in (9, 4)]
    folder = {"binary": "cifar-100-binary", "python": "cifar-100-python"}[kind]
    archive = write_tar(tmp_path / "c100.tar.gz", folder, cifar100_files(kind, x, fine, coarse))
    ds = import_cifar(archive)  # fine by default
    assert ds.num_classes == 100 and ds.name == "cifar100-fine" and ds.class_names[7] == "fine7"
    np.testing.assert_array_equal(ds.y_train, fine[0])
    np.testing.assert_array_equal(ds.x_test, x[1])
    ds = import_cifar(archive, labels="coarse")
    assert ds.num_classes == 20 and ds.name == "cifar100-coarse"
    np.testing.assert_array_equal(ds.y_test, coarse[1])


@pytest.mark.parametrize("kind", ["binary", "python"])
def test_cli_imports_and_trains_cifar10_preset(tmp_path: Path, kind: str) -> None:
    parts = batches(n=8)
    archive = write_tar(tmp_path / "cifar.tar.gz", FOLDER[kind], cifar10_files(kind, parts))
    out = tmp_path / "cifar10.h5"
    result = run("data", "import-cifar10", archive, out)
    assert_ok(result)
    assert "cifar10, 40 train + 8 test images of 32x32x3 (W x H x D), 10 classes" in result.output
    assert_cifar10(load_dataset(out), parts)
    model = tmp_path / "m.h5"
    trained = run("train", "cifar10", "--data", out, "--epochs", 1, "--limit", 16,
                  "--batch-size", 8, "--val-split", 0, "--out", model, "--device", "cpu")
    assert_ok(trained)
    assert model.exists() and "test accuracy" in trained.output


# ----------------------------------------------------------------------------- refusals


class Payload:
    """Unpickling this would run os.system and create the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    parts = batches(n=2)
    files = cifar10_files("python", parts)
    files["data_batch_3"] = pickle.dumps({b"data": Payload(marker), b"labels": [0, 1]},
                                         protocol=protocol)
    assert pickle.loads(pickle.dumps(Payload(tmp_path / "proof"), protocol=protocol)) == 0
    assert (tmp_path / "proof").exists()  # the payload works when unpickled for real
    archive = write_tar(tmp_path / "evil.tar.gz", FOLDER["python"], files)
    out = tmp_path / "out.h5"
    line = assert_one_error(run("data", "import-cifar10", archive, out),
                            "data_batch_3: refused: the pickle names posix.system")
    assert "nothing was run" in line
    assert not marker.exists() and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz", "proof"]


@pytest.mark.parametrize("obj", [
    pytest.param(eval, id="builtin eval"), pytest.param(Path, id="a class"),
    pytest.param(np.ma.masked_array([1]), id="an ndarray subclass"),
])
def test_safe_loads_refuses_every_other_global(obj: object) -> None:
    with pytest.raises(UnsafePickleError, match="nothing was run"):
        safe_loads(pickle.dumps(obj, protocol=2))


def test_safe_loads_reads_plain_data_and_arrays() -> None:
    data = {"a": [1, 2.5, None, True, b"x", ("t",)], "x": np.arange(6, dtype=np.uint8),
            "n": np.int64(7), "s": {"nested": np.zeros((2, 3), np.float32)}}
    for protocol in range(6):
        back = safe_loads(pickle.dumps(data, protocol=protocol))
        assert back["a"] == data["a"] and back["n"] == 7
        np.testing.assert_array_equal(back["x"], data["x"])
        assert back["s"]["nested"].shape == (2, 3)
    with pytest.raises(UnsafePickleError, match="not a readable pickle"):
        safe_loads(pickle.dumps(data)[:-5])


def _damaged(kind: str, change: str) -> dict[str, bytes]:
    parts = batches(n=3)
    files = cifar10_files(kind, parts)
    if change == "truncated":
        files["data_batch_2.bin"] = files["data_batch_2.bin"][:-100]
    elif change == "record size":  # CIFAR-100-sized records (2 label bytes) in a CIFAR-10 batch
        x, y = parts[1]
        files["data_batch_2.bin"] = binary_record_bytes(x, y, y)
    elif change == "label":
        raw = bytearray(files["data_batch_2.bin"])
        raw[3073] = 10
        files["data_batch_2.bin"] = bytes(raw)
    elif change == "missing":
        del files["data_batch_4.bin" if kind == "binary" else "data_batch_4"]
    elif change == "python label":
        files["test_batch"] = py2_pickle({b"data": parts[5][0].reshape(3, -1),
                                          b"labels": [0, 11, 2]})
    elif change == "python shape":
        files["test_batch"] = py2_pickle({b"data": parts[5][0].reshape(3, -1)[:, :100],
                                          b"labels": [0, 1, 2]})
    elif change == "meta":
        files["batches.meta.txt"] = b"cat\ndog\n"
    return files


@pytest.mark.parametrize(("kind", "change", "message"), [
    ("binary", "truncated", "data_batch_2.bin: 9,119 bytes are not a whole number of 3,073-byte "
     "records (1 label byte + 3,072 pixel bytes); the file is truncated"),
    ("binary", "record size", "data_batch_2.bin: 9,222 bytes are not a whole number"),
    ("binary", "label", "data_batch_2.bin: image 1 has label 10, outside 0-9"),
    ("binary", "missing", "CIFAR-10 binary without data_batch_4.bin"),
    ("binary", "meta", "batches.meta.txt: names 2 classes, CIFAR-10 binary has 10"),
    ("python", "missing", "CIFAR-10 python without data_batch_4"),
    ("python", "python label", "test_batch: image 1 has label 11, outside 0-9"),
    ("python", "python shape", "test_batch: data is uint8 (3, 100), expected uint8 N x 3072"),
])
def test_damaged_distributions_are_one_line_and_write_nothing(
        tmp_path: Path, kind: str, change: str, message: str) -> None:
    archive = write_tar(tmp_path / "c.tar.gz", FOLDER[kind], _damaged(kind, change))
    out = tmp_path / "out.h5"
    assert_one_error(run("data", "import-cifar10", archive, out), message)
    assert not out.exists()
    with pytest.raises(DataError, match=re.escape(message.rsplit(": ", 1)[-1][:30])):
        import_cifar(write_folder(tmp_path / "dir" / FOLDER[kind], _damaged(kind, change)))


@pytest.mark.parametrize("member_type", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                                         tarfile.FIFOTYPE])
def test_links_and_devices_in_the_archive_are_refused(tmp_path: Path, member_type: bytes) -> None:
    link = tarfile.TarInfo("cifar-10-batches-bin/data_batch_6.bin")
    link.type, link.linkname = member_type, "/etc/passwd"
    archive = write_tar(tmp_path / "c.tar.gz", FOLDER["binary"],
                        cifar10_files("binary", batches(n=1)), extra=[link])
    line = assert_one_error(run("data", "import-cifar10", archive, tmp_path / "o.h5"),
                            "member cifar-10-batches-bin/data_batch_6.bin is a ")
    assert "holds only plain files" in line and not (tmp_path / "o.h5").exists()
    assert sorted(os.listdir(tmp_path)) == ["c.tar.gz"]  # nothing extracted


def test_oversized_member_is_refused_before_it_is_read(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from numbacnn.io import cifar

    monkeypatch.setattr(cifar, "MAX_MEMBER_BYTES", 1000)
    archive = write_tar(tmp_path / "c.tar.gz", FOLDER["binary"],
                        cifar10_files("binary", batches(n=1)))
    with pytest.raises(DataError, match="data_batch_1.bin: is 3,073 bytes, more than any CIFAR"):
        import_cifar(archive)


@pytest.mark.parametrize(("content", "message"), [
    (b"\x1f\x8b\x08\x00" + b"\0" * 20, "not a readable tar archive"),
    (b"hello", "not a readable tar archive"),
])
def test_not_an_archive(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "c.tar.gz").write_bytes(content)
    assert_one_error(run("data", "import-cifar10", tmp_path / "c.tar.gz", tmp_path / "o.h5"),
                     message)


def test_folders_without_cifar_and_cut_archives(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert_one_error(run("data", "import-cifar10", tmp_path / "empty", tmp_path / "o.h5"),
                     "holds no CIFAR batches")
    archive = write_tar(tmp_path / "c.tar.gz", FOLDER["binary"],
                        cifar10_files("binary", batches(n=2)))
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert_one_error(run("data", "import-cifar10", cut, tmp_path / "o.h5"),
                     "not a readable tar archive")
    assert_one_error(run("data", "import-cifar10", tmp_path / "absent.tar.gz",
                         tmp_path / "o.h5"), "no such archive or folder")


def test_python2_cpickle_of_an_array_is_read() -> None:
    """The opcodes Python 2's cPickle wrote for {'data': uint8 2×3 array, 'labels': [1, 2]}:
    byte strings (SHORT_BINSTRING), numpy 1's module name numpy.core.multiarray."""
    raw = (b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02"
           b"cnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01K\x02K\x03\x86cnumpy\ndtype\nU\x02u1"
           b"K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
           b"U\x06abcdeftbU\x06labelsq\x03]q\x04(K\x01K\x02eu.")
    batch = safe_loads(raw)
    assert batch[b"labels"] == [1, 2]
    np.testing.assert_array_equal(batch[b"data"], np.frombuffer(b"abcdef", np.uint8).reshape(2, 3))


def test_an_existing_dataset_is_replaced_only_with_force(tmp_path: Path) -> None:
    """The writing policy of the other importers (docs/reliability.md §3)."""
    archive = write_tar(tmp_path / "cifar.tar.gz", FOLDER["binary"],
                        cifar10_files("binary", batches(n=4)))
    out = tmp_path / "cifar10.h5"
    out.write_bytes(b"an older dataset")
    assert_one_error(run("data", "import-cifar10", archive, out), "exists already", "--force")
    assert out.read_bytes() == b"an older dataset"
    result = run("data", "import-cifar10", archive, out, "--force")
    assert_ok(result)
    assert f"replaced {out}" in result.stderr.splitlines()
    assert load_dataset(out).num_classes == 10
