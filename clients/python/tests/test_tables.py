"""Tables loaded by the server (``--tables DIR``): references, ``GET /tables``, versions.

A server started once for these tests loads users.npy (float64, no ids) and items.npy
(float32, with items.ids.txt), written here with numpy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reference as ref
from servers import Server

from simserve_client import AsyncClient, Client, ProblemError, Table, TableInfo

USERS = np.random.default_rng(40).standard_normal((6, 8))  # float64 on disk
ITEMS = np.random.default_rng(41).standard_normal((20, 8)).astype(np.float32)
ITEM_IDS = [f"i{n}" for n in range(20)]


@pytest.fixture(scope="session")
def table_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tables")
    np.save(folder / "users.npy", USERS)
    np.save(folder / "items.npy", ITEMS)
    (folder / "items.ids.txt").write_text("".join(f"{i}\n" for i in ITEM_IDS))
    return folder


@pytest.fixture(scope="session")
def tables_server(table_dir: Path) -> Iterator[Server]:
    with Server("--tables", str(table_dir)) as running:
        yield running


@pytest.fixture(scope="session")
def tclient(tables_server: Server) -> Iterator[Client]:
    with Client(tables_server.url) as c:
        yield c


def test_reference_serialises() -> None:
    assert Table("items").to_json() == {"table": "items"}
    assert Table("items", rows=[3, 7]).to_json() == {"table": "items", "rows": [3, 7]}
    assert Table("items", rows=np.array([3, 7])).to_json() == {"table": "items", "rows": [3, 7]}
    assert Table("users", ids=["u3", "u7"]).to_json() == {"table": "users", "ids": ["u3", "u7"]}
    with pytest.raises(ValueError, match="rows or ids"):
        Table("items", rows=[1], ids=["i1"])


def test_tables_lists_both(tclient: Client) -> None:
    found = {info.name: info for info in tclient.tables()}
    assert set(found) == {"users", "items"}
    users, items = found["users"], found["items"]
    assert (users.rows, users.dim, users.ids) == (6, 8, False)
    assert (items.rows, items.dim, items.ids) == (20, 8, True)
    assert users.stored_dtype == "float64" and items.stored_dtype == "float32"
    for info in (users, items):
        assert isinstance(info, TableInfo) and info.dtype == "float32"
        assert info.version and info.source and info.loaded_at
        assert info.bytes > 0 and info.last_error is None


def test_one_table_and_an_unknown_one(tclient: Client) -> None:
    assert tclient.table("items") == {i.name: i for i in tclient.tables()}["items"]
    with pytest.raises(ProblemError) as caught:
        tclient.table("no-such-table")
    assert caught.value.status == 404


def test_score_by_rows(tclient: Client) -> None:
    got = tclient.pairwise(Table("users", rows=[0, 1, 2]), Table("items", rows=[3, 7, 9]))
    ref.assert_pairwise(got, "cosine", USERS[[0, 1, 2]], ITEMS[[3, 7, 9]])
    got = tclient.matrix(Table("items", rows=[3, 7]), Table("items"), metric="euclidean")
    ref.assert_matrix(got, "euclidean", ITEMS[[3, 7]], ITEMS)
    mixed = tclient.matrix(USERS[:2], Table("items"), metric="dot")
    ref.assert_matrix(mixed, "dot", USERS[:2], ITEMS)


def test_score_by_ids(tclient: Client) -> None:
    by_ids = tclient.matrix(Table("items", ids=["i3", "i7"]), Table("items"))
    ref.assert_matrix(by_ids, "cosine", ITEMS[[3, 7]], ITEMS)
    by_rows = tclient.matrix(Table("items", rows=[3, 7]), Table("items"))
    np.testing.assert_array_equal(by_ids, by_rows)


def test_top_k_for_a_user_with_ids(tclient: Client) -> None:
    got = tclient.user_item(Table("users", rows=[2]), Table("items"), top_k=4)
    want = ref.neighbours("cosine", USERS[[2]], ITEMS, top_k=4)
    ref.assert_neighbours(got.indices, got.scores, want, "cosine", USERS[[2]], ITEMS)
    assert got.ids == [[ITEM_IDS[i] for i in want[0]]]
    assert got.tables["items"] == tclient.table("items").version
    assert got.tables["users"] == tclient.table("users").version


def test_user_item_pairs_over_tables(tclient: Client) -> None:
    pairs = [[0, 19], [5, 0], [3, 3]]
    got = tclient.user_item(Table("users"), Table("items"), pairs=pairs)
    ref.assert_pairwise(got, "cosine", USERS[[0, 5, 3]], ITEMS[[19, 0, 3]])


async def test_async_tables(tables_server: Server) -> None:
    async with AsyncClient(tables_server.url) as client:
        names = sorted(info.name for info in await client.tables())
        assert names == ["items", "users"]
        got = await client.user_item(USERS[:3], Table("items"), top_k=2, exclude=[[0], [], [1]])
        want = ref.neighbours("cosine", USERS[:3], ITEMS, top_k=2, exclude=[[0], [], [1]])
        ref.assert_neighbours(got.indices, got.scores, want, "cosine", USERS[:3], ITEMS)
        assert got.ids == [[ITEM_IDS[i] for i in row] for row in want]
        assert got.tables == {"items": (await client.table("items")).version}


def test_matrix_neighbours_carry_the_ids_of_their_rows(tclient: Client) -> None:
    a = ITEMS[[0, 1]]
    got = tclient.matrix(Table("items", rows=[0, 1]), Table("items"), top_k=3)
    want = ref.neighbours("cosine", a, ITEMS, top_k=3)
    ref.assert_neighbours(got.indices, got.scores, want, "cosine", a, ITEMS)
    assert got.ids == [[ITEM_IDS[i] for i in row] for row in want]
    chosen = [4, 5, 6]  # a against itself: the ids of the chosen rows
    itself = tclient.matrix(Table("items", rows=chosen), top_k=2, exclude_self=True)
    want = ref.neighbours("cosine", ITEMS[chosen], ITEMS[chosen], top_k=2, exclude=[[0], [1], [2]])
    ref.assert_neighbours(
        itself.indices, itself.scores, want, "cosine", ITEMS[chosen], ITEMS[chosen]
    )
    assert itself.ids == [[ITEM_IDS[chosen[i]] for i in row] for row in want]
    near = tclient.matrix(Table("items", rows=[0, 1]), Table("items"), threshold=0.3)
    want = ref.neighbours("cosine", a, ITEMS, threshold=0.3)
    assert near.ragged, "the data should give rows of differing length"
    ref.assert_neighbours(near.indices, near.scores, want, "cosine", a, ITEMS)
    assert near.ids == [[ITEM_IDS[i] for i in row] for row in want]
    # Rows without ids (users, inline arrays) list none.
    assert tclient.matrix(Table("items", rows=[0]), USERS, top_k=2).ids is None
    assert tclient.matrix(Table("users", rows=[0]), Table("users"), top_k=2).ids is None


async def test_async_matrix_neighbours_carry_ids(tables_server: Server) -> None:
    async with AsyncClient(tables_server.url) as client:
        got = await client.matrix(ITEMS[:2], Table("items"), top_k=2)
    want = ref.neighbours("cosine", ITEMS[:2], ITEMS, top_k=2)
    assert got.ids == [[ITEM_IDS[i] for i in row] for row in want]


def test_exclude_items_by_id(tclient: Client) -> None:
    users = Table("users", rows=[0, 1])
    by_id = tclient.user_item(users, Table("items"), top_k=3, exclude=[["i3", "i7"], ["i0"]])
    by_index = tclient.user_item(users, Table("items"), top_k=3, exclude=[[3, 7], [0]])
    want = ref.neighbours("cosine", USERS[:2], ITEMS, top_k=3, exclude=[[3, 7], [0]])
    ref.assert_neighbours(by_id.indices, by_id.scores, want, "cosine", USERS[:2], ITEMS)
    assert by_id.ids == by_index.ids == [[ITEM_IDS[i] for i in row] for row in want]
    # ids and indices mix, numpy strings too; what the server refuses is a problem
    mixed = tclient.user_item(
        Table("users", rows=[0]), Table("items"), top_k=3, exclude=[[np.str_("i3"), 7]]
    )
    assert mixed.ids == by_index.ids[:1]
    nearest = ref.neighbours("cosine", USERS[[0]], ITEMS, top_k=1)[0][0]
    only = tclient.user_item(
        Table("users", rows=[0]), Table("items"), top_k=1, exclude=[[ITEM_IDS[nearest]]]
    )
    assert only.ids is not None and only.ids[0][0] != ITEM_IDS[nearest]
    with pytest.raises(ProblemError, match=r"exclude\[0\]\[0\]") as caught:
        tclient.user_item(Table("users", rows=[0]), Table("items"), top_k=3, exclude=[["zz"]])
    assert caught.value.status == 422
    # inline items with item_ids: ids name them too
    recs = tclient.user_item(
        USERS[:1], ITEMS[:4], top_k=4, exclude=[["b"]], item_ids=["a", "b", "c", "d"]
    )
    assert recs.ids is not None and sorted(recs.ids[0]) == ["a", "c", "d"]


def test_table_rows_must_be_integers() -> None:
    refused: list[tuple[Any, str]] = [([1.7], "1.7"), ([0, True], "True"), (np.ones(1), "np")]
    for rows, found in refused:
        with pytest.raises(
            ValueError, match=rf"^Table rows\[\d\]: expected an integer, found {found}"
        ):
            Table("items", rows=rows)
    assert Table("items", rows=np.array([3, 7], dtype=np.int32)).rows == (3, 7)
