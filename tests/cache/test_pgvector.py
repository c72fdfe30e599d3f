"""``PgVectorStore`` on a real PostgreSQL with pgvector (from the ``pgserver`` wheel, on a
free loopback port), and ``SemanticCache(store=PgVectorStore(...))`` with its near tier:
shared across instances and processes, tenants isolated in the query, TTL, eviction,
the HNSW index, async, and a database that is down."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from agentflow._errors import CacheBackendError, ConfigError
from agentflow.cache import EmbeddingDimensionError, PgVectorStore, SemanticCache, partition_key
from tests._postgres import PostgresServer, start_postgres

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:platformdirs.*")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
        server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def table() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(postgres: PostgresServer, table: str) -> Iterator[PgVectorStore]:
    s = PgVectorStore(postgres.dsn, table=table)
    yield s
    s.close()


def _v(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def _scope(user: str) -> str:
    return partition_key(
        tier="small",
        messages=[{"role": "user", "content": "q"}],
        params={},
        step="ask",
        scope=f"user:{user}",
        embedder="LocalEmbedder[all-MiniLM-L6-v2-int8]",
    )


def test_entries_are_shared_between_caches_and_partitions_never_mix(
    postgres: PostgresServer, store: PgVectorStore, table: str
) -> None:
    writer = SemanticCache(store=store)
    reader = SemanticCache(store=PgVectorStore(postgres.dsn, table=table))
    assert reader.lookup("alice", _v(1, 0, 0), 0.9) is None  # no table yet: a miss
    writer.add("alice", _v(1, 0, 0), {"text": "for alice"})
    found = reader.lookup("alice", _v(1, 0.05, 0), 0.9)
    assert found is not None
    assert found[0] == {"text": "for alice"}
    assert found[1] > 0.99
    assert reader.lookup("bob", _v(1, 0, 0), -1.0) is None  # another tenant: nothing at all
    assert reader.stats.hits == 1
    assert reader.stats.misses == 2
    reader.close()
    writer.close()


@pytest.mark.parametrize("indexed", [False, True], ids=["exact", "hnsw"])
def test_the_partition_is_in_the_query_not_a_filter_after_it(
    postgres: PostgresServer, table: str, indexed: bool
) -> None:
    """Alice's entry is the nearest overall; a search in bob's partition must still find
    bob's own (far) entry. A filter applied after taking the nearest would find nothing."""
    s = PgVectorStore(postgres.dsn, table=table, hnsw_min_rows=1 if indexed else 10_000)
    s.insert("bob", _v(0, 1, 0), {"who": "bob"})
    for i in range(30):
        s.insert("alice", _v(1, 0.01 * i, 0), {"who": "alice", "i": i})
    assert s.wait_for_index() is indexed
    if indexed:
        s.search("bob", _v(1, 0, 0))  # learns bob's row count; an index scan from now on
        s._counts[s._key("bob")] = (10_000, 0.0)  # as if bob's partition were large
    found = s.search("bob", _v(1, 0, 0))
    assert found is not None
    assert found.value == {"who": "bob"}
    assert found.similarity == pytest.approx(0.0, abs=1e-5)
    assert s.search("carol", _v(1, 0, 0)) is None
    s.close()


def test_the_index_is_built_past_hnsw_min_rows_and_used(
    postgres: PostgresServer, table: str
) -> None:
    s = PgVectorStore(postgres.dsn, table=table, hnsw_min_rows=50)
    rng = np.random.default_rng(0)
    for i in range(49):
        s.insert("big", rng.normal(size=16).astype(np.float32), {"n": i})
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        has = "SELECT count(*) FROM pg_indexes WHERE indexname = %s"
        assert conn.execute(has, (f"{table}_hnsw",)).fetchone() == (0,)
        s.insert("big", rng.normal(size=16).astype(np.float32), {"n": 50})
        assert s.wait_for_index(60)
        assert conn.execute(has, (f"{table}_hnsw",)).fetchone() == (1,)
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute(
            "EXPLAIN " + s._search_sql(exact=False),
            {"p": s._key("big"), "q": "[" + ",".join(["0.25"] * 16) + "]"},
        ).fetchall()
    assert any(f"{table}_hnsw" in row[0] for row in plan)
    s.close()


def test_ttl_hides_then_purges_expired_entries(store: PgVectorStore) -> None:
    store.insert("p", _v(1, 0), {"short": True}, ttl=0.3)
    store.insert("p", _v(0, 1), {"long": True}, ttl=3600)
    found = store.search("p", _v(1, 0))
    assert found is not None
    assert found.value == {"short": True}
    assert found.ttl_left is not None
    assert 0 < found.ttl_left <= 0.3
    time.sleep(0.5)
    found = store.search("p", _v(1, 0))
    assert found is not None
    assert found.value == {"long": True}
    assert store.count("p") == 2  # until purged
    assert store.purge_expired() == 1
    assert store.count("p") == 1


def test_max_entries_evicts_the_oldest_of_that_partition_only(
    postgres: PostgresServer, table: str
) -> None:
    s = PgVectorStore(postgres.dsn, table=table, max_entries=3)
    s.insert("other", _v(1, 1, 1), {"kept": True})
    for i in range(5):
        s.insert("p", _v(1, i, 0), {"i": i})
    assert s.count("p") == 3
    assert s.count("other") == 1
    found = s.search("p", _v(1, 0, 0))
    assert found is not None
    assert found.value == {"i": 2}
    s.clear("p")
    assert s.count("p") == 0
    assert s.count("other") == 1
    s.close()


def test_the_near_tier_answers_repeats_and_forgets_after_near_ttl(
    postgres: PostgresServer, store: PgVectorStore, table: str
) -> None:
    SemanticCache(store=store).add("p", _v(1, 0), {"a": 1})
    reader = SemanticCache(store=PgVectorStore(postgres.dsn, table=table), near_ttl=0.3)
    assert reader.lookup("p", _v(1, 0), 0.9) is not None  # from PostgreSQL, copied near
    with psycopg.connect(postgres.dsn) as conn:
        conn.execute(f"DELETE FROM {table}")
    assert reader.lookup("p", _v(1, 0), 0.9) is not None  # the near copy answers
    time.sleep(0.4)
    assert reader.lookup("p", _v(1, 0), 0.9) is None  # near copy expired, shared is empty
    reader.close()


def test_dimension_is_fixed_by_the_first_entry(store: PgVectorStore) -> None:
    store.insert("p", _v(1, 0, 0), {"x": 1})
    with pytest.raises(EmbeddingDimensionError, match="3-dim"):
        store.insert("q", _v(1, 0), {"x": 2})
    with pytest.raises(EmbeddingDimensionError):
        store.search("p", _v(1, 0, 0, 0))


async def test_async_methods_share_the_same_entries(postgres: PostgresServer, table: str) -> None:
    cache = SemanticCache(store=PgVectorStore(postgres.dsn, table=table))
    await cache.aadd("p", _v(1, 2, 3), {"async": True}, ttl=60)
    other = SemanticCache(store=PgVectorStore(postgres.dsn, table=table))
    found = await other.alookup("p", _v(1, 2, 3), 0.99)
    assert found is not None
    assert found[0] == {"async": True}
    assert await other.alookup("q", _v(1, 2, 3), -1.0) is None
    shared = other.shared
    assert isinstance(shared, PgVectorStore)
    await shared.aclear("p")
    assert await shared.asearch("p", _v(1, 2, 3)) is None
    for c in (cache, other):
        assert isinstance(c.shared, PgVectorStore)
        await c.shared.aclose()
    # concurrent lookups on one pool
    results = await asyncio.gather(*(cache.alookup("p", _v(1, 2, 3), 0.9) for _ in range(8)))
    assert len(results) == 8
    assert isinstance(cache.shared, PgVectorStore)
    await cache.shared.aclose()


def test_a_database_that_is_down_is_a_miss_with_a_warning() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens here once the socket closes
    cache = SemanticCache(
        store=PgVectorStore(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=0.5)
    )
    t0 = time.monotonic()
    with pytest.warns(RuntimeWarning, match=f"postgresql://127.0.0.1:{port}/postgres"):
        assert cache.lookup("p", _v(1, 0), 0.5) is None
    cache.add("p", _v(1, 0), {"x": 1})  # no exception: the near tier still keeps it
    assert time.monotonic() - t0 < 5  # bounded by timeout=, not a stalled call
    assert cache.stats.errors == 2
    assert cache.stats.misses == 1
    near = cache.lookup("p", _v(1, 0), 0.5)
    assert near is not None
    assert near[0] == {"x": 1}
    assert isinstance(cache.shared, PgVectorStore)
    with pytest.raises(CacheBackendError, match="Check that PostgreSQL is up"):
        cache.shared.search("p", _v(1, 0))
    cache.close()


def test_bad_settings_fail_at_construction(postgres: PostgresServer) -> None:
    for kwargs in ({"table": "Robert'); DROP TABLE x;--"}, {"hnsw_min_rows": 0}, {"timeout": 0}):
        with pytest.raises(ConfigError):
            PgVectorStore(postgres.dsn, **kwargs)
    assert PgVectorStore("postgresql://u:secret@h:5/db").backend == "postgresql://h:5/db"


_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from agentflow.cache import PgVectorStore, SemanticCache, partition_key
    dsn, table, me, action = sys.argv[1:5]
    def scope(user):
        return partition_key(tier="small", messages=[{"role": "user", "content": "q"}],
                             params={}, step="ask", scope=f"user:{user}",
                             embedder="LocalEmbedder[all-MiniLM-L6-v2-int8]")
    cache = SemanticCache(store=PgVectorStore(dsn, table=table))
    v = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    if action == "add":
        cache.add(scope(me), v, {"owner": me})
        print(json.dumps("added"))
    else:
        found = {u: cache.lookup(scope(u), v, 0.9) for u in ("alice", "bob")}
        print(json.dumps({u: None if f is None else f[0] for u, f in found.items()}))
    cache.close()
    """
)


def _process(dsn: str, table: str, me: str, action: str) -> object:
    out = subprocess.run(
        [sys.executable, "-c", _PROCESS, dsn, table, me, action],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tenant_isolation_across_two_processes(postgres: PostgresServer, table: str) -> None:
    assert _process(postgres.dsn, table, "alice", "add") == "added"
    # a second process, its own near tier: alice's entry is there for alice only
    assert _process(postgres.dsn, table, "bob", "lookup") == {
        "alice": {"owner": "alice"},
        "bob": None,
    }
    assert _process(postgres.dsn, table, "bob", "add") == "added"
    assert _process(postgres.dsn, table, "alice", "lookup") == {
        "alice": {"owner": "alice"},
        "bob": {"owner": "bob"},
    }
    assert _scope("alice") != _scope("bob")


_PIPELINE_PROCESS = textwrap.dedent(
    """
    import json, sys
    import agentflow as af
    from agentflow.cache import PgVectorStore
    from agentflow.testing import LoopbackServer, Reply

    dsn, table, user, question = sys.argv[1:5]

    with LoopbackServer() as srv:
        srv.default = Reply("Open Settings, then Reset password.")
        endpoint = af.Endpoint(model="openai/chat", api_base=srv.base_url)
        af.configure(
            zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=[endpoint])]),
            semantic_backend=PgVectorStore(dsn, table=table),
            embedder=af.LocalEmbedder(),  # all-MiniLM-L6-v2 on ONNX Runtime
        )

        @af.retrieve(tier="small", cache=af.CachePolicy(kind="semantic", threshold=0.9))
        def faq(q):
            return af.complete(messages=[{"role": "user", "content": q}])

        with af.run("faq", user_id=user):
            c = faq(question)
        sent = sum(r.path.endswith("/chat/completions") for r in srv.requests)
    print(json.dumps({"hit": c.cache_hit, "sent": sent, "kind": c.attempts[-1].cache_hit}))
    """
)


def _pipeline_call(postgres: PostgresServer, table: str, user: str, question: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PIPELINE_PROCESS, postgres.dsn, table, user, question],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_pipelines_semantic_cache_is_shared_through_postgres(
    postgres: PostgresServer, table: str
) -> None:
    """af.configure(semantic_backend=PgVectorStore(...)): a question answered in one
    process is a semantic hit in another for the same tenant, never for another one."""
    first = _pipeline_call(postgres, table, "alice", "How do I reset my password?")
    assert first == {"hit": False, "sent": 1, "kind": False}
    again = _pipeline_call(postgres, table, "alice", "How can I reset my password?")
    assert again["hit"] is True
    assert again["sent"] == 0  # answered from PostgreSQL, across processes
    other = _pipeline_call(postgres, table, "bob", "How can I reset my password?")
    assert other["hit"] is False
    assert other["sent"] == 1  # another tenant's partition: never served alice's answer


def test_semantic_backend_must_be_a_vector_store() -> None:
    import agentflow as af

    with pytest.raises(ConfigError, match="semantic_backend"):
        af.configure(semantic_backend="postgresql://nowhere")
