#!/usr/bin/env python3
"""Replays data/demo/ through a running zaiko's API, following demo/manifest.json.

    python3 data/replay_demo.py --url http://127.0.0.1:8080 --admin-token T [--only brands,locations,skus]

A reference for what `serve --demo` does, and a check of the demo files against the
real server's validation: every answer that is not 2xx is printed with its problem
detail, and the exit status is 1 if there was any. Brand endpoints get a brand token
created on the fly (POST /v1/brands/{brand}/tokens). Stdlib only.
"""
import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
SHORT = {"brands.ndjson": "brands", "locations.ndjson": "locations", "channels.ndjson": "channels", "skus.ndjson": "skus",
         "stock_changes.ndjson": "stock", "reservations.ndjson": "reservations", "shipments.ndjson": "shipments",
         "shipment_status.ndjson": "shipment_status"}


def request(url, method, path, token, body=None, headers=None):
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--admin-token", required=True)
    ap.add_argument("--demo", default=os.path.join(HERE, "demo"))
    ap.add_argument("--only", help="comma-separated kinds: " + ",".join(SHORT.values()))
    ap.add_argument("--workers", type=int, default=8)
    a = ap.parse_args()
    only = set(a.only.split(",")) if a.only else None
    manifest = json.load(open(os.path.join(a.demo, "manifest.json"), encoding="utf-8"))
    brand_tokens = {}
    failures = 0

    def token_for(template, line):
        if "{brand}" not in template:
            return a.admin_token
        brand = line["brand"]
        if brand not in brand_tokens:
            status, body = request(a.url, "POST", f"/v1/brands/{brand}/tokens", a.admin_token, {})
            if status != 201:
                raise SystemExit(f"cannot create a token for {brand}: {status} {body}")
            brand_tokens[brand] = body["token"]
        return brand_tokens[brand]

    def send(entry, line):
        token = token_for(entry["path"], line)
        line = dict(line)
        path = entry["path"]
        for key in entry["path_ids"]:
            path = path.replace("{%s}" % key, urllib.request.quote(line.pop(key), safe=""))
        headers = {h: line.pop(k) for k, h in entry["headers"].items() if k in line}
        return path, request(a.url, entry["method"], path, token, line, headers)

    for entry in manifest["files"]:
        kind = SHORT[entry["file"]]
        if only and kind not in only:
            continue
        lines = [json.loads(x) for x in open(os.path.join(a.demo, entry["file"]), encoding="utf-8")]
        for line in lines:  # brand tokens first, outside the pool
            if "{brand}" in entry["path"]:
                token_for(entry["path"], line)
        # Lines of one kind are independent, except status changes of one shipment,
        # which must stay in order: those go one by one.
        workers = 1 if kind == "shipment_status" else a.workers
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda line: send(entry, line), lines))
        bad = [(p, s, b) for p, (s, b) in results if not 200 <= s < 300]
        rejected = [(p, r) for p, (s, b) in results if isinstance(b, dict) for r in b.get("results", []) if r.get("status") == "rejected"]
        failures += len(bad) + len(rejected)
        print(f"{entry['file']:<24} {len(lines):>6} sent, {len(bad)} failed, {len(rejected)} changes rejected")
        for p, s, b in (bad + [(p, 200, r) for p, r in rejected])[:10]:
            print(f"    {s} {p}: {json.dumps(b, ensure_ascii=False)[:300]}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
