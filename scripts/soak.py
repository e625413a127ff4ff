#!/usr/bin/env python3
"""The soak: the whole streaming job under steady load for an hour, watched.

Usage: python3 scripts/soak.py [--minutes 60] [--rate ROWS_PER_S] [--retention-hours 0.25] [--binary PATH] [--dir DIR]

Starts the real binary on an embedded log with the three cleaning pipelines
(pin, geo, user) writing output topics and the `posts` pipeline joining them
(pin ⋈ geo ⋈ user by `ind`) and counting posts per country and category in
windows; then the emulator posts through the REST Proxy shape at half the
peak rate (measured first for 30 s, unless --rate is given) for --minutes.
Every 10 s it samples the server's resident memory, its open files, the
log's file size and the landing's size into <dir>/samples.csv. At the end it
waits for every pipeline to catch up, checks that every acknowledged record
landed raw (0 lost), and draws <dir>/soak.png (matplotlib, installed once
into ~/.cache/sluice/soak-venv from PyPI).

A bench, not a test: it runs for an hour and measures. Results go in
docs/operations.md ("Soak").
"""
import argparse
import csv
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("pin", "geo", "user")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(data: Path, port: int, retention_hours: float) -> str:
    topics = [f"demo.{k}" for k in KINDS] + [f"demo.{k}-clean" for k in KINDS]
    text = f'data_dir = "{data}"\n[server]\nlisten = "127.0.0.1:{port}"\n'
    text += f"[log]\ntopics = {json.dumps(topics)}\nretention_hours = {retention_hours}\n"
    for k in KINDS:
        text += (
            f'[[pipeline]]\nname = "{k}"\ntopics = ["demo.{k}"]\ntransforms = ["clean-{k}"]\nland_raw = true\n'
            f'table = {{ name = "{k}" }}\noutput = {{ topic = "demo.{k}-clean" }}\n'
        )
    text += """[[pipeline]]
name = "posts"
topics = ["demo.pin-clean", "demo.geo-clean", "demo.user-clean"]
table = { name = "posts_by_country", formats = ["jsonl"] }
[pipeline.join]
inputs = [
  { topic = "demo.pin-clean", key = "ind", name = "pin" },
  { topic = "demo.geo-clean", key = "ind", name = "geo" },
  { topic = "demo.user-clean", key = "ind", name = "user" },
]
[pipeline.aggregate]
name = "count-posts"
time_field = "timestamp"
group_by = ["country", "category"]
window_ms = 60000
allowed_lateness_ms = 630720000000
"""
    return text


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def wait_up(base: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    sys.exit("the server did not come up")


def caught_up(base: str) -> bool:
    status = get(f"{base}/status")
    return all(
        p.get("partitions") and all(x.get("lag") == 0 for x in p["partitions"]) for k, p in status.items() if not k.startswith("@")
    )


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def sample(pid: int, data: Path) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return {
        "rss_mib": round(rss_kib / 1024, 1),
        "open_files": len(os.listdir(f"/proc/{pid}/fd")),
        "log_mib": round(os.path.getsize(data / "log.redb") / 2**20, 1),
        "landing_mib": round(dir_bytes(data / "landing") / 2**20, 1),
    }


def emulate(binary: str, base: str, rows: int, rate: int) -> subprocess.Popen:
    args = [binary, "emulate", "--url", base, "--rows", str(rows), "--user-id", "demo", "--concurrency", "2"]
    if rate:
        args += ["--rate", str(rate)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def posted(proc: subprocess.Popen) -> tuple:
    out, _ = proc.communicate()
    m = re.search(r"posted (\d+) rows \((\d+) records\) in (\d+) requests; (\d+) requests failed", out)
    if not m:
        sys.exit(f"the emulator said: {out}")
    return int(m.group(1)), int(m.group(2)), int(m.group(4))


def landed_raw(landing: Path) -> int:
    n = 0
    for k in KINDS:
        for root, _, files in os.walk(landing / "topics" / f"demo.{k}"):
            for f in files:
                if f.endswith(".json"):
                    with open(os.path.join(root, f), "rb") as fh:
                        n += sum(1 for line in fh if line.strip())
    return n


def plot(rows: list, out: Path, title: str) -> None:
    venv = Path.home() / ".cache/sluice/soak-venv"
    python = venv / "bin/python"
    if not python.exists() or subprocess.run([python, "-c", "import matplotlib"], capture_output=True).returncode:
        print("installing matplotlib (PyPI) into", venv, "for the plot…")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([venv / "bin/pip", "install", "-q", "matplotlib==3.10.7"], check=True)
    script = f"""
import csv, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open({str(out.parent / 'samples.csv')!r})))
t = [float(r["seconds"]) / 60 for r in rows]
fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
for ax, key, label in zip(axes, ["rss_mib", "open_files", "log_mib", "landing_mib"],
                          ["resident memory (MiB)", "open files", "log file (MiB)", "landing (MiB)"]):
    ax.plot(t, [float(r[key]) for r in rows])
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)
axes[-1].set_xlabel("minutes")
fig.suptitle({title!r})
fig.tight_layout()
fig.savefig({str(out)!r}, dpi=100)
"""
    subprocess.run([python, "-c", script], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--rate", type=int, default=0, help="rows per second (default: half the measured peak)")
    ap.add_argument("--binary", default=str(ROOT / "target/release/sluice"))
    ap.add_argument("--retention-hours", type=float, default=0.25, help="log.retention_hours: short, so retention shows within the soak")
    ap.add_argument("--dir", default=str(ROOT / "sluice-soak"))
    a = ap.parse_args()
    if not Path(a.binary).exists():
        print("building the release binary (cargo build --release --bin sluice)…")
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "sluice"], cwd=ROOT, check=True)
    run = Path(a.dir) / f"run-{int(time.time())}"
    data = run / "data"
    data.mkdir(parents=True)
    port = free_port()
    (run / "sluice.toml").write_text(config(data, port, a.retention_hours))
    base = f"http://127.0.0.1:{port}"
    log = open(run / "server.log", "w")
    server = subprocess.Popen([a.binary, "serve", "--config", str(run / "sluice.toml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_up(base)
        rate = a.rate
        total_records = failed = 0
        if not rate:
            peak_rows = 60_000
            print(f"measuring the peak ingest rate ({peak_rows} rows as fast as they are taken)…")
            t0 = time.time()
            rows, records, bad = posted(emulate(a.binary, base, peak_rows, 0))
            total_records, failed = records, bad
            rate = max(1, int(rows / (time.time() - t0) / 2))
            print(f"peak {2 * rate} rows/s; soaking at {rate} rows/s")
        seconds = int(a.minutes * 60)
        poster = emulate(a.binary, base, rate * seconds, rate)
        started = time.time()
        with open(run / "samples.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["seconds", "rss_mib", "open_files", "log_mib", "landing_mib"])
            w.writeheader()
            while poster.poll() is None:
                w.writerow({"seconds": round(time.time() - started), **sample(server.pid, data)})
                f.flush()
                time.sleep(10)
            total_rows, records, bad = posted(poster)
            total_records, failed = total_records + records, failed + bad
            deadline = time.time() + 600
            while not caught_up(base) and time.time() < deadline:
                w.writerow({"seconds": round(time.time() - started), **sample(server.pid, data)})
                time.sleep(5)
        server.terminate()
        server.wait(timeout=120)
        # Every record posted (the peak run's too) was acknowledged; each must have landed raw once.
        raw = landed_raw(data / "landing")
        rows_csv = list(csv.DictReader(open(run / "samples.csv")))
        rss = [float(r["rss_mib"]) for r in rows_csv]
        summary = {
            "minutes": a.minutes,
            "rate_rows_per_s": rate,
            "soak_rows": total_rows,
            "posted_records_with_the_peak_run": total_records,
            "failed_requests": failed,
            "landed_raw_records": raw,
            "lost_records": total_records - raw,
            "rss_mib_first_10_min_max": max(rss[: 60] or [0]),
            "rss_mib_last_10_min_max": max(rss[-60:] or [0]),
            "open_files_max": max(int(r["open_files"]) for r in rows_csv),
            "log_mib_max": max(float(r["log_mib"]) for r in rows_csv),
            "log_mib_end": float(rows_csv[-1]["log_mib"]),
        }
        (run / "summary.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary, indent=2))
        plot(rows_csv, run / "soak.png", f"sluice soak: {rate} rows/s for {a.minutes:g} min")
        print(f"samples: {run / 'samples.csv'}; plot: {run / 'soak.png'}")
        return 0
    finally:
        if server.poll() is None:
            server.kill()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
