"""References and event ids come from the operating system's random bytes, fetched in blocks;
event ids begin with the moment they were made, so stores index them in the order they come."""

import multiprocessing
import re
import time
import uuid

from shared.events.envelope import new_event_id, new_ref


def _child_refs(queue) -> None:
    queue.put([new_ref("P") for _ in range(3)])


def test_references_and_event_ids_are_well_formed_and_never_repeat_across_blocks():
    refs = [new_ref("P") for _ in range(5000)]  # several blocks of random bytes
    assert all(re.fullmatch(r"P-[0-9a-f]{12}", ref) for ref in refs) and len(set(refs)) == len(refs)
    ids = [uuid.UUID(new_event_id()) for _ in range(2000)]
    assert {i.version for i in ids} == {7} and len(set(ids)) == len(ids)


def test_an_event_id_made_later_sorts_after_those_made_before():
    before = [new_event_id() for _ in range(500)]
    time.sleep(0.002)
    after = new_event_id()
    assert max(before) < after
    made_at_ms = uuid.UUID(after).int >> 80
    assert abs(made_at_ms - time.time() * 1000) < 1000


def test_a_forked_process_does_not_hand_out_its_parents_next_references():
    new_ref("P")  # the parent holds a block with unused bytes
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_child_refs, args=(queue,))
    child.start()
    from_child = queue.get(timeout=30)
    child.join(30)
    from_parent = [new_ref("P") for _ in range(3)]
    assert not set(from_child) & set(from_parent)
