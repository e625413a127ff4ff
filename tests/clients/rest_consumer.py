"""A REST Proxy v2 client written from Confluent's documentation, nothing else:
produce with POST /topics/{topic}, then create a consumer instance, subscribe,
read, commit, and check offsets, as the "Consumer" section of the API reference
describes. The end-to-end tests run it against sluice (over the embedded log
and over Kafka) and check what it prints: one JSON document per phase.

Usage: rest_consumer.py BASE_URL PHASE [args...]
  produce TOPIC FIRST COUNT          post COUNT records {"n": i} keyed "k<i>"
  read GROUP INSTANCE TOPIC EXPECT   create the instance if it is not there,
                                     subscribe, read until EXPECT records or 60 s,
                                     commit each partition's last offset
  pair GROUP TOPIC EXPECT            two instances of one group read side by side
"""
import json
import sys
import time

import requests

V2 = "application/vnd.kafka.v2+json"
JSON_RECORDS = "application/vnd.kafka.json.v2+json"


def produce(base, topic, first, count):
    records = [{"key": f"k{i}", "value": {"n": i}} for i in range(first, first + count)]
    for at in range(0, len(records), 100):
        r = requests.post(f"{base}/topics/{topic}", headers={"Content-Type": JSON_RECORDS}, data=json.dumps({"records": records[at:at + 100]}))
        r.raise_for_status()
        assert all(o.get("error") is None for o in r.json()["offsets"]), r.text
    return {"produced": count}


def create(base, group, name):
    body = {"name": name, "format": "json", "auto.offset.reset": "earliest", "auto.commit.enable": "false"}
    r = requests.post(f"{base}/consumers/{group}", headers={"Content-Type": V2}, data=json.dumps(body))
    if r.status_code == 409:
        assert r.json()["error_code"] == 40902, r.text
        return f"{base}/consumers/{group}/instances/{name}", False
    r.raise_for_status()
    return r.json()["base_uri"], True


def subscribe(uri, topic):
    r = requests.post(f"{uri}/subscription", headers={"Content-Type": V2}, data=json.dumps({"topics": [topic]}))
    assert r.status_code == 204, r.text


def poll(uri):
    r = requests.get(f"{uri}/records", params={"timeout": 500}, headers={"Accept": JSON_RECORDS})
    r.raise_for_status()
    return r.json()


def commit(uri, records):
    last = {}
    for rec in records:
        key = (rec["topic"], rec["partition"])
        last[key] = max(last.get(key, -1), rec["offset"])
    offsets = [{"topic": t, "partition": p, "offset": o} for (t, p), o in sorted(last.items())]
    if offsets:
        r = requests.post(f"{uri}/offsets", headers={"Content-Type": V2}, data=json.dumps({"offsets": offsets}))
        assert r.status_code in (200, 204), r.text
    partitions = [{"topic": t, "partition": p} for (t, p) in sorted(last)]
    r = requests.get(f"{uri}/offsets", headers={"Content-Type": V2}, data=json.dumps({"partitions": partitions}))
    r.raise_for_status()
    return {f'{o["topic"]}/{o["partition"]}': o["offset"] for o in r.json()["offsets"]}


def read(base, group, name, topic, expect):
    uri, created = create(base, group, name)
    subscribe(uri, topic)
    records = []
    deadline = time.time() + 60
    while len(records) < expect and time.time() < deadline:
        records.extend(poll(uri))
    # Nothing more than expected arrives.
    records.extend(poll(uri))
    committed = commit(uri, records)
    values = sorted(r["value"]["n"] for r in records)
    keys_match = all(r["key"] == f'k{r["value"]["n"]}' for r in records)
    return {"created": created, "count": len(records), "values": values, "keys_match": keys_match, "committed": committed}


def pair(base, group, topic, expect):
    uris = []
    for name in ("left", "right"):
        uri, _ = create(base, group, name)
        subscribe(uri, topic)
        uris.append(uri)
    got = {u: [] for u in uris}
    deadline = time.time() + 90
    while sum(len(v) for v in got.values()) < expect and time.time() < deadline:
        for u in uris:
            got[u].extend(poll(u))
    for u in uris:
        got[u].extend(poll(u))
    parts = {}
    for u in uris:
        r = requests.get(f"{u}/assignments", headers={"Accept": V2})
        r.raise_for_status()
        parts[u.rsplit("/", 1)[1]] = sorted(p["partition"] for p in r.json()["partitions"])
    for u in uris:
        requests.delete(u, headers={"Content-Type": V2}).raise_for_status()
    read_from = {u.rsplit("/", 1)[1]: sorted({r["partition"] for r in got[u]}) for u in uris}
    values = sorted(r["value"]["n"] for u in uris for r in got[u])
    return {"assignments": parts, "read_from": read_from, "values": values}


def main():
    base, phase, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if phase == "produce":
        out = produce(base, args[0], int(args[1]), int(args[2]))
    elif phase == "read":
        out = read(base, args[0], args[1], args[2], int(args[3]))
    elif phase == "pair":
        out = pair(base, args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown phase {phase}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
