"""Bounded HTTP load test of `bilstm serve`, side by side with the in-process Predictor, in one run.

    OMP_NUM_THREADS=1 python benchmarks/load_test.py --model-dir runs/textcat_sample/model \\
        --requests 20000 --concurrency 1 8 32 64 --soak-requests 100000 --soak-seconds 300

1. In-process: ``Predictor.load(dir, device="cpu")`` predicts the same texts in chunks of ``c`` texts for
   every concurrency level ``c`` (the best a server batching ``c`` concurrent requests can do), and one
   text at a time (latency p50/p99).
2. HTTP: starts ``bilstm serve`` on 127.0.0.1 (a free port), waits for ``/readyz``, then for each level
   sends ``--requests`` requests of one text each from ``c`` concurrent keep-alive connections (async
   httpx): throughput, p50/p95/p99 latency, errors (anything but 200, counted by status).
3. Soak: ``--soak-requests`` more requests (stopping early at ``--soak-seconds``) at ``--soak-concurrency``;
   the RSS of the server's processes is read after the levels (warm) and every few seconds; growth is
   last/first − 1.

Prints a Markdown table and writes the numbers as JSON (``--out``). The client shares the CPU with the
server on 127.0.0.1; on a 2-core machine that is part of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = [ROOT / "samples/textcat/train.jsonl", ROOT / "samples/textcat/dev.jsonl"]


def make_texts(words_per_text: int, count: int) -> list[str]:
    """``count`` texts of ``words_per_text`` words: sliding windows over the bundled review sample."""
    words = [w for path in CORPUS for line in path.read_text().splitlines() for w in json.loads(line)["text"].split()]
    step = max(1, words_per_text // 3)
    texts = [" ".join(words[i:i + words_per_text]) for i in range(0, len(words) - words_per_text, step)]
    return (texts * (count // len(texts) + 1))[:count]


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99)}


def in_process(model_dir: str, texts: list[str], levels: list[int], seconds: float) -> dict:
    """Predictor throughput in chunks of ``c`` texts per level, and one-text latency."""
    import torch

    from toolkit.predict import Predictor

    torch.set_num_threads(1)
    predictor = Predictor.load(model_dir, device="cpu")
    predictor.predict(texts[:64])  # warm-up
    results: dict = {"tokens_per_text": _mean_tokens(predictor, texts[:500])}
    for level in sorted(set([1, *levels])):
        done, started = 0, time.perf_counter()
        latencies = []
        while time.perf_counter() - started < seconds:
            chunk = texts[done % len(texts):done % len(texts) + level] or texts[:level]
            t0 = time.perf_counter()
            predictor.predict(chunk, batch_size=max(level, 1))
            latencies.append(time.perf_counter() - t0)
            done += len(chunk)
        elapsed = time.perf_counter() - started
        results[level] = {"texts_per_s": done / elapsed, **(percentiles(latencies) if level == 1 else {})}
    return results


def _mean_tokens(predictor, texts: list[str]) -> float:
    tokenizer = getattr(predictor, "tokenizer", None)
    if tokenizer is None or not hasattr(tokenizer, "tokenize_many"):
        return float("nan")
    return statistics.mean(len(tokens) for tokens in tokenizer.tokenize_many(texts))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dirs: list[str], port: int, extra: list[str], log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENTOML_DO_NOT_TRACK": "True"}
    argv = [sys.executable, "-m", "toolkit.cli", "serve", *model_dirs, "--port", str(port), *extra]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 180) -> float:
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise SystemExit(f"server exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"server not ready after {timeout} s")


def server_rss(pid: int) -> dict[str, int]:
    """RSS (bytes) of the server's process tree and of its largest process (the worker)."""
    import psutil

    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    sizes = []
    for process in processes:
        with contextlib.suppress(psutil.Error):  # a process that just exited
            sizes.append(process.memory_info().rss)
    return {"total": sum(sizes), "worker": max(sizes)}


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client connection (asyncio streams).

    httpx costs ~3 ms of CPU per request on this 2-core machine, as much as the server; on 127.0.0.1 the
    client shares those cores, so a heavy client understates the server. This one only writes a POST and
    reads the status line, headers and a Content-Length (or chunked) body.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        try:
            header = await self.reader.readuntil(b"\r\n\r\n")
            lines = header.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            if "content-length" in fields:
                await self.reader.readexactly(int(fields["content-length"]))
            elif fields.get("transfer-encoding") == "chunked":
                while (size := int((await self.reader.readuntil(b"\r\n")).strip(), 16)) > 0:
                    await self.reader.readexactly(size + 2)
                await self.reader.readuntil(b"\r\n")
            if fields.get("connection") == "close":
                await self.close()
            return status
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            await self.close()
            raise

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def load(url: str, texts: list[str], requests: int, concurrency: int, deadline: float | None = None,
               on_progress=None, client: str = "raw") -> dict:
    """``requests`` POSTs of one text each from ``concurrency`` connections; latency and status counts."""
    import httpx

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    next_index = 0
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    bodies = [json.dumps({"texts": [text]}).encode() for text in texts]

    async def worker(send) -> None:
        nonlocal next_index
        while next_index < requests and (deadline is None or time.perf_counter() < deadline):
            index = next_index
            next_index += 1
            t0 = time.perf_counter()
            try:
                key = str(await send(bodies[index % len(bodies)]))
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as error:
                key = type(error).__name__
            latencies.append(time.perf_counter() - t0)
            statuses[key] = statuses.get(key, 0) + 1
            if on_progress is not None and index % 2000 == 0:
                on_progress(index)

    started = time.perf_counter()
    if client == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        headers = {"content-type": "application/json"}
        async with httpx.AsyncClient(limits=limits, timeout=60) as session:
            async def send(body: bytes) -> int:
                return (await session.post(url, content=body, headers=headers)).status_code

            started = time.perf_counter()
            await asyncio.gather(*(worker(send) for _ in range(concurrency)))
    else:
        connections = [RawConnection(host, int(port)) for _ in range(concurrency)]
        await asyncio.gather(*(worker(functools.partial(c.post, f"/{path}")) for c in connections))
        for connection in connections:
            await connection.close()
    elapsed = time.perf_counter() - started
    done = len(latencies)
    return {"requests": done, "seconds": elapsed, "rps": done / elapsed, **percentiles(latencies),
            "errors": done - statuses.get("200", 0), "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", action="append", required=True, help="served model directories")
    parser.add_argument("--endpoint", default=None, help="default: the first model's task")
    parser.add_argument("--requests", type=int, default=20000, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--words", type=int, default=20, help="words per text")
    parser.add_argument("--inprocess-seconds", type=float, default=5.0, help="seconds per in-process level")
    parser.add_argument("--soak-requests", type=int, default=0)
    parser.add_argument("--soak-seconds", type=float, default=300)
    parser.add_argument("--soak-concurrency", type=int, default=32)
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="raw: a minimal asyncio HTTP/1.1 client (default); httpx: httpx.AsyncClient")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `bilstm serve` option (repeatable)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    serve_args = [part for item in args.serve_arg for part in item.split()]

    from toolkit.artifact import read_meta

    task = args.endpoint or read_meta(args.model_dir[0]).task
    texts = make_texts(args.words, 5000)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    report: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "machine": machine, "argv": sys.argv, "task": task, "serve_args": serve_args,
                    "client": args.client,
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_avg_before": os.getloadavg()}
    print(f"in-process Predictor ({args.inprocess_seconds:.0f} s per level)...", flush=True)
    report["in_process"] = in_process(args.model_dir[0], texts, args.concurrency, args.inprocess_seconds)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bilstm-load-test-{port}.log"
    server = start_server(args.model_dir, port, serve_args, log_path)
    try:
        report["startup_s"] = wait_ready(url, server)
        asyncio.run(load(f"{url}/{task}", texts, 300, 8))  # warm-up (also trains the batching optimizer)
        report["levels"] = {}
        for level in args.concurrency:
            result = asyncio.run(load(f"{url}/{task}", texts, args.requests, level, client=args.client))
            report["levels"][level] = result
            print(f"c={level}: {result['rps']:.0f} req/s p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms "
                  f"errors {result['errors']} {result['statuses']}", flush=True)
        if args.soak_requests:
            samples = [(0, server_rss(server.pid))]
            progress = lambda index: samples.append((index, server_rss(server.pid)))  # noqa: E731
            deadline = time.perf_counter() + args.soak_seconds
            soak = asyncio.run(load(f"{url}/{task}", texts, args.soak_requests, args.soak_concurrency, deadline,
                                    progress, client=args.client))
            samples.append((soak["requests"], server_rss(server.pid)))
            first, last = samples[0][1], samples[-1][1]
            soak.update(rss_samples=samples, rss_growth_total=last["total"] / first["total"] - 1,
                        rss_growth_worker=last["worker"] / first["worker"] - 1)
            report["soak"] = soak
            report["soak_concurrency"] = args.soak_concurrency
        report["load_avg_after"] = os.getloadavg()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    print_report(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")


def print_report(report: dict) -> None:
    ip = report["in_process"]
    print(f"\n{report['date']}  {report['machine']}  task {report['task']}  serve {' '.join(report['serve_args'])}")
    print(f"texts: {ip['tokens_per_text']:.1f} tokens on average; in-process one text: {ip[1]['texts_per_s']:.0f}/s, "
          f"p50 {ip[1]['p50_ms']:.2f} ms, p99 {ip[1]['p99_ms']:.2f} ms; server ready in {report['startup_s']:.1f} s\n")
    print("| concurrency | requests | HTTP req/s | p50 ms | p95 ms | p99 ms | errors | in-process texts/s (batch = c) "
          "| HTTP / in-process |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for level, r in report["levels"].items():
        base = ip[level]["texts_per_s"]
        print(f"| {level} | {r['requests']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['errors']} | {base:.0f} | {r['rps'] / base:.2f} |")
    if "soak" in report:
        s = report["soak"]
        first, last = s["rss_samples"][0][1], s["rss_samples"][-1][1]
        print(f"\nsoak: {s['requests']} requests at c={report.get('soak_concurrency', '')} in {s['seconds']:.0f} s "
              f"({s['rps']:.0f} req/s, p99 {s['p99_ms']:.1f} ms, errors {s['errors']}); RSS worker "
              f"{first['worker'] / 2**20:.1f} → {last['worker'] / 2**20:.1f} MiB ({s['rss_growth_worker']:+.2%}), "
              f"all server processes {first['total'] / 2**20:.1f} → {last['total'] / 2**20:.1f} MiB "
              f"({s['rss_growth_total']:+.2%})")


if __name__ == "__main__":
    main()
