"""Reading only the new part of a pod log (``sinceTime`` with ``timestamps=true``), through the real
`kubernetes` client against the API stand-in, whose log lines carry their own times."""

from __future__ import annotations

import logging
import urllib.parse

import pytest

from shared.launchers import create_launcher
from tests.k8s_standin import KubernetesStandIn
from tests.unit.launchers.test_kubernetes_launcher import NAMESPACE, make_spec

DAY = "2026-11-23T10:55:"


def at(second: int, nanos: int = 0) -> str:
    """A time in the test minute, to the nanosecond."""
    return f"{DAY}{second:02d}.{nanos:09d}Z"


def stamped(second: int, nanos: int = 0) -> str:
    """The same time as the kubelet writes it before a line (RFC3339Nano: trailing zeros dropped)."""
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{DAY}{second:02d}" + (f".{fraction}" if fraction else "") + "Z"


def line(n: int) -> str:
    return f"2026-11-23T10:55:00+00:00 # INFO -EVENT- line {n}\n"


def log_queries(standin: KubernetesStandIn) -> list[dict[str, str]]:
    return [read["query"] for read in standin.log_reads]


@pytest.fixture
def launcher(api_client):
    return create_launcher("kubernetes", namespace=NAMESPACE, api_client=api_client)


@pytest.fixture
def pod(launcher, standin):
    spec = make_spec()
    launcher.launch(spec)
    standin.set_phase(spec.instance_id, "Running")
    return spec.instance_id


# --- the stand-in's log, as the kubelet serves it ------------------------------------------


def test_the_standin_stamps_lines_and_honours_since_time_in_whole_seconds(standin, pod):
    standin.append_log(pod, "a\n", at=at(26, 999_999_999))
    standin.append_log(pod, "b\nc\n", at=at(27))  # two lines written at one instant
    standin.append_log(pod, "d\npart", at=at(27, 500_000_000))
    standin.append_log(pod, "ial\n", at=at(29))  # ends the line begun at 27.5: its time stays
    standin.append_log(pod, "e\n", at="2026-11-23T11:55:28.000000001+01:00")

    def log(**query):
        return standin.log(NAMESPACE, pod, {k: str(v) for k, v in query.items()}).decode()

    assert log() == "a\nb\nc\nd\npartial\ne\n"
    assert log(timestamps="true") == (f"{stamped(26, 999_999_999)} a\n{stamped(27)} b\n{stamped(27)} c\n"
                                      f"{stamped(27, 500_000_000)} d\n{stamped(27, 500_000_000)} partial\n"
                                      f"{stamped(28, 1)} e\n")
    # sinceTime reaches the kubelet in whole seconds: 27.9 means from 27.0 on
    assert log(sinceTime=at(27, 900_000_000)) == "b\nc\nd\npartial\ne\n"
    assert log(sinceTime=f"{DAY}28Z", timestamps="True") == f"{stamped(28, 1)} e\n"
    assert log(sinceTime=f"{DAY}27Z", tailLines=2) == "partial\ne\n"
    assert log(sinceTime=f"{DAY}27Z", timestamps="true", limitBytes=40) == f"{stamped(27)} b\n{stamped(27)} c\n"[:40]
    assert [r["bytes"] for r in standin.log_reads][-1] == 40
    standin.append_log(pod, "still writing", at=at(30))
    assert log(sinceTime=f"{DAY}30Z", timestamps="true") == f"{stamped(30)} still writing"


def test_a_bad_since_time_is_a_bad_request(standin, pod):
    from tests.k8s_standin import ApiError

    with pytest.raises(ApiError) as caught:
        standin.log(NAMESPACE, pod, {"sinceTime": "yesterday"})
    assert caught.value.status["code"] == 400


# --- reading on from a position -------------------------------------------------------------


def test_a_growing_log_is_read_once_each_line_in_order(launcher, standin, pod):
    """Many reads while the log grows; lines share seconds and even exact times across the reads."""
    from tests.k8s_standin import _nanos

    written, got, position, clock = [], [], "", _nanos(at(0))
    for round_ in range(30):
        for _ in range(round_ % 4 + 1):
            n = len(written)
            if n % 3 == 0:
                clock += 150_000_000  # else the same instant as the line before
            standin.append_log(pod, line(n), at=clock)
            written.append(line(n))
        read = launcher.read_log_since(pod, position)
        got.append(read.data.decode())
        position = read.position
    assert "".join(got) == "".join(written)
    assert launcher.read_log_since(pod, position).data == b""  # nothing new


def test_lines_at_the_same_instant_split_by_a_read_are_each_read_once(launcher, standin, pod):
    standin.append_log(pod, line(1) + line(2), at=at(5, 7))
    first = launcher.read_log_since(pod)
    assert first.data == (line(1) + line(2)).encode() and first.position == f"{stamped(5, 7)} 2"
    standin.append_log(pod, line(3), at=at(5, 7))  # a third line with the very same time
    second = launcher.read_log_since(pod, first.position)
    assert second.data == line(3).encode() and second.position == f"{stamped(5, 7)} 3"
    assert launcher.read_log_since(pod, second.position) == (b"", second.position)


def test_a_partial_line_is_completed_on_the_next_read(launcher, standin, pod):
    standin.append_log(pod, line(1), at=at(1))
    standin.append_log(pod, "2026-11-23T10:55:00+00:00 # INFO -EVENT- half", at=at(2))
    first = launcher.read_log_since(pod)
    assert first.data == (line(1) + "2026-11-23T10:55:00+00:00 # INFO -EVENT- half").encode()
    assert first.position == f"{stamped(1)} 1"  # the unended line is not past the position
    standin.append_log(pod, " and the rest\n", at=at(3))
    second = launcher.read_log_since(pod, first.position)
    assert second.data == b"2026-11-23T10:55:00+00:00 # INFO -EVENT- half and the rest\n"
    assert second.position == f"{stamped(2)} 1"  # the line has the time it began
    assert launcher.read_log_since(pod, second.position).data == b""


def test_each_read_asks_since_the_last_line_and_moves_only_new_lines(launcher, standin, pod):
    for s in range(50):
        standin.append_log(pod, line(s), at=at(s, 250_000_000))
    whole = sum(len(f"{stamped(s, 250_000_000)} {line(s)}") for s in range(50))
    first = launcher.read_log_since(pod)
    assert "sinceTime" not in log_queries(standin)[-1] and standin.log_reads[-1]["bytes"] == whole

    for s in range(50, 53):
        standin.append_log(pod, line(s), at=at(s, 250_000_000))
    second = launcher.read_log_since(pod, first.position)
    query = log_queries(standin)[-1]
    assert query["sinceTime"] == f"{DAY}49Z"  # the second of the last line read
    assert query["timestamps"] == "true" and int(query["limitBytes"]) == launcher.log_limit_bytes
    assert query["container"] == pod
    # what came over: the new lines and the one line of the boundary second, not the log
    assert standin.log_reads[-1]["bytes"] == sum(len(f"{stamped(s, 250_000_000)} {line(s)}") for s in range(49, 53))
    assert second.data == "".join(line(s) for s in range(50, 53)).encode()
    path = [p for m, p in standin.requests if m == "GET" and "/log?" in p][-1]
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["sinceTime"] == [f"{DAY}49Z"]

    launcher.read_log_since(pod, second.position)  # nothing new: only the boundary line comes
    assert standin.log_reads[-1]["bytes"] == len(f"{stamped(52, 250_000_000)} {line(52)}")


def test_a_long_log_is_read_in_bounded_calls(launcher, standin, pod):
    launcher.log_limit_bytes = 300
    text = "".join(line(n) for n in range(40))
    for n in range(40):
        standin.append_log(pod, line(n), at=at(n // 2, n))
    read = launcher.read_log_since(pod)
    assert read.data == text.encode()
    calls = standin.log_reads
    assert len(calls) > 10 and all(c["bytes"] <= 300 and c["query"]["limitBytes"] == "300" for c in calls)
    assert all("sinceTime" in c["query"] for c in calls[1:])
    assert calls[-1]["bytes"] < 300  # the last call came back short: the end of the log


def test_a_second_with_more_than_the_largest_call_is_left_with_a_warning(launcher, standin, pod, caplog):
    launcher.log_limit_bytes, launcher.max_log_limit_bytes = 100, 400
    for n in range(10):  # about 900 bytes within one second
        standin.append_log(pod, line(n), at=at(7, n))
    standin.append_log(pod, line(10), at=at(8))
    with caplog.at_level(logging.WARNING, logger="dm.launchers.kubernetes"):
        read = launcher.read_log_since(pod)
    text = read.data.decode()
    assert text.startswith(line(0)) and text.endswith(line(10))  # read on past the second it could not hold
    assert len(text.splitlines()) < 11 and len(set(text.splitlines())) == len(text.splitlines())
    assert "not read" in caplog.text
    assert read.position == f"{stamped(8)} 1"
    assert max(c["bytes"] for c in standin.log_reads) <= 400


def test_a_very_long_line_is_passed_whole_when_it_fits_the_largest_call(launcher, standin, pod):
    launcher.log_limit_bytes = 100
    long = "x" * 5000 + "\n"
    standin.append_log(pod, line(1), at=at(1))
    standin.append_log(pod, long, at=at(1, 5))
    standin.append_log(pod, line(2), at=at(2))
    read = launcher.read_log_since(pod)
    assert read.data == (line(1) + long + line(2)).encode()
    assert max(c["bytes"] for c in standin.log_reads) <= launcher.max_log_limit_bytes


def test_a_new_launcher_goes_on_from_the_position(launcher, standin, pod):
    from kubernetes import client

    standin.append_log(pod, line(1) + line(2), at=at(3))
    position = launcher.read_log_since(pod).position
    standin.append_log(pod, line(3), at=at(3, 1))
    other = client.ApiClient(client.Configuration(host=standin.url))
    try:
        again = create_launcher("kubernetes", namespace=NAMESPACE, api_client=other)
        assert again.read_log_since(pod, position).data == line(3).encode()
    finally:
        other.close()


def test_a_byte_offset_from_before_positions_is_honoured(launcher, standin, pod):
    standin.append_log(pod, line(1) + line(2), at=at(3))
    standin.append_log(pod, line(3), at=at(4))
    read = launcher.read_log_since(pod, str(len(line(1))))
    assert read.data == (line(2) + line(3)).encode() and read.position == f"{stamped(4)} 1"


def test_no_log_yet_or_no_pod(launcher, standin):
    spec = make_spec()
    launcher.launch(spec)  # Pending: the API server answers 400, waiting to start
    assert launcher.read_log_since(spec.instance_id, "") == (b"", "")
    assert launcher.read_log_since("instance-gone", f"{stamped(1)} 2") == (b"", f"{stamped(1)} 2")


def test_a_passing_fault_propagates(launcher, standin, pod):
    from kubernetes.client.exceptions import ApiException

    standin.fail_next(503, "ServiceUnavailable")
    with pytest.raises(ApiException):
        launcher.read_log_since(pod)


def test_the_local_launcher_keeps_byte_offsets(tmp_path):
    local = create_launcher("local", projects_root=tmp_path, logs_root=tmp_path, sink_url=None)
    (tmp_path / "instance-1.log").write_bytes(b"one\ntwo\nthr")
    first = local.read_log_since("instance-1")
    assert first == (b"one\ntwo\nthr", "8")
    with open(tmp_path / "instance-1.log", "ab") as f:
        f.write(b"ee\n")
    assert local.read_log_since("instance-1", first.position) == (b"three\n", "14")
    assert local.read_log_since("instance-unknown", "") == (b"", "0")
