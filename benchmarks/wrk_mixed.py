"""Route isolation under mixed load (issue 23, item 1): `/classify` alone, then beside a saturating `/generate`,
then right after the load stops — all against one `bilstm serve`, measured with wrk in one run.

    OMP_NUM_THREADS=1 python benchmarks/wrk_mixed.py CLASSIFIER_DIR LM_DIR [--seconds 20] [--workers 1]
        [--generate-tokens 256] [--out docs/results/wrk_mixed.json]

1. `/classify` alone, one text per request at concurrency 8: requests/s (the baseline of the ratio); then
   `/generate` alone the same way (the baseline of its own ratio).
2. The same `/classify` load while a second wrk keeps 8 connections of `/generate` (``max_tokens`` long
   continuations) busy: `/classify` requests/s ÷ its alone figure (target ≥ 0.5), the status codes of both routes
   (only 2xx for `/classify`; `/generate` may be refused with the documented 429).
3. Recovery: `/classify` at concurrency 8 in 1-s slices right after the mixed load ends: statuses per slice.
4. The server log: lines written and tracebacks during the run (an overload refusal must log one line).

Each wrk counts the status codes of its answers in a Lua ``response`` callback (one wrk thread, so the counts are
exact). Needs `wrk` (Debian).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from load_test import free_port, make_texts, wait_ready  # noqa: E402
from wrk_http import start, stop  # noqa: E402

STATUS_COUNTER = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do total[status] = (total[status] or 0) + count end
  end
  local parts = {}
  for status, count in pairs(total) do parts[#parts + 1] = string.format('"%d": %d', status, count) end
  io.write("STATUSES {" .. table.concat(parts, ", ") .. "}\\n")
end
"""


def lua_script(bodies: list[str], path: Path) -> Path:
    """A wrk script that POSTs the bodies in turn and prints the count of each status code at the end."""
    quoted = ",\n".join(json.dumps(body) for body in bodies)
    path.write_text(f"""
local bodies = {{
{quoted}
}}
local counter = 0
function request()
  counter = counter + 1
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, bodies[(counter % #bodies) + 1])
end
{STATUS_COUNTER}""", encoding="utf-8")
    return path


def wrk(url: str, script: Path, connections: int, seconds: int) -> subprocess.Popen:
    """Start one wrk (one thread: its status counts are exact); read it with :func:`result`."""
    return subprocess.Popen(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency",
                             "--timeout", "60s", "-s", str(script), url], stdout=subprocess.PIPE, text=True)


def result(process: subprocess.Popen) -> dict:
    """requests/s, p50/p99 ms and the status-code counts of a finished wrk."""
    out, _ = process.communicate()
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def latency(label: str) -> float | None:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return round(float(match.group(1)) * units[match.group(2)], 2) if match else None

    statuses = json.loads(re.search(r"^STATUSES (\{.*\})$", out, re.M).group(1))
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)), "p50_ms": latency("50"),
            "p99_ms": latency("99"), "statuses": statuses, "socket_errors": socket_errors,
            "non_2xx": sum(count for status, count in statuses.items() if not status.startswith("2"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("classifier_dir")
    parser.add_argument("lm_dir")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=8, help="connections to /classify")
    parser.add_argument("--generate-connections", type=int, default=8, help="connections to /generate")
    parser.add_argument("--generate-tokens", type=int, default=256)
    parser.add_argument("--generate-prompts", type=int, default=8, help="prompts per /generate request")
    parser.add_argument("--generate-temperature", type=float, default=100.0,
                        help="a flat distribution rarely samples <eos>: long continuations from a small LM")
    parser.add_argument("--recovery-slices", type=int, default=5)
    parser.add_argument("--serve-arg", action="append", default=[], help="an extra `bilstm serve` argument")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install wrk")
    texts = make_texts(20, 512)
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "classifier": args.classifier_dir,
                    "lm": args.lm_dir, "workers": args.workers, "connections": args.connections,
                    "seconds": args.seconds, "generate_tokens": args.generate_tokens,
                    "generate_prompts": args.generate_prompts, "generate_temperature": args.generate_temperature,
                    "generate_connections": args.generate_connections, "serve_args": args.serve_arg}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        classify = lua_script([json.dumps({"texts": [t]}) for t in texts], scratch / "classify.lua")
        generate = lua_script([json.dumps({"prompts": [" ".join(t.split()[:5])] * args.generate_prompts,
                                           "max_tokens": args.generate_tokens, "seed": i,
                                           "temperature": args.generate_temperature})
                               for i, t in enumerate(texts[:64])], scratch / "generate.lua")
        port = free_port()
        log = scratch / "server.log"
        argv = [sys.executable, "-m", "toolkit.cli", "serve", args.classifier_dir, args.lm_dir, "--port", str(port),
                "--workers", str(args.workers), *args.serve_arg]
        process = start(argv, {}, log)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process)
            result(wrk(f"{url}/classify", classify, args.connections, 3))  # warm-up
            log_start = len(log.read_text(errors="replace").splitlines())
            report["classify_alone"] = result(wrk(f"{url}/classify", classify, args.connections, args.seconds))
            report["generate_alone"] = result(wrk(f"{url}/generate", generate, args.generate_connections,
                                                  args.seconds))
            generating = wrk(f"{url}/generate", generate, args.generate_connections, args.seconds)
            time.sleep(1.0)  # the generation backlog first, then the classifier's load beside it
            beside = wrk(f"{url}/classify", classify, args.connections, args.seconds - 1)
            report["classify_beside_generate"] = result(beside)
            report["generate"] = result(generating)
            report["recovery"] = [result(wrk(f"{url}/classify", classify, args.connections, 1))
                                  for _ in range(args.recovery_slices)]
            lines = log.read_text(errors="replace").splitlines()[log_start:]
            report["log"] = {"lines": len(lines), "tracebacks": sum("Traceback" in line for line in lines),
                             "bytes": sum(len(line) + 1 for line in lines), "first_lines": lines[:20]}
        finally:
            stop(process)
    summarise(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


def summarise(report: dict) -> None:
    alone, beside, generate = report["classify_alone"], report["classify_beside_generate"], report["generate"]
    generate_alone = report["generate_alone"]
    print(f"# {report['date']}; {report['workers']} worker(s); {report['connections']} connections to /classify, "
          f"{report['generate_connections']} to /generate; "
          f"/generate {report['generate_prompts']} prompts × max_tokens {report['generate_tokens']} at temperature "
          f"{report['generate_temperature']}\n")
    print("| load | route | req/s | p50 ms | p99 ms | statuses |")
    print("|---|---|---:|---:|---:|---|")
    for name, route, row in (("alone", "/classify", alone), ("alone", "/generate", generate_alone),
                             ("mixed", "/classify", beside), ("mixed", "/generate", generate)):
        print(f"| {name} | {route} | {row['requests_per_s']:,.1f} | {row['p50_ms']} | {row['p99_ms']} | "
              f"{row['statuses']} |")
    print(f"\n/classify beside /generate: {beside['requests_per_s'] / alone['requests_per_s']:.2f}× alone "
          f"(target ≥ 0.5), {beside['non_2xx'] + beside['socket_errors']} non-2xx/socket errors (target 0)")
    answered = generate["statuses"].get("200", 0) / max(1, generate_alone["statuses"].get("200", 0))
    print(f"/generate beside /classify: {answered:.2f}× the requests it answered alone")
    slices = ", ".join(f"{row['requests_per_s']:.0f} req/s {row['statuses']}" for row in report["recovery"])
    print(f"recovery, 1-s slices after the load: {slices}")
    print(f"server log during the run: {report['log']['lines']} lines, {report['log']['tracebacks']} tracebacks")


if __name__ == "__main__":
    main()
