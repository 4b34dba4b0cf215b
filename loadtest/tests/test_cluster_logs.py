"""What the cluster job keeps of its pods' logs (cluster.quiet_log): the service's access-log
lines of answered requests go, everything else stays. The lines are in the service's format
(server/src/logging.cpp: `{"ts":...,"level":...,` then the fields) behind kubectl's
`--timestamps` prefix, as `kubectl logs --timestamps` prints them."""

from __future__ import annotations

from celsius_loadtest.cluster import quiet_log

PREFIX = "2026-12-01T18:40:00.123456789Z "


def request(status: int, path: str = "/convert/model") -> str:
    return (PREFIX + '{"ts":"2026-12-01T18:40:00.123456Z","level":"info","msg":"request","method":"POST","path":'
            f'"{path}","status":{status},"duration_us":812,"bytes_in":22,"bytes_out":140,"request_id":"r1"}}')


def test_answered_requests_go_and_failed_ones_and_events_stay():
    event = PREFIX + '{"ts":"2026-12-01T18:40:00.000001Z","level":"info","msg":"listening","port":8000}'
    lines = [event, request(200), request(204, "/convert"), request(399), request(400), request(503), request(504)]
    kept = quiet_log("\n".join(lines) + "\n").splitlines()
    assert kept == [event, request(400), request(503), request(504)]


def test_lines_that_are_not_the_services_json_are_kept_as_they_are():
    lines = [PREFIX + 'model server log: "msg":"request" in plain text', PREFIX + '{"msg":"request","status":"x"}',
             "", PREFIX + "2026-12-01 18:40:00 I tensorflow/cc/saved_model/loader.cc:...] SavedModel load"]
    assert quiet_log("\n".join(lines)).splitlines() == lines


def test_an_empty_log_stays_empty():
    assert quiet_log("") == ""
    assert quiet_log(request(200)) == ""
