"""The three-way planner's rules, one test per rule."""

from __future__ import annotations

from bridge.sync.planner import (
    Create,
    Delete,
    Desired,
    Forget,
    Link,
    Reason,
    Record,
    Seen,
    Update,
    plan_room_sync,
)


def want(uid: str, digest: str = "h1") -> Desired:
    return Desired(uid, f"nexudus/{uid}", f"ics-{uid}-{digest}".encode(), digest)


def seen(uid: str, digest: str = "h1", etag: str = "e1", owned: bool = True) -> Seen:
    return Seen(f"/cal/{uid}.ics", uid, etag, digest, owned)


def link(uid: str, digest: str = "h1", etag: str = "e1") -> Link:
    return Link(uid, f"nexudus/{uid}", f"/cal/{uid}.ics", etag, digest)


def plan(desired=(), current=(), links=(), max_deletions=50, force=False):
    return plan_room_sync(desired, current, links, max_deletions=max_deletions, force=force)


def test_new_booking_is_created():
    result = plan([want("a")])
    assert result.actions == (Create(want("a"), Reason.NEW),)


def test_in_sync_room_plans_nothing():
    assert plan([want("a")], [seen("a")], [link("a")]).actions == ()


def test_provider_change_updates_with_the_seen_etag():
    result = plan([want("a", "h2")], [seen("a", etag="e7")], [link("a", etag="e7")])
    assert result.actions == (Update(want("a", "h2"), "/cal/a.ics", "e7", Reason.CHANGED),)


def test_third_party_edit_is_reverted():
    result = plan([want("a")], [seen("a", "edited", etag="e2")], [link("a")])
    assert result.actions == (Update(want("a"), "/cal/a.ics", "e2", Reason.REVERT),)


def test_third_party_deletion_is_recreated():
    result = plan([want("a")], [], [link("a")])
    assert result.actions == (Create(want("a"), Reason.RECREATE),)


def test_object_written_before_a_crash_is_adopted_not_duplicated():
    result = plan([want("a")], [seen("a", etag="e9")], [])
    assert result.actions == (Record(want("a"), "/cal/a.ics", "e9", Reason.ADOPT),)


def test_stale_object_written_before_a_crash_is_updated_in_place():
    result = plan([want("a", "h2")], [seen("a", "h1", etag="e9")], [])
    assert result.actions == (Update(want("a", "h2"), "/cal/a.ics", "e9", Reason.ADOPT),)


def test_echo_of_our_own_write_with_a_new_etag_only_refreshes_the_link():
    result = plan([want("a")], [seen("a", etag="e2")], [link("a", etag="e1")])
    assert result.actions == (Record(want("a"), "/cal/a.ics", "e2", Reason.ADOPT),)


def test_gone_booking_is_deleted_with_its_etag():
    result = plan([], [seen("a", etag="e3")], [link("a")])
    assert result.actions == (Delete("a", "/cal/a.ics", "e3", Reason.GONE),)


def test_gone_booking_already_deleted_is_forgotten():
    assert plan([], [], [link("a")]).actions == (Forget("a"),)


def test_stray_bridge_object_is_deleted_but_foreign_objects_are_left_alone():
    result = plan([], [seen("a"), seen("x", owned=False)], [])
    assert result.actions == (Delete("a", "/cal/a.ics", "e1", Reason.STRAY),)


def test_mass_deletion_is_withheld_unless_forced():
    links = [link(str(i)) for i in range(5)]
    current = [seen(str(i)) for i in range(5)]
    held = plan([], current, links, max_deletions=3)
    assert held.actions == ()
    assert held.withheld_deletions == 5
    assert "max_deletions" in held.notes[0]
    forced = plan([], current, links, max_deletions=3, force=True)
    assert forced.count(Delete) == 5


def test_withheld_deletions_do_not_block_creates_and_updates():
    links = [link(str(i)) for i in range(5)]
    current = [seen(str(i)) for i in range(5)]
    held = plan([want("new")], current, links, max_deletions=3)
    assert held.actions == (Create(want("new"), Reason.NEW),)


def test_duplicate_uid_on_server_uses_one_href_deterministically():
    twin = Seen("/cal/zz-copy.ics", "a", "e5", "h1", True)
    result = plan([want("a")], [twin, seen("a")], [link("a")])
    assert result.actions == ()
