"""Instruction counts per request, for bench/instructions.bench.sh.

Two sub-commands:

  drive HOST PORT KIND COUNT [USER TOKEN MENU]
      Sends COUNT requests of KIND (menus | orders | charge) one after another
      on one keep-alive connection, each checked for its status. USER and
      TOKEN are the caller's id and access token, MENU the menu each order
      orders (one of it).

  layers FILE REQUESTS
      Reads a callgrind dump (FILE) of REQUESTS requests, sums each function's
      own instructions (exclusive Ir) into the layer its name belongs to
      (LAYERS below, first match wins) and prints one JSON object: {"total":
      Ir, "requests": REQUESTS, "layers": {layer: Ir, ...}, "top": [[function,
      Ir], ...]} (the 40 costliest functions), and when the dump has instruction addresses
      (`--dump-instr=yes`) "footprint": {"lines": n, "pages": n}, the distinct
      64-byte lines and 4 KiB pages of code run at least once per two
      requests: what a request has to fetch into the caches and the TLB.
"""

import http.client
import json
import re
import sys
import uuid

# (layer, patterns): a function belongs to the first layer one of whose
# patterns its demangled name contains. Costs are exclusive: a layer's figure
# is the code of its crates that ran, not what it called (allocation and
# copying are layers of their own), and code the compiler inlined into a
# caller counts for the caller.
LAYERS = [
    ("middleware: request id", ["coffee_http::middleware::request_context", "coffee_http::middleware::request_id",
                                "coffee_http::request_id",
                                "coffee_http::client_addr", "coffee_http::middleware::client_request_id"]),
    ("middleware: root span and log line", ["tracing_actix_web", "tracing::", "tracing_core", "tracing_subscriber",
                                             "CoffeeRootSpan", "coffee_bootstrap::telemetry", "coffee_http::middleware::RequestSpan",
                                             "tracing_log", "sharded_slab", "thread_local::"]),
    ("middleware: metrics", ["metrics::", "metrics_exporter_prometheus", "metrics_util", "coffee_http::metrics",
                             "quanta::", "sketches_ddsketch"]),
    ("middleware: problem fallback and CORS", ["actix_web::middleware::err_handlers", "problem_fallback",
                                               "actix_web::middleware::condition", "actix_cors",
                                               "coffee_http::middleware::code_for"]),
    ("auth (token, session)", ["jsonwebtoken", "hmac::", "sha2::", "base64::", "coffee_crypto", "coffee_http::auth",
                               "coffee_application::authenticate", "redis::", "deadpool_redis", "coffee_redis",
                               "combine::", "ring::", "digest::"]),
    ("JSON", ["serde_json", "serde::", "serde_core::", "coffee_http::extract", "serde_path_to_error", "ryu::", "itoa::"]),
    ("pool", ["deadpool::", "coffee_postgres::pool"]),
    ("SQL (diesel, tokio-postgres)", ["diesel", "tokio_postgres", "postgres_protocol", "postgres_types",
                                      "coffee_postgres", "fallible_iterator"]),
    ("application and domain", ["coffee_application", "coffee_domain", "coffee_http::routes", "coffee_http::problem",
                                "coffee_http::idempotency", "coffee_http::state", "menus_baseline"]),
    ("middleware: request lifecycle (id header, span, glue)", ["coffee_http::middleware::"]),
    ("header timer (TimedIo)", ["coffee_http::timed_io"]),
    ("ids (uuid)", ["uuid::", "chacha20::", "rand::", "rand_core::"]),
    ("actix (HTTP/1, router, server)", ["actix_", "http::", "httparse", "bytes::", "bytestring", "language_tags",
                                        "mime::", "coffee_http::", "url::", "percent_encoding", "regex",
                                        "smallvec", "encoding_rs", "ahash", "hashbrown", "foldhash"]),
    ("tokio runtime and futures", ["tokio::", "mio::", "futures_", "parking_lot", "crossbeam", "std::sync",
                                   "std::thread", "async_trait", "pin_project", "std::sys", "std::io",
                                   "socket2", "core::task", "std::panicking"]),
    ("allocator", ["mi_", "mimalloc", "malloc", "free", "realloc", "calloc", "alloc::alloc", "__rust_alloc",
                   "__rust_dealloc", "__rust_realloc", "_int_", "tcache", "arena_"]),
    ("memcpy and libc", ["memcpy", "memmove", "memset", "memcmp", "memchr", "strlen", "__strchr", "bcmp", "__libc",
                         "clock_gettime", "__vdso", "pthread", "syscall", "getrandom", "__GI_", "_dl_",
                         "__tls_get_addr"]),
]
OTHER = "other"

LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*?)(?:\s+\[[^\]]*\])?\s*$")


def layer_of(name):
    for layer, patterns in LAYERS:
        if any(p in name for p in patterns):
            return layer
    return OTHER


def self_costs(path):
    """Each function's own instructions (exclusive Ir) in a callgrind dump,
    read from the file itself: a cost line belongs to the current `fn=`,
    except the line after `calls=`, which is the inclusive cost of a call.
    Also each code address's instructions, when the dump has addresses
    (`positions: instr ...`; relative ones, `+n` and `-n`, are from the
    address before, `*` is the same)."""
    names = {}
    costs = {}
    by_address = {}
    current = None
    after_calls = False
    total = None
    positions = ["line"]
    address = 0

    def name_of(spec):
        # "(id) name" defines a compressed name, "(id)" refers to one.
        spec = spec.strip()
        if spec.startswith("("):
            ident, _, rest = spec[1:].partition(")")
            rest = rest.strip()
            if rest:
                names[ident] = rest
            return names.get(ident, ident)
        return spec

    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("fn="):
                current = name_of(line[3:])
                after_calls = False
            elif line.startswith("cfn="):
                name_of(line[4:])
            elif line.startswith("calls="):
                after_calls = True
            elif line.startswith("positions:"):
                positions = line.split()[1:]
            elif line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if positions[0] == "instr":
                    at = parts[0]
                    if at.startswith(("+", "-")):
                        address += int(at, 0)
                    elif at != "*":
                        address = int(at, 0)
                if after_calls:
                    after_calls = False
                    continue
                at = len(positions)
                if current is not None and len(parts) > at:
                    ir = int(parts[at])
                    costs[current] = costs.get(current, 0) + ir
                    if positions[0] == "instr":
                        by_address[address] = by_address.get(address, 0) + ir
    return total, costs, by_address


def footprint(by_address, requests):
    """The distinct 64-byte lines and 4 KiB pages of code that ran at least
    once per two requests (a line's instructions, over requests / 2)."""
    per_line = {}
    for address, ir in by_address.items():
        per_line[address >> 6] = per_line.get(address >> 6, 0) + ir
    hot = [line for line, ir in per_line.items() if ir >= requests / 2]
    return {"lines": len(hot), "pages": len({line >> 6 for line in hot})}


def layers(path, requests):
    total, costs, by_address = self_costs(path)
    if total is None:
        raise SystemExit(f"no summary line in {path}")
    sums = {layer: 0 for layer, _ in LAYERS}
    sums[OTHER] = 0
    for name, ir in costs.items():
        sums[layer_of(name)] += ir
    top = sorted(costs.items(), key=lambda kv: -kv[1])[:40]
    requests = int(requests)
    out = {"total": total, "requests": requests, "layers": sums, "top": top}
    if by_address:
        out["footprint"] = footprint(by_address, requests)
    print(json.dumps(out))


def drive(host, port, kind, count, user=None, token=None, menu=None):
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    for _ in range(int(count)):
        if kind == "menus":
            conn.request("GET", "/menus")
            expected = 200
        else:
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4()),
                       "Content-Type": "application/json"}
            if kind == "orders":
                body = json.dumps({"items": [{"menuId": menu, "quantity": 1}]})
                conn.request("POST", "/orders", body, headers)
                expected = 201
            else:
                conn.request("POST", f"/users/{user}/points/charge", json.dumps({"amount": 1000}), headers)
                expected = 200
        response = conn.getresponse()
        body = response.read()
        if response.status != expected:
            raise SystemExit(f"{kind}: answered {response.status}: {body[:300]!r}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "drive":
        drive(*args)
    elif command == "layers":
        layers(*args)
    else:
        raise SystemExit(f"unknown command {command}")
