"""The HTTP server in-process (Starlette TestClient) and once for real on uvicorn."""

from __future__ import annotations

import gzip
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient

from bridge.config import Config
from bridge.feeds.publisher import feed_url
from bridge.server import RequestLog, create_app, redacted_path
from bridge.state.store import StateStore
from tests.feeds.test_publisher import NOW, ROOM, Clock, single, write_config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def store(config: Config) -> Iterator[StateStore]:
    with StateStore.open(config.state.url) as opened:
        opened.put_provider_booking(ROOM, single("b1", 1, title="Secret board meeting"), NOW)
        opened.put_provider_booking(ROOM, single("b2", 3), NOW)
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(config: Config, store: StateStore, clock: Clock) -> Iterator[TestClient]:
    with TestClient(RequestLog(create_app(config, store=store, clock=clock))) as test_client:
        yield test_client


def path_of(store: StateStore, room: str = ROOM) -> str:
    return f"/feeds/{room}/{store.feed_token(room, NOW)}.ics"


def test_feed_is_text_calendar_with_validators(client: TestClient, store: StateStore) -> None:
    response = client.get(path_of(store), headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    assert response.headers["etag"].startswith('"') and response.headers["last-modified"]
    assert response.headers["last-modified"] == format_datetime(NOW, usegmt=True)
    assert response.content.count(b"BEGIN:VEVENT") == 2
    assert b"Secret" not in response.content  # busy by default


def test_matching_if_none_match_gives_304(client: TestClient, store: StateStore) -> None:
    first = client.get(path_of(store))
    etag = first.headers["etag"]
    again = client.get(path_of(store), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    weak_list = client.get(path_of(store), headers={"If-None-Match": f'"nope", W/{etag}'})
    assert weak_list.status_code == 304
    stale = client.get(path_of(store), headers={"If-None-Match": '"something-else"'})
    assert stale.status_code == 200 and stale.content == first.content


def test_if_modified_since(client: TestClient, store: StateStore) -> None:
    modified = client.get(path_of(store)).headers["last-modified"]
    assert client.get(path_of(store), headers={"If-Modified-Since": modified}).status_code == 304
    earlier = format_datetime(NOW - timedelta(seconds=1), usegmt=True)
    assert client.get(path_of(store), headers={"If-Modified-Since": earlier}).status_code == 200
    # If-None-Match wins: a stale ETag means 200 whatever the date says.
    both = {"If-Modified-Since": modified, "If-None-Match": '"old"'}
    assert client.get(path_of(store), headers=both).status_code == 200
    assert client.get(path_of(store), headers={"If-Modified-Since": "garbage"}).status_code == 200


def test_an_edit_changes_etag_so_clients_refetch(client: TestClient, store: StateStore,
                                                 clock: Clock) -> None:
    etag = client.get(path_of(store)).headers["etag"]
    clock.now = NOW + timedelta(minutes=10)
    store.put_provider_booking(ROOM, single("b2", 4), clock.now)
    response = client.get(path_of(store), headers={"If-None-Match": etag})
    assert response.status_code == 200 and response.headers["etag"] != etag
    assert response.headers["last-modified"] == format_datetime(clock.now, usegmt=True)


def test_head_has_headers_and_no_body(client: TestClient, store: StateStore) -> None:
    full = client.get(path_of(store), headers={"Accept-Encoding": "identity"})
    head = client.head(path_of(store), headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(full.content))
    assert head.headers["etag"] == full.headers["etag"]


def test_gzip_when_asked(client: TestClient, store: StateStore) -> None:
    plain = client.get(path_of(store), headers={"Accept-Encoding": "identity"})
    raw = client.get(path_of(store), headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.content == plain.content  # httpx decodes; the bytes are the same feed
    assert raw.headers["vary"] == "Accept-Encoding"
    assert raw.headers["etag"] != plain.headers["etag"]
    assert client.get(path_of(store), headers={
        "Accept-Encoding": "gzip", "If-None-Match": plain.headers["etag"]}).status_code == 304
    refused = client.get(path_of(store), headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers


def test_unknown_room_wrong_token_and_unknown_path_are_the_same_404(
    client: TestClient, store: StateStore
) -> None:
    token = store.feed_token(ROOM, NOW)
    other = store.feed_token("io", NOW)
    answers = [
        client.get(f"/feeds/{ROOM}/{'x' * len(token)}.ics"),    # wrong token
        client.get(f"/feeds/{ROOM}/{token[:-1]}.ics"),          # almost right
        client.get(f"/feeds/{ROOM}/{other}.ics"),                # another room's token
        client.get(f"/feeds/nowhere/{token}.ics"),               # unknown room
        client.get(f"/feeds/{ROOM}/{token}"),                    # no .ics
        client.get("/feeds/"),                                   # no route
        client.get(f"/feeds/{ROOM}/{token}.ics/more"),
    ]
    assert {a.status_code for a in answers} == {404}
    assert len({a.content for a in answers}) == 1
    shapes = {tuple(sorted((k, v) for k, v in a.headers.items() if k != "date"))
              for a in answers}
    assert len(shapes) == 1


def test_rotation_invalidates_the_old_url(client: TestClient, store: StateStore) -> None:
    old = path_of(store)
    assert client.get(old).status_code == 200
    new = store.rotate_feed_token(ROOM, NOW)
    assert client.get(old).status_code == 404
    assert client.get(f"/feeds/{ROOM}/{new}.ics").status_code == 200


def test_a_room_without_a_token_yet_has_no_feed(client: TestClient) -> None:
    assert client.get(f"/feeds/{ROOM}/anything.ics").status_code == 404


def test_healthz_and_metrics(client: TestClient, store: StateStore) -> None:
    assert client.get("/healthz").text == "ok\n"
    client.get(path_of(store))
    client.get(path_of(store), headers={"If-None-Match": "*"})
    client.get("/feeds/nowhere/x.ics")
    run = store.begin_run(ROOM, NOW)
    store.finish_run(run, NOW + timedelta(seconds=3), ok=False, errors=["boom"])
    store.record_error(ROOM, "b9", "create", "HTTP 500", NOW)
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert f'roombridge_feed_requests_total{{room="{ROOM}",status="200"}} 1.0' in text
    assert f'roombridge_feed_requests_total{{room="{ROOM}",status="304"}} 1.0' in text
    assert 'roombridge_feed_requests_total{room="unknown",status="404"} 1.0' in text
    assert "roombridge_feed_request_duration_seconds_bucket" in text
    assert f'roombridge_feed_chunks_rendered_total{{room="{ROOM}"}} 2.0' in text
    assert f'roombridge_sync_runs_total{{outcome="failed",room="{ROOM}"}} 1.0' in text
    assert f'roombridge_sync_last_duration_seconds{{room="{ROOM}"}} 3.0' in text
    assert f'roombridge_sync_pending_errors{{room="{ROOM}"}} 1.0' in text
    assert "roombridge_state_up 1.0" in text
    assert store.feed_token(ROOM, NOW) not in text


def test_status_page_shows_each_rooms_sync_without_urls_tokens_or_messages(
    client: TestClient, store: StateStore
) -> None:
    token = store.feed_token(ROOM, NOW)
    page = client.get("/")
    assert page.status_code == 200 and "Callisto" in page.text and "Io" in page.text
    assert page.text.count("never synced") == 2
    run = store.begin_run(ROOM, NOW)
    store.finish_run(run, NOW + timedelta(seconds=3), ok=False, errors=["Secret board meeting"])
    store.record_error(ROOM, "b9", "create", "HTTP 500 for Secret board meeting", NOW)
    text = client.get("/").text
    row = text.split("Callisto (callisto)")[1].split("</tr>")[0]
    cells = [cell.split("</td>")[0] for cell in row.split("<td>")[1:]]
    assert cells == [(NOW + timedelta(seconds=3)).isoformat(), "failed", "1", "-"]
    assert text.count("never synced") == 1
    assert token not in text and "/feeds/" not in text and "Secret" not in text


def test_tokens_never_reach_the_log(client: TestClient, store: StateStore,
                                    caplog: pytest.LogCaptureFixture) -> None:
    token = store.feed_token(ROOM, NOW)
    with caplog.at_level(logging.INFO, logger="roombridge"):
        client.get(f"/feeds/{ROOM}/{token}.ics")
        client.get(f"/feeds/{ROOM}/wrong-{token}.ics")
    assert f"/feeds/{ROOM}/***" in caplog.text
    assert token not in caplog.text
    assert redacted_path(f"/feeds/{ROOM}/{token}.ics") == f"/feeds/{ROOM}/***"
    assert redacted_path("/healthz") == "/healthz"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_real_uvicorn_serves_the_feed_gzip_head_and_304(config: Config, store: StateStore) -> None:
    port = free_port()
    app = RequestLog(create_app(config, store=store, clock=lambda: datetime.now(UTC)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        url = feed_url(f"http://127.0.0.1:{port}", ROOM, store.feed_token(ROOM, NOW))
        with httpx.Client(timeout=10) as http:
            plain = http.get(url, headers={"Accept-Encoding": "identity"})
            assert plain.status_code == 200 and plain.content.startswith(b"BEGIN:VCALENDAR")
            compressed = http.get(url, headers={"Accept-Encoding": "gzip"})
            assert compressed.content == plain.content
            request = http.build_request("GET", url, headers={"Accept-Encoding": "gzip"})
            raw = http.send(request, stream=True)
            wire = b"".join(raw.iter_raw())
            raw.close()
            assert raw.headers["content-encoding"] == "gzip"
            assert len(wire) < len(plain.content) and gzip.decompress(wire) == plain.content
            head = http.head(url, headers={"Accept-Encoding": "identity"})
            assert head.content == b"" and head.headers["content-length"] == str(
                len(plain.content))
            cached = http.get(url, headers={"If-None-Match": plain.headers["etag"]})
            assert cached.status_code == 304
    finally:
        server.should_exit = True
        thread.join(timeout=10)
