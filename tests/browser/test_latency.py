"""Raise to row: the time from an alarm's raise (the event time of the
reading that raised it, stamped when published) to its row in the console's
list, measured in the browser over 150 alarms, and the page's transfer
size. A measurement, printed with the command to reproduce it; the test
asserts only that every alarm came, once.

    python3 -m pytest -q -s tests/browser/test_latency.py

The service runs `hazardwatch run` on a park of 150 level points with no
on-delay, lateness LATENESS_MS (env HAZARDWATCH_LATENESS_MS, default 200,
the soak's) and epoch 20 ms; one MQTT gateway publishes one reading above H
per point, 5 per second.
"""

import json
import os
import re
import statistics
import subprocess
import time

import paho.mqtt.client as mqtt

from conftest import ROOT, Page

POINTS = 150
RATE = 5.0
LATENESS_MS = int(os.environ.get("HAZARDWATCH_LATENESS_MS", "200"))


def park(tmp):
    points = "".join(
        f"""
[[enterprise.hazard_source.unit.point]]
id = "L{i:03}"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
h = 18.0
on_delay_s = 0
off_delay_s = 0
"""
        for i in range(POINTS)
    )
    text = f"""
data_dir = "{tmp / 'data'}"
[mqtt]
listen = "127.0.0.1:0"
[grpc]
listen = "127.0.0.1:0"
[console]
listen = "127.0.0.1:0"
[metrics]
enabled = false
[engine]
lateness_ms = {LATENESS_MS}
epoch_ms = 20
[park]
id = "LAT"
[[enterprise]]
id = "E01"
[[enterprise.hazard_source]]
id = "E01-HS1"
grade = 3
[[enterprise.hazard_source.unit]]
id = "T1"
{points}"""
    path = tmp / "latency.toml"
    path.write_text(text)
    return path


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_raise_to_row_in_the_browser(browser, tmp_path, artifacts):
    binary = os.environ.get("HAZARDWATCH_BIN", str(ROOT / "target" / "debug" / "hazardwatch"))
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([binary, "run", "--config", str(park(tmp_path))], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (m := re.search(r"console (http://[0-9.:]+)/", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        console = m.group(1)
        broker = re.search(r"MQTT ([0-9.]+):([0-9]+)", log.read_text())
        page = Page(browser, console + "/")
        p = page.page
        p.wait_for_function("() => window.hw && window.hw.feed !== null && document.querySelector('#link').dataset.state === 'up'")
        # What the page cost to load: every resource, as transferred.
        transfer = p.evaluate(
            """() => performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
                 .map(e => ({ name: e.name.replace(location.origin, ''), bytes: e.transferSize, body: e.decodedBodySize }))"""
        )
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="GW1")
        client.connect(broker.group(1), int(broker.group(2)))
        client.loop_start()
        for i in range(POINTS):
            batch = {"gateway": "GW1", "readings": [{"point": f"L{i:03}", "ts": int(time.time() * 1000), "value": 19.0}]}
            client.publish("hw/v1/E01/GW1/telemetry", json.dumps(batch), qos=1).wait_for_publish(5)
            time.sleep(1 / RATE)
        p.wait_for_function(f"() => window.hw.rowTimes.filter(t => /^L[0-9]+\\/H$/.test(t.id)).length >= {POINTS}", timeout=60_000)
        client.loop_stop()
        client.disconnect()
        times = [t for t in p.evaluate("window.hw.rowTimes") if re.match(r"^L[0-9]+/H$", t["id"])]
        ids = [t["id"] for t in times]
        assert len(ids) == len(set(ids)) == POINTS, "every alarm once"
        rows = p.eval_on_selector_all('tr[data-alarm$="/H"]', "rs => rs.map(r => r.dataset.alarm)")
        assert len(rows) == len(set(rows)) == POINTS
        latency = [t["shown"] - t["eventTime"] for t in times]
        figures = {
            "alarms": len(latency),
            "lateness_ms": LATENESS_MS,
            "raise_to_row_ms": {"p50": percentile(latency, 0.5), "p99": percentile(latency, 0.99), "max": max(latency), "mean": round(statistics.mean(latency), 1)},
            "page_transfer_bytes": sum(e["bytes"] for e in transfer),
            "page_body_bytes": sum(e["body"] for e in transfer),
            "page_resources": transfer,
        }
        (artifacts / "latency.json").write_text(json.dumps(figures, indent=2))
        print()
        print(f"raise to row in the browser, {len(latency)} alarms, lateness {LATENESS_MS} ms:"
              f" p50 {figures['raise_to_row_ms']['p50']} ms, p99 {figures['raise_to_row_ms']['p99']} ms,"
              f" max {figures['raise_to_row_ms']['max']} ms")
        print(f"page load: {figures['page_transfer_bytes']} bytes transferred ({figures['page_body_bytes']} bytes of content) in {len(transfer)} requests")
        print("reproduce: python3 -m pytest -q -s tests/browser/test_latency.py")
        assert not page.errors, page.errors
        page.close()
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
