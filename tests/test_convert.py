"""``roombridge convert``: provider JSON ⇄ iCalendar on stdout, clear one-line errors."""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
from pathlib import Path

import icalendar
import pytest

from bridge.cli import main
from bridge.commands.convert import PROVIDER_KINDS
from mappings.errors import MappingError
from mappings.ical import calendar_to_bookings

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ICAL_FIXTURES = FIXTURES / "ical"
REPO = Path(__file__).resolve().parents[1]


def provider_fixtures() -> list[tuple[str, Path]]:
    """Every provider JSON fixture, by kind, for each kind that has a fixture folder."""
    return [
        (kind, path)
        for kind in PROVIDER_KINDS
        for path in sorted((FIXTURES / kind).glob("*.json"))
        if (FIXTURES / kind).is_dir()
    ]


def mapping_or_skip(kind: str) -> object:
    try:
        return importlib.import_module(f"mappings.{kind}")
    except ModuleNotFoundError as exc:
        if exc.name != f"mappings.{kind}":
            raise
        pytest.skip(f"mappings/{kind}.py is not written yet")


def run(capsysbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, bytes, str]:
    code = main(["convert", *argv])
    captured = capsysbinary.readouterr()
    return code, captured.out, captured.err.decode()


def masters(ics: bytes) -> list[icalendar.Event]:
    events = icalendar.Calendar.from_ical(ics).walk("VEVENT")
    return [event for event in events if "RECURRENCE-ID" not in event]


@pytest.mark.parametrize(
    ("kind", "path"), provider_fixtures(), ids=lambda value: getattr(value, "name", value)
)
def test_every_provider_fixture_converts_or_fails_cleanly(
    kind: str, path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    module = mapping_or_skip(kind)
    try:
        expected = module.from_json(json.loads(path.read_bytes()), provider=kind)  # type: ignore[attr-defined]
    except MappingError as exc:
        code, out, err = run(capsysbinary, "--from", kind, str(path))
        assert (code, out) == (2, b"")
        assert err.count("\n") == 1 and "Traceback" not in err
        assert str(exc) in err
        return
    code, out, err = run(capsysbinary, "--from", kind, str(path))
    assert code == 0, err
    assert out.startswith(b"BEGIN:VCALENDAR\r\n")
    booking_events = [e for e in masters(out) if "X-ROOMBRIDGE-ROLE" not in e]
    assert len(booking_events) == len(expected)
    assert {str(e["X-ROOMBRIDGE-PROVIDER"]) for e in booking_events} <= {kind}
    assert calendar_to_bookings(out) == expected


@pytest.mark.parametrize(
    ("kind", "path"), provider_fixtures(), ids=lambda value: getattr(value, "name", value)
)
def test_ics_converts_back_to_provider_json(
    kind: str, path: Path, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    module = mapping_or_skip(kind)
    try:
        expected = module.from_json(json.loads(path.read_bytes()), provider=kind)  # type: ignore[attr-defined]
    except MappingError as exc:
        # A fixture the mapping refuses (the seed's create example ends when it starts): the
        # command refuses it too, with the mapping's message, instead of a skipped test.
        code, out, err = run(capsysbinary, "--from", kind, str(path))
        assert (code, out) == (2, b"") and str(exc) in err and err.count("\n") == 1
        return
    code, ics, err = run(capsysbinary, "--from", kind, str(path))
    assert code == 0, err
    ics_file = tmp_path / "in.ics"
    ics_file.write_bytes(ics)
    code, out, err = run(capsysbinary, "--from", "ics", "--to", kind, str(ics_file))
    try:
        produced = [module.to_json(booking) for booking in expected]  # type: ignore[attr-defined]
    except MappingError as exc:
        # A booking the provider cannot receive (a cancelled one, an unbounded series...).
        assert (code, out) == (2, b"")
        assert str(exc) in err and err.count("\n") == 1
        return
    assert code == 0, err
    assert json.loads(out) == (produced[0] if len(produced) == 1 else produced)


def test_ics_from_another_client_reads_from_stdin(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (ICAL_FIXTURES / "thunderbird-weekly.ics").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, err = run(capsysbinary, "--from", "ics", "--to", "ics")
    assert code == 0, err
    (event,) = masters(out)
    assert str(event["SUMMARY"]) == "Weekly planning"
    assert str(event["RRULE"].to_ical().decode()) == "FREQ=WEEKLY;UNTIL=20240430T070000Z;BYDAY=TU"
    assert calendar_to_bookings(out) == calendar_to_bookings(data)


def test_privacy_and_buffer_options_shape_the_output(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    path = str(ICAL_FIXTURES / "thunderbird-weekly.ics")
    code, out, _ = run(
        capsysbinary,
        "--from",
        "ics",
        "--privacy",
        "busy",
        "--buffers",
        "merged",
        "--name",
        "Io",
        path,
    )
    assert code == 0
    assert {str(event["SUMMARY"]) for event in masters(out)} == {"Busy"}
    assert b"jana.novak" not in out and b"Weekly planning" not in out
    assert str(icalendar.Calendar.from_ical(out)["X-WR-CALNAME"]) == "Io"


@pytest.mark.filterwarnings("ignore::icalendar.GloballyUniqueTZIDGuessed")
def test_the_room_zone_applies_to_floating_times(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    path = str(ICAL_FIXTURES / "floating-duration.ics")
    _, out, _ = run(capsysbinary, "--from", "ics", "--timezone", "Europe/Oslo", path)
    assert b"DTSTART;TZID=Europe/Oslo:20240705T160000" in out


def test_malformed_json_exits_2_with_one_line(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"FromTime": ')))
    code, out, err = run(capsysbinary, "--from", "nexudus")
    assert (code, out) == (2, b"")
    assert err.startswith("roombridge convert: malformed JSON at line 1")
    assert err.count("\n") == 1


def test_bad_ics_names_the_booking_and_the_field(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.ics"
    bad.write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:meeting-42\r\n"
        "DTSTAMP:20240101T000000Z\r\nSUMMARY:no start\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    code, out, err = run(capsysbinary, "--from", "ics", "--to", "ics", str(bad))
    assert (code, out) == (2, b"")
    assert "booking meeting-42" in err and "field DTSTART" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_missing_mapping_module_is_a_clear_error(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "mappings.zenspace", None)
    body = tmp_path / "operation.json"
    body.write_text('{"id": "b-1"}')
    code, out, err = run(capsysbinary, "--from", "zenspace", str(body))
    assert (code, out) == (2, b"")
    assert err.startswith("roombridge convert: the zenspace mapping is not available")
    assert err.count("\n") == 1
    code, out, err = run(
        capsysbinary, "--from", "ics", "--to", "zenspace", str(ICAL_FIXTURES / "google-export.ics")
    )
    assert (code, out) == (2, b"")
    assert "zenspace mapping is not available" in err


def test_an_unreadable_file_exits_2(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    code, out, err = run(capsysbinary, "--from", "ics", "/nonexistent/bookings.ics")
    assert (code, out) == (2, b"")
    assert "cannot read /nonexistent/bookings.ics" in err


def test_the_installed_command_writes_crlf_ics_to_stdout() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "convert", "--from", "ics"],
        input=(ICAL_FIXTURES / "outlook-windows-tzid.ics").read_bytes(),
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"BEGIN:VCALENDAR\r\n")
    assert b"DTSTART;TZID=Europe/Berlin:20240304T140000" in result.stdout
    assert b"\n" not in result.stdout.replace(b"\r\n", b"")


def _nexudus(**changes: object) -> dict[str, object]:
    record = json.loads((FIXTURES / "nexudus" / "admin-single-record.json").read_text())
    record.update(changes)
    return {key: value for key, value in record.items() if value is not _DROP}


def _officernd(**changes: object) -> dict[str, object]:
    path = FIXTURES / "officernd" / "v2-weekly-with-occurrences.json"
    record = json.loads(path.read_text())
    record.pop("occurrences")
    record.update(changes)
    return record


_DROP = object()

#: The issue's bad-input list, each through the real command: (kind, argv extras, body, named).
BAD_INPUTS = [
    ("missing field", "nexudus", [], _nexudus(FromTime=_DROP), "FromTime"),
    (
        "end before start",
        "nexudus",
        [],
        _nexudus(ToTime="2025-10-25T22:00:00Z", ToTimeLocal=_DROP),
        "ToTime",
    ),
    (
        "end equals start",
        "nexudus",
        [],
        _nexudus(ToTime="2025-10-25T23:30:00Z", ToTimeLocal=_DROP),
        "ToTime",
    ),
    ("unknown enum", "nexudus", [], _nexudus(Repeats=42), "Repeats"),
    ("unknown zone", "nexudus", ["--timezone", "Mars/Olympus_Mons"], _nexudus(), "Mars"),
    ("unknown zone in body", "officernd", [], _officernd(timezone="Europe/Londn"), "timezone"),
    (
        "unbounded rrule",
        "officernd",
        [],
        _officernd(recurrence={"rrule": "FREQ=SECONDLY;COUNT=100000000"}),
        "rrule",
    ),
]


@pytest.mark.parametrize(
    ("kind", "extra", "body", "named"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_each_bad_input_exits_2_with_one_line_naming_the_field_and_never_hangs(
    kind: str, extra: list[str], body: dict[str, object], named: str, tmp_path: Path
) -> None:
    path = tmp_path / "input.json"
    path.write_text(json.dumps(body))
    command = [sys.executable, "-m", "bridge.cli", "convert", "--from", kind, *extra, str(path)]
    # The real command in its own process: a hang fails the test instead of the suite.
    result = subprocess.run(command, capture_output=True, cwd=REPO, timeout=60, check=False)
    err = result.stderr.decode()
    assert (result.returncode, result.stdout) == (2, b""), err
    assert err.startswith("roombridge convert: ") and err.count("\n") == 1, err
    assert named in err and "Traceback" not in err


def test_crlf_and_end_vevent_in_text_inject_no_component(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    hostile = "Hi\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:evil\r\nSUMMARY:pwned\r\nEND:VEVENT"
    path = tmp_path / "input.json"
    path.write_text(json.dumps(_nexudus(Notes=hostile, CoworkerFullName=hostile)))
    code, out, err = run(capsysbinary, "--from", "nexudus", str(path))
    assert code == 0, err
    events = icalendar.Calendar.from_ical(out).walk("VEVENT")
    assert len(events) == 1 and str(events[0]["UID"]) != "evil"
    assert not any(line.startswith((b"UID:evil", b"SUMMARY:pwned")) for line in out.splitlines())
    # The text survives as text (line ends normalised to LF), inside the one event.
    assert hostile.replace("\r\n", "\n") in str(events[0]["DESCRIPTION"])
