"""HTTP throughput and latency of `bilstm serve` measured with wrk (a native client), side by side with the
in-process Predictor and a bare BentoML service, in one run (issue 14, item 4).

    OMP_NUM_THREADS=1 python benchmarks/wrk_http.py MODEL_DIR [--seconds 20] [--soak-requests 100000]
        [--workers 2] [--out docs/results/wrk_http.json]

1. In-process: ``Predictor.predict`` on the same texts in batches of 16 and 32: texts/s.
2. `bilstm serve MODEL_DIR --workers N --no-access-log --no-metrics` on 127.0.0.1; wrk (2 threads, keep-alive)
   posts to /classify: (a) 16 texts per request at concurrency 32 → texts/s against in-process; (b) one text per
   request at concurrency 1 and 32 → requests/s and latency percentiles; every response must be a 2xx.
3. The bare BentoML service (benchmarks/bare_bento_service.py: same framework settings and batching, a constant
   answer) under (b): our requests/s ÷ its requests/s is the overhead above the framework's own.
4. Soak: one text per request at concurrency 8 until ``--soak-requests``; the RSS of the server's largest process
   (the worker) after 20k requests and at the end.

wrk rotates through the request bodies with a Lua script (one body per text or per 16 texts). Needs `wrk` (Debian).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from load_test import free_port, make_texts, server_rss, wait_ready  # noqa: E402


def lua_script(bodies: list[str], path: Path) -> Path:
    """A wrk script that POSTs the bodies in turn (each wrk thread from its own offset)."""
    quoted = ",\n".join(json.dumps(body) for body in bodies)
    path.write_text(f"""
local bodies = {{
{quoted}
}}
local counter = 0
function setup(thread) thread:set("offset", math.random(#bodies)) end
function init(args) counter = offset or 0 end
function request()
  counter = counter + 1
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, bodies[(counter % #bodies) + 1])
end
""", encoding="utf-8")
    return path


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> dict:
    """wrk's requests/s, latency percentiles (ms), request count and non-2xx/socket errors."""
    threads = min(2, connections)
    duration = f"{max(1, round(seconds))}s"  # wrk takes whole seconds
    done = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", duration, "--latency",
                           "--timeout", "30s", "-s", str(script), url], capture_output=True, text=True, check=True)
    out = done.stdout
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def latency(label: str) -> float | None:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(match.group(1)) * units[match.group(2)] if match else None

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "requests": requests,
            "p50_ms": latency("50"), "p99_ms": latency("99"), "socket_errors": errors,
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0}


def in_process(model_dir: str, texts: list[str]) -> dict[str, float]:
    from toolkit.predict import Predictor

    predictor = Predictor.load(model_dir, device="cpu")
    predictor.predict(texts[:64])
    result = {}
    for batch in (16, 32):
        started = time.perf_counter()
        for start in range(0, len(texts), batch):
            predictor.predict(texts[start:start + batch], batch_size=batch)
        result[f"batch_{batch}_texts_per_s"] = len(texts) / (time.perf_counter() - started)
    return result


def start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "BENTOML_DO_NOT_TRACK": "True",
                                                 **env},
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--words", type=int, default=20)
    parser.add_argument("--soak-requests", type=int, default=100000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install wrk")
    texts = make_texts(args.words, 2048)
    report: dict = {"model_dir": args.model_dir, "words_per_text": args.words, "workers": args.workers,
                    "seconds": args.seconds, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    report["in_process"] = in_process(args.model_dir, texts)
    with tempfile.TemporaryDirectory() as scratch:
        single = lua_script([json.dumps({"texts": [t]}) for t in texts[:512]], Path(scratch) / "one.lua")
        sixteen = lua_script([json.dumps({"texts": texts[i:i + 16]}) for i in range(0, 512, 16)],
                             Path(scratch) / "sixteen.lua")
        servers = {
            "ours": ([sys.executable, "-m", "toolkit.cli", "serve", args.model_dir, "--workers", str(args.workers),
                      "--no-access-log", "--no-metrics", "--port", "{port}"], {}),
            "bare": ([sys.executable, "-m", "bentoml", "serve", "benchmarks.bare_bento_service:BareService",
                      "--port", "{port}"], {"BARE_WORKERS": str(args.workers)}),
        }
        for name, (argv, env) in servers.items():
            port = free_port()
            process = start([part.replace("{port}", str(port)) for part in argv], env, Path(scratch) / f"{name}.log")
            url = f"http://127.0.0.1:{port}"
            try:
                wait_ready(url, process)
                endpoint = f"{url}/classify"
                run_wrk(endpoint, single, 8, 3)  # warm-up
                rows = {}
                if name == "ours":
                    rows["16_per_request_c32"] = run_wrk(endpoint, sixteen, 32, args.seconds)
                    rows["16_per_request_c32"]["texts_per_s"] = 16 * rows["16_per_request_c32"]["requests_per_s"]
                for connections in (1, 32):
                    rows[f"1_per_request_c{connections}"] = run_wrk(endpoint, single, connections, args.seconds)
                if name == "ours" and args.soak_requests:
                    rows["soak"] = soak(endpoint, single, process.pid, args.soak_requests)
                report[name] = rows
            finally:
                stop(process)
    summarise(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


def soak(endpoint: str, script: Path, pid: int, total: int) -> dict:
    """One text per request at concurrency 8, in 10-s pieces, until ``total``; worker RSS at 20k and at the end."""
    done, rss_20k, errors = 0, None, 0
    started = time.perf_counter()
    rss_start = server_rss(pid)["worker"]
    while done < total:
        piece = run_wrk(endpoint, script, 8, 10)
        done += piece["requests"]
        errors += piece["socket_errors"] + piece["non_2xx"]
        if rss_20k is None and done >= 20000:
            rss_20k = server_rss(pid)["worker"]
    rss_end = server_rss(pid)["worker"]
    return {"requests": done, "seconds": round(time.perf_counter() - started, 1), "errors": errors,
            "worker_rss_start_mb": rss_start / 2**20, "worker_rss_20k_mb": (rss_20k or rss_end) / 2**20,
            "worker_rss_end_mb": rss_end / 2**20,
            "growth_20k_to_end": rss_end / (rss_20k or rss_end) - 1, "growth_overall": rss_end / rss_start - 1}


def summarise(report: dict) -> None:
    ours, bare, inproc = report["ours"], report["bare"], report["in_process"]
    batched = ours["16_per_request_c32"]
    print(f"# {report['date']}; {report['model_dir']}; {report['words_per_text']} words per text; "
          f"{report['workers']} workers; wrk {report['seconds']:.0f} s per row\n")
    print(f"in-process texts/s: batch 16 {inproc['batch_16_texts_per_s']:,.0f}, batch 32 "
          f"{inproc['batch_32_texts_per_s']:,.0f}\n")
    print("| load | ours req/s | texts/s | p50 ms | p99 ms | errors | bare BentoML req/s | ours ÷ bare |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| 16 texts/request, c=32 | {batched['requests_per_s']:,.0f} | {batched['texts_per_s']:,.0f} | "
          f"{batched['p50_ms']:.1f} | {batched['p99_ms']:.1f} | {batched['socket_errors'] + batched['non_2xx']} "
          f"| – | – |")
    for connections in (1, 32):
        row, base = ours[f"1_per_request_c{connections}"], bare[f"1_per_request_c{connections}"]
        print(f"| 1 text/request, c={connections} | {row['requests_per_s']:,.0f} | {row['requests_per_s']:,.0f} | "
              f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['socket_errors'] + row['non_2xx']} | "
              f"{base['requests_per_s']:,.0f} | {row['requests_per_s'] / base['requests_per_s']:.2f} |")
    print(f"\n(a) 16 texts/request at c=32: {batched['texts_per_s'] / inproc['batch_16_texts_per_s']:.2f}× in-process "
          f"(batch 16) — target ≥ 0.6")
    if "soak" in ours:
        soak_row = ours["soak"]
        print(f"soak: {soak_row['requests']:,} requests in {soak_row['seconds']} s, {soak_row['errors']} errors; "
              f"worker RSS {soak_row['worker_rss_start_mb']:.0f} → {soak_row['worker_rss_20k_mb']:.0f} (20k) → "
              f"{soak_row['worker_rss_end_mb']:.0f} MiB: +{100 * soak_row['growth_20k_to_end']:.1f}% from 20k "
              f"(target ≤ 5), +{100 * soak_row['growth_overall']:.1f}% overall (target ≤ 15)")


if __name__ == "__main__":
    main()
