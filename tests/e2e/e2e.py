#!/usr/bin/env python3
"""End to end on real, out-of-process components: the tansu Kafka-protocol
broker, the anomalyd binary, a real Prometheus server, and a producer that
anomalyd did not write (confluent-kafka's Python client).

1. Train a model with `anomalyd train` on a clean synthetic series.
2. Produce a clean and an anomalous series (an oscillation, a spike,
   later a stuck stretch) to tansu.
3. Run `anomalyd serve`; the events topic gets the anomalous series'
   event, opened (by the range check), escalated (by the stillness check)
   and closed, each message naming its cause; the oscillation's points
   counted by the roughness check; let Prometheus scrape it; assert through
   Prometheus's query API that the anomaly counter rose for the anomalous
   series and not for the clean one; `promtool check metrics` on a scrape.
4. SIGTERM: exit 0, committed offsets at the end of what was produced, and
   the series state saved to `--state-file`.
5. Restart, produce more (one message malformed), and check the new process
   saw exactly those, resumed the series (every new sample scored, none
   warming up), counted the bad one by reason, and exports its lag.
6. Two daemons in one consumer group on a four-partition topic: both read,
   one stops, the other takes its partitions over; every sample is read
   exactly once between them, no commit on revoke fails, and the group's
   committed offsets end at the topic's end.

With RULES (deploy/prometheus/rules.yml's spec as a plain rule file), the
Prometheus also loads the alert rules and every rule must evaluate cleanly
against the live daemon. With SCRAPE_OUT, the two daemons' scrapes are
written there, for deploy/check.py to check the rules' and the dashboard's
metric names against.

Usage: e2e.py ANOMALYD_BIN TANSU_BIN PROMETHEUS_BIN PROMTOOL_BIN [RULES [SCRAPE_OUT]]
Prints 'e2e: N passed, 0 failed' at the end.
"""

import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ANOMALYD, TANSU, PROMETHEUS, PROMTOOL = sys.argv[1:5]
RULES = sys.argv[5] if len(sys.argv) > 5 else None
SCRAPE_OUT = sys.argv[6] if len(sys.argv) > 6 else None
ROWS = 600
SPIKE_AT = 400
# Longer than the model's window (32 points), so that one window is flat;
# early enough that the merge gap (50) passes before the stream ends, so
# the event closes.
STUCK = range(440, 480)
# A fast oscillation (period 2, each step several times the season's)
# well before the spike, so that its event closes and the spike, scoring
# higher, opens its own within the cool-down.
OSCILLATING = range(250, 290)
START_MS = 1_700_000_000_000
checks = 0


def check(condition, message):
    global checks
    if not condition:
        print(f"e2e: FAILED: {message}", flush=True)
        print(f"e2e: {checks} passed, 1 failed", flush=True)
        sys.exit(1)
    checks += 1
    print(f"e2e: ok: {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    check(False, f"timed out waiting for {what}")


def http(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except Exception as e:  # noqa: BLE001 - any failure means "not yet"
        return 0, str(e)


def read_all(brokers, topic):
    """Every message on `topic`, from the start, as JSON."""
    reader = Consumer({"bootstrap.servers": brokers, "group.id": f"e2e-{topic}-reader",
                       "auto.offset.reset": "earliest"})
    reader.subscribe([topic])
    messages, quiet_since, deadline = [], time.time(), time.time() + 30
    while time.time() < deadline and (not messages or time.time() - quiet_since < 3):
        message = reader.poll(0.5)
        if message is not None and message.error() is None:
            messages.append(json.loads(message.value()))
            quiet_since = time.time()
    reader.close()
    return messages


def samples_read(body):
    """Every sample a daemon took from Kafka, whatever became of it."""
    return sum(metric(body, f'anomalyd_samples_total{{outcome="{o}"}}')
               for o in ("scored", "warming", "skipped", "dropped", "invalid"))


def metric(body, name):
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def season(rows, seed, spike=None, stuck=None, oscillating=None):
    rng = random.Random(seed)
    values = []
    for t in range(rows):
        phase = 2 * math.pi * t / 20
        v = math.sin(phase) + 0.5 * math.cos(phase) + 0.1 * rng.gauss(0, 1)
        if spike is not None and t == spike:
            v += 4.0
        if stuck is not None and t in stuck:
            v = values[stuck.start - 1]
        if oscillating is not None and t in oscillating:
            v += 0.5 if t % 2 == 0 else -0.5
        values.append(v)
    return values


def main():
    work = tempfile.mkdtemp(prefix="anomalyd-e2e-")
    kafka_port, http_port, prom_port = free_port(), free_port(), free_port()
    brokers = f"127.0.0.1:{kafka_port}"
    procs = []

    def start(args, log):
        p = subprocess.Popen(args, stdout=open(os.path.join(work, log), "w"), stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        url = f"tcp://127.0.0.1:{kafka_port}"
        start([TANSU, "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"], "tansu.log")
        admin = AdminClient({"bootstrap.servers": brokers})
        def topics_created():
            try:
                futures = admin.create_topics([NewTopic("samples", 2, 1), NewTopic("events", 1, 1)])
                for f in futures.values():
                    f.result(5)
                return True
            except Exception as e:  # noqa: BLE001
                return "already exists" in str(e).lower() or None
        wait_until(topics_created, 30, "tansu to accept topics")

        training = os.path.join(work, "train.csv")
        with open(training, "w") as f:
            f.write("t,value\n")
            for i, v in enumerate(season(3000, 1)):
                f.write(f"{i},{v}\n")
        model = os.path.join(work, "model")
        subprocess.run([ANOMALYD, "train", "--data", training, "--window", "32", "--kind", "dense",
                        "--epochs", "20", "--out", model], check=True, capture_output=True)
        check(os.path.exists(os.path.join(model, "manifest.json")), "anomalyd train wrote a model")

        produced = {}
        def delivered(err, msg):
            if err is None:
                key = (msg.topic(), msg.partition())
                produced[key] = max(produced.get(key, 0), msg.offset() + 1)
        producer = Producer({"bootstrap.servers": brokers})
        def send(series, rows, values, first_row=0):
            for i in range(rows):
                row = first_row + i
                payload = json.dumps({"ts": START_MS + row * 60_000, "value": values[i]})
                producer.produce("samples", key=series, value=payload, on_delivery=delivered)
                producer.poll(0)
            producer.flush(30)
        send("clean", ROWS, season(ROWS, 2))
        send("anomalous", ROWS, season(ROWS, 3, spike=SPIKE_AT, stuck=STUCK, oscillating=OSCILLATING))
        check(sum(produced.values()) == 2 * ROWS, f"confluent-kafka produced {2 * ROWS} samples to tansu")

        state_file = os.path.join(work, "state.cbor")
        # As deploy/k8s runs each replica: a static group member (its pod
        # name). Run so, the stop, the state file and the restart below
        # must still lose and repeat nothing.
        serve_args = [ANOMALYD, "serve", "--brokers", brokers, "--topic", "samples", "--group", "e2e",
                      "--group-instance-id", "anomalyd-0",
                      "--model", model, "--listen", f"127.0.0.1:{http_port}", "--events-topic", "events",
                      "--state-file", state_file]
        serve = start(serve_args, "serve-1.log")
        metrics_url = f"http://127.0.0.1:{http_port}/metrics"
        # Per series: the main windows, and the coarse windows of the
        # multi-scale default (`--coarse 4`: points of 4 rows).
        expected = 2 * ((ROWS - 31) + (ROWS // 4 - 31))
        body = wait_until(lambda: (lambda b: b if metric(b, "anomalyd_windows_scored_total") >= expected else None)(http(metrics_url)[1]),
                          90, f"{expected} windows scored")
        check(metric(body, "anomalyd_windows_scored_total") == expected, "every window was scored once")
        check(http(f"http://127.0.0.1:{http_port}/readyz")[0] == 200, "/readyz is 200 while serving")
        spiked = metric(body, 'anomalyd_out_of_range_total{series="anomalous"}')
        check(spiked >= 1, f"the spike left the model's training range: anomalyd_out_of_range_total counted {spiked}")
        check(metric(body, 'anomalyd_out_of_range_total{series="clean"}') == 0,
              "no point of the clean series left the training range")
        stuck = metric(body, 'anomalyd_flatline_total{series="anomalous"}')
        check(stuck >= 1, f"the stuck stretch was flagged: anomalyd_flatline_total counted {stuck}")
        check(metric(body, 'anomalyd_flatline_total{series="clean"}') == 0,
              "no window of the clean series stopped moving")
        rough = metric(body, 'anomalyd_rough_total{series="anomalous"}')
        check(rough >= 1, f"the oscillation was flagged: anomalyd_rough_total counted {rough}")
        check(metric(body, 'anomalyd_rough_total{series="clean"}') == 0,
              "no window of the clean series moved faster than its training windows")

        scrape = os.path.join(work, "scrape.txt")
        with open(scrape, "w") as f:
            f.write(body)
        scrapes = [body]
        lint = subprocess.run([PROMTOOL, "check", "metrics"], stdin=open(scrape), capture_output=True, text=True)
        check(lint.returncode == 0, f"promtool check metrics passes on a real scrape {lint.stdout}{lint.stderr}")

        prom_config = os.path.join(work, "prometheus.yml")
        with open(prom_config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n")
            if RULES:
                f.write(f"rule_files:\n  - {os.path.abspath(RULES)}\n")
            f.write("scrape_configs:\n  - job_name: anomalyd\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{http_port}']\n")
        start([PROMETHEUS, f"--config.file={prom_config}", f"--storage.tsdb.path={work}/tsdb",
               f"--web.listen-address=127.0.0.1:{prom_port}"], "prometheus.log")
        def query(expr):
            q = urllib.parse.urlencode({"query": expr})
            status, text = http(f"http://127.0.0.1:{prom_port}/api/v1/query?{q}")
            if status != 200:
                return None
            return json.loads(text)["data"]["result"]
        anomalous = wait_until(lambda: query('anomalyd_anomalies_total{series="anomalous"} > 0'), 60,
                               "Prometheus to see the anomalous series' counter rise")
        check(len(anomalous) == 1, "Prometheus: anomalyd_anomalies_total rose for the anomalous series")
        clean = query('anomalyd_anomalies_total{series="clean"} > 0')
        check(clean == [], "Prometheus: no anomaly counted for the clean series")
        if RULES:
            def rules_evaluated():
                status, text = http(f"http://127.0.0.1:{prom_port}/api/v1/rules")
                if status != 200:
                    return None
                rules = [r for g in json.loads(text)["data"]["groups"] for r in g["rules"]]
                done = rules and all(not r["lastEvaluation"].startswith("0001") for r in rules)
                return rules if done else None
            rules = wait_until(rules_evaluated, 30, "Prometheus to evaluate the alert rules")
            broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
            check(not broken and len(rules) >= 9,
                  f"Prometheus evaluates all {len(rules)} alert rules of deploy/prometheus against the live daemon: {broken}")

        serve.send_signal(signal.SIGTERM)
        code = serve.wait(60)
        check(code == 0, "SIGTERM: serve drained and exited 0")
        check(os.path.getsize(state_file) > 0 if os.path.exists(state_file) else False,
              "SIGTERM: the series state was saved to --state-file")

        events = read_all(brokers, "events")
        opened = [e for e in events if e.get("phase") == "opened"]
        spike_time = (START_MS + SPIKE_AT * 60_000) / 1000
        check(len(opened) >= 1 and all(e["series"] == "anomalous" for e in events)
              and any(e["start"] <= spike_time + 60 for e in opened),
              f"the events topic holds an opened event for the anomalous series by the spike, and nothing for the clean one: {events}")
        firsts = {}
        for e in events:
            firsts.setdefault((e["series"], e["start"]), e["phase"])
        check(all(phase == "opened" for phase in firsts.values()),
              f"each event's first message on the topic is its opened one: {firsts}")
        closed = [e for e in events if e.get("phase") == "closed"]
        check(closed and all((e["series"], e["start"]) in firsts for e in closed)
              and all(e["end"] >= e["start"] for e in closed),
              f"an event closes once the merge gap passes, under the start it opened with: {[(e['phase'], e['start'], e['end']) for e in events]}")
        stuck_from, stuck_to = ((START_MS + row * 60_000) / 1000 for row in (STUCK.start, STUCK.stop))
        by_stillness = [e for e in events if e.get("cause") == "stillness"]
        check(by_stillness and all(e["end"] >= stuck_from and e["start"] <= stuck_to for e in by_stillness)
              and all(e.get("cause") in ("error", "coarse", "range", "stillness", "roughness", "seasonal") for e in events),
              f"messages name the check that scored the peak, the stillness check for the stuck stretch: {[(e['phase'], e['start'], e.get('cause')) for e in events]}")

        reader = Consumer({"bootstrap.servers": brokers, "group.id": "e2e"})
        committed = reader.committed([TopicPartition("samples", p) for p in (0, 1)], timeout=20)
        offsets = {(tp.topic, tp.partition): tp.offset for tp in committed}
        want = {k: v for k, v in produced.items()}
        got = {k: offsets.get(k) for k in want}
        check(got == want, f"committed offsets sit at the end of what was produced: {got} vs {want}")
        reader.close()

        serve = start(serve_args, "serve-2.log")
        more = 10
        send("clean", more, season(more, 4), first_row=ROWS)
        producer.produce("samples", key="clean", value=b"{not json", on_delivery=delivered)
        producer.flush(30)
        def consumed():
            b = http(metrics_url)[1]
            return b if samples_read(b) >= more + 1 else None
        body = wait_until(consumed, 60, "the restarted daemon to consume the new samples")
        time.sleep(2)
        body = http(metrics_url)[1]
        total = samples_read(body)
        check(total == more + 1, f"after a restart exactly the {more} new samples and 1 malformed message were read (got {total}): nothing skipped, nothing re-read")
        scored = metric(body, 'anomalyd_samples_total{outcome="scored"}')
        check(scored == more and not os.path.exists(state_file),
              f"the restarted daemon resumed the series from the state file: all {more} new samples scored, none warming (got {scored})")
        invalid = sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                      if line.startswith("anomalyd_invalid_messages_total{"))
        check(invalid == 1, f"the malformed message is counted once in anomalyd_invalid_messages_total by reason (got {invalid})")
        # librdkafka reports statistics every 5 s.
        body = wait_until(lambda: (lambda b: b if "anomalyd_consumer_lag_messages{" in b else None)(http(metrics_url)[1]),
                          20, "the consumer lag gauge")
        lags = [line for line in body.splitlines() if line.startswith("anomalyd_consumer_lag_messages{")]
        check(lags and all(float(line.rsplit(" ", 1)[1]) >= 0 for line in lags),
              f"the daemon exports its consumer lag per partition: {lags}")
        scrapes.append(body)
        if SCRAPE_OUT:
            with open(SCRAPE_OUT, "w") as f:
                f.write("\n".join(scrapes))
        serve.send_signal(signal.SIGTERM)
        check(serve.wait(60) == 0, "the restarted daemon exits 0 on SIGTERM")

        # Two replicas in one consumer group (dynamic members, as a rolling
        # update or a scale-in leaves them): one stops, the other takes its
        # partitions over, and between them every sample is read exactly
        # once and every offset committed. On rdkafka's mock cluster the
        # staying member's commit on revoke fails; on a real broker it must
        # not.
        def created():
            try:
                for f in admin.create_topics([NewTopic("shared", 4, 1)]).values():
                    f.result(5)
                return True
            except Exception as e:  # noqa: BLE001
                return "already exists" in str(e).lower() or None
        wait_until(created, 30, "tansu to create the shared topic")
        def send_shared(first_row, rows):
            for series in range(8):
                for row in range(first_row, first_row + rows):
                    payload = json.dumps({"ts": START_MS + row * 60_000, "value": math.sin(2 * math.pi * row / 20)})
                    producer.produce("shared", key=f"pair-{series}", value=payload, on_delivery=delivered)
                    producer.poll(0)
            producer.flush(30)
        send_shared(0, 200)
        pair_ports = [free_port(), free_port()]
        pair = [start([ANOMALYD, "serve", "--brokers", brokers, "--topic", "shared", "--group", "pair",
                       "--model", model, "--listen", f"127.0.0.1:{port}"], f"pair-{i}.log")
                for i, port in enumerate(pair_ports)]
        def read_by(i):
            return samples_read(http(f"http://127.0.0.1:{pair_ports[i]}/metrics")[1])
        wait_until(lambda: read_by(0) + read_by(1) >= 8 * 200, 90, "two replicas to read the shared topic")
        time.sleep(2)
        first, staying = read_by(0), read_by(1)
        check(first > 0 and staying > 0 and first + staying == 8 * 200,
              f"two replicas in one group split the partitions and read each sample once ({first} + {staying})")
        pair[0].send_signal(signal.SIGTERM)
        check(pair[0].wait(60) == 0, "the first replica exits 0 on SIGTERM")
        send_shared(200, 50)
        wait_until(lambda: read_by(1) >= staying + 8 * 50, 120, "the staying replica to take the partitions over")
        time.sleep(2)
        taken_over = read_by(1) - staying
        check(taken_over == 8 * 50,
              f"the staying replica took the partitions over and read exactly the {8 * 50} new samples (got {taken_over}): none lost, none read twice")
        pair[1].send_signal(signal.SIGTERM)
        check(pair[1].wait(60) == 0, "the staying replica exits 0 on SIGTERM")
        reader = Consumer({"bootstrap.servers": brokers, "group.id": "pair"})
        committed = reader.committed([TopicPartition("shared", p) for p in range(4)], timeout=20)
        got = {tp.partition: tp.offset for tp in committed}
        want = {p: produced.get(("shared", p), 0) for p in range(4)}
        reader.close()
        revoke_failures = sum("commit on revoke failed" in line
                              for line in open(os.path.join(work, "pair-1.log")).read().splitlines())
        check(got == want and revoke_failures == 0,
              f"the group's committed offsets sit at the end of the shared topic ({got} vs {want}); commits on revoke failed {revoke_failures} times")
    except BaseException:
        # A failed run keeps its logs, model and Prometheus data to read.
        print(f"e2e: logs kept in {work}", file=sys.stderr, flush=True)
        raise
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    shutil.rmtree(work, ignore_errors=True)
    print(f"e2e: {checks} passed, 0 failed", flush=True)


if __name__ == "__main__":
    main()
