#!/usr/bin/env python3
"""An outside client's view of a topic Philo wrote: consumes every partition of the topic from
the beginning to its end with confluent-kafka (librdkafka's Python client), and validates each
record against the JSON Schemas the server publishes at GET /v1/schema:

- the value is an envelope valid against the `envelope` schema, and its `action` is valid
  against the schema of its kind;
- the key is the actor id (16 bytes);
- the headers say what the value is: `content-type: application/json`, `philo-kind` = the
  action's type, `philo-schema-version` = the envelope's and the kind's schema version, and a
  W3C `traceparent`.

Prints one JSON object: {"records": N, "invalid": [...first problems...], "ids": [...]}; exits 1
when any record is invalid.

    check_kafka_topic.py --bootstrap 127.0.0.1:9092 --topic actions --schema http://127.0.0.1:8080/v1/schema
"""

import argparse
import json
import re
import sys
import urllib.request
import uuid

import jsonschema
from confluent_kafka import Consumer, TopicPartition

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def load_schemas(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        doc = json.load(r)
    envelope = jsonschema.Draft202012Validator(doc["envelope"])
    kinds = {
        kind: (spec["schema_version"], jsonschema.Draft202012Validator(spec["schema"]))
        for kind, spec in doc["kinds"].items()
    }
    return envelope, kinds


def check(record, envelope_schema, kinds):
    """Problems with one record (empty when valid)."""
    problems = []
    try:
        value = json.loads(record.value())
    except ValueError as e:
        return [f"value is not JSON: {e}"]
    problems += [f"envelope: {e.message}" for e in envelope_schema.iter_errors(value)]
    action = value.get("action") or {}
    kind = action.get("type")
    if kind not in kinds:
        return problems + [f"unknown kind {kind!r}"]
    version, schema = kinds[kind]
    problems += [f"{kind}: {e.message}" for e in schema.iter_errors(action)]
    if value.get("schema_version") != version:
        problems.append(f"schema_version {value.get('schema_version')} != published {version}")
    try:
        if record.key() != uuid.UUID(value.get("actor_id", "")).bytes:
            problems.append("key is not the actor id")
    except ValueError:
        problems.append("actor_id is not a UUID")
    headers = {k: (v or b"").decode() for k, v in (record.headers() or [])}
    if headers.get("content-type") != "application/json":
        problems.append(f"content-type header {headers.get('content-type')!r}")
    if headers.get("philo-kind") != kind:
        problems.append(f"philo-kind header {headers.get('philo-kind')!r} != {kind}")
    if headers.get("philo-schema-version") != str(version):
        problems.append(f"philo-schema-version header {headers.get('philo-schema-version')!r}")
    if not TRACEPARENT.match(headers.get("traceparent", "")):
        problems.append(f"traceparent header {headers.get('traceparent')!r}")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", default="actions")
    ap.add_argument("--schema", required=True, help="URL of the server's /v1/schema")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    envelope_schema, kinds = load_schemas(args.schema)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"philo-outside-check-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    metadata = consumer.list_topics(args.topic, timeout=10)
    partitions = sorted(metadata.topics[args.topic].partitions)
    ends = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)
        if high > low:
            ends[p] = high
    consumer.assign([TopicPartition(args.topic, p, 0) for p in ends])

    seen, invalid, ids = 0, [], []
    done = {}
    while len(done) < len(ends):
        msg = consumer.poll(args.timeout)
        if msg is None:
            sys.exit(f"timed out with {seen} records read; partitions done: {sorted(done)}")
        if msg.error():
            sys.exit(f"consumer error: {msg.error()}")
        seen += 1
        problems = check(msg, envelope_schema, kinds)
        if problems and len(invalid) < 20:
            invalid.append({"partition": msg.partition(), "offset": msg.offset(), "problems": problems})
        try:
            ids.append(json.loads(msg.value())["id"])
        except (ValueError, KeyError, TypeError):
            pass
        if msg.offset() + 1 >= ends[msg.partition()]:
            done[msg.partition()] = True
    consumer.close()
    print(json.dumps({"records": seen, "invalid": invalid, "ids": ids}))
    sys.exit(1 if invalid else 0)


if __name__ == "__main__":
    main()
