#!/usr/bin/env python3
"""Writes tests/fixtures/tables/: table files as numpy and safetensors write them, and the
answers numpy gives for them.

    good/        a directory that loads: users.npy (float32), items.npy (float32) with
                 items.ids.txt, f64.npy, f16.npy, big.npy (big-endian), fortran.npy,
                 empty.npy (0 rows), model.safetensors (float32, bfloat16 and float16
                 matrices, and a bias vector that is not a table)
    bad/CASE/    one directory per file that must stop the start, with the reason expected
                 in bad/CASE/expected.txt (a prefix of the error)
    reference.json   the good tables' values and numpy's answers over them

Run it after changing the cases:  python3 scripts/make_table_fixtures.py
(needs numpy, ml_dtypes and safetensors; `cargo test` only reads the committed files).
"""

import json
import pathlib
import shutil

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tables"


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    good = OUT / "good"
    good.mkdir(parents=True)
    rng = np.random.default_rng(20261130)
    users = rng.standard_normal((6, 8)).astype("<f4")
    items = rng.standard_normal((10, 8)).astype("<f4")
    items[3] = 0  # a zero vector: cosine 0 against anything
    item_ids = [f"sku-{i:03d}" for i in range(10)]
    np.save(good / "users.npy", users)
    np.save(good / "items.npy", items)
    (good / "items.ids.txt").write_text("\n".join(item_ids) + "\n", encoding="utf-8")
    f64 = rng.standard_normal((4, 8))
    np.save(good / "f64.npy", f64)
    f16 = rng.standard_normal((4, 8)).astype("<f2")
    np.save(good / "f16.npy", f16)
    big = rng.standard_normal((4, 8)).astype(">f4")
    np.save(good / "big.npy", big)
    fortran = np.asfortranarray(rng.standard_normal((4, 8)).astype("<f4"))
    np.save(good / "fortran.npy", fortran)
    np.save(good / "empty.npy", np.zeros((0, 8), "<f4"))
    emb = rng.standard_normal((5, 8)).astype("<f4")
    h16 = rng.standard_normal((3, 8)).astype("<f2")
    bf16 = rng.standard_normal((3, 8)).astype(ml_dtypes.bfloat16)
    save_file(
        {"emb.weight": emb, "half": h16, "brain": bf16, "bias": np.zeros(8, "<f4")},
        str(good / "model.safetensors"),
    )

    def cosine(a, b):
        a = a.astype(np.float64)
        b = b.astype(np.float64)
        na = np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-6)
        nb = np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-6)
        return (a / na) @ (b / nb).T

    def f32(x):
        return np.asarray(x, dtype=np.float32).astype(np.float64)

    served = {
        "users": users,
        "items": items,
        "f64": f32(f64),
        "f16": f16.astype(np.float64),
        "big": big.astype(np.float64),
        "fortran": fortran.astype(np.float64),
        "model.emb.weight": emb,
        "model.half": h16.astype(np.float64),
        "model.brain": bf16.astype(np.float64),
    }
    top = np.argsort(-cosine(users, items), axis=1, kind="stable")[:, :3]
    reference = {
        "tables": {name: np.asarray(v, np.float64).tolist() for name, v in served.items()},
        "stored_dtype": {
            "users": "float32", "items": "float32", "f64": "float64", "f16": "float16",
            "big": "float32", "fortran": "float32", "empty": "float32",
            "model.emb.weight": "float32", "model.half": "float16", "model.brain": "bfloat16",
        },
        "in_place": ["users", "items", "empty", "model.emb.weight"],
        "item_ids": item_ids,
        "cosine_users_items": cosine(users, items).tolist(),
        "top3_users_items": top.tolist(),
        "dot_f64": (f32(f64) @ f32(f64).T).tolist(),
        "euclidean_emb": np.linalg.norm(
            emb[:, None, :].astype(np.float64) - emb[None, :, :], axis=2
        ).tolist(),
    }
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")

    def bad(case, expected, files):
        d = OUT / "bad" / case
        d.mkdir(parents=True)
        for name, write in files.items():
            write(d / name)
        (d / "expected.txt").write_text(expected + "\n")

    ok = rng.standard_normal((3, 4)).astype("<f4")
    raw = (good / "users.npy").read_bytes()
    bad("int", 'dtype "<i4" is not float32, float64 or float16',
        {"t.npy": lambda p: np.save(p, np.arange(12, dtype="<i4").reshape(3, 4))})
    bad("rank1", "expected a 2-D array (rows × dim), found shape [4]",
        {"t.npy": lambda p: np.save(p, ok[0])})
    bad("rank3", "expected a 2-D array (rows × dim), found shape [1, 3, 4]",
        {"t.npy": lambda p: np.save(p, ok[None])})
    bad("ragged", 'dtype "|O" is not float32, float64 or float16',
        {"t.npy": lambda p: np.save(p, np.array([[1.0, 2.0], [3.0]], dtype=object),
                                    allow_pickle=True)})
    bad("zero-bytes", "the file is empty", {"t.npy": lambda p: p.write_bytes(b"")})
    bad("truncated", "holds 182 bytes of data, shape (6, 8) of float32 needs 192",
        {"t.npy": lambda p: p.write_bytes(raw[: len(raw) - 10])})

    def header_only(descr, shape):
        """A .npy header claiming `shape`, and no data."""
        def write(path):
            with open(path, "wb") as f:
                np.lib.format.write_array_header_1_0(
                    f, {"descr": descr, "fortran_order": False, "shape": shape})
        return write

    bad("header-past-data",
        "holds 0 bytes of data, shape (1, 576460752303423488) of float64 needs "
        "4611686018427387904",
        {"t.npy": header_only("<f8", (1, 1 << 59))})
    bad("byte-count-overflow", "the shape (2, 4611686018427387904) is too large to hold",
        {"t.npy": header_only("<f2", (2, 1 << 62))})
    bad("no-rows-huge-dim", "the shape (0, 9223372036854775808) is too large to hold",
        {"t.npy": header_only("<f4", (0, 1 << 63))})
    bad("nan", "row 1, column 2: the value is NaN, infinite or outside the float32 range",
        {"t.npy": lambda p: np.save(p, np.where(np.arange(12).reshape(3, 4) == 6, np.nan, ok))})
    bad("f64-overflow", "row 0, column 0: the value is NaN, infinite or outside the float32 range",
        {"t.npy": lambda p: np.save(p, np.full((2, 2), 1e300))})
    bad("dim-zero", "rows have dimension 0",
        {"t.npy": lambda p: np.save(p, np.zeros((3, 0), "<f4"))})
    bad("ids-count", "t.ids.txt: has 2 ids, the table has 3 rows",
        {"t.npy": lambda p: np.save(p, ok), "t.ids.txt": lambda p: p.write_text("a\nb\n")})
    bad("ids-duplicate", "t.ids.txt: lines 1 and 3: the same id twice",
        {"t.npy": lambda p: np.save(p, ok), "t.ids.txt": lambda p: p.write_text("a\nb\na\n")})
    bad("safetensors-garbage", "not a readable .safetensors file: ",
        {"m.safetensors": lambda p: p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")})


if __name__ == "__main__":
    main()
