"""A Workspace reuses buffers; the Budget its model's layers share never keeps more than its cap.

(Rewritten for issue 11 item 6: the buffers moved from one pool per process to one
Workspace per layer, so these tests address a Workspace instead of module functions.)
"""
import numpy as np

from convscope.ops.workspace import Budget, Workspace, fresh_copy, scratch


def test_same_name_shape_dtype_is_reused():
    ws = Workspace()
    a = ws.get("t.a", (3, 4), np.float32)
    assert ws.get("t.a", (3, 4), np.float32) is a
    assert ws.get("t.a", (3, 4), np.float64) is not a   # another dtype is another buffer
    assert ws.get("t.b", (3, 4), np.float32) is not a   # another name too
    assert Workspace().get("t.a", (3, 4), np.float32) is not a   # another owner too


def test_budget_is_capped_and_evicts_least_recently_used_across_workspaces():
    budget = Budget(max_bytes=1000)
    one, two = Workspace(budget), Workspace(budget)
    first = one.get("t.first", (100,), np.float32)      # 400 bytes
    two.get("t.second", (100,), np.float32)             # 800 bytes kept
    one.get("t.first", (100,), np.float32)              # touch: second is now oldest
    one.get("t.third", (100,), np.float32)              # 1,200 > 1,000: evict second (in the other workspace)
    assert budget.bytes == 800 and two.kept_bytes() == 0
    assert one.get("t.first", (100,), np.float32) is first
    big = two.get("t.big", (1000,), np.float32)         # 4,000 bytes: handed out, not kept
    assert big.shape == (1000,) and budget.bytes == 800
    one.clear()
    assert budget.bytes == 0


def test_without_a_workspace_scratch_is_fresh_and_fresh_copy_never_aliases():
    assert scratch(None, "t", (2, 3), np.float64) is not scratch(None, "t", (2, 3), np.float64)
    base = np.arange(12.0).reshape(1, 1, 4, 3)
    crop = base[:, :, 1:3]                               # contiguous: ascontiguousarray returns it as is
    assert np.shares_memory(np.ascontiguousarray(crop), base)
    copy = fresh_copy(crop)
    assert not np.shares_memory(copy, base) and copy.flags.c_contiguous
    np.testing.assert_array_equal(copy, [[[[3, 4, 5], [6, 7, 8]]]])


def test_transient_buffers_are_one_per_name_for_the_whole_budget():
    # Two layers' workspaces under one budget share a transient buffer: its size is the
    # largest request (4 × 5 = 20 values), not the sum of both layers' (20 + 6).
    from convscope.ops.workspace import Budget, transient
    budget = Budget()
    a, b = Workspace(budget), Workspace(budget)
    small = transient(a, "t", (2, 3), np.float32)
    big = transient(b, "t", (4, 5), np.float32)
    again = transient(a, "t", (2, 3), np.float32)
    assert small.shape == again.shape == (2, 3) and big.shape == (4, 5)
    assert np.shares_memory(big, again)
    assert [f.size for f in budget._transient.values()] == [20]
    assert a.transient_view() is b.transient_view()
    assert np.shares_memory(a.transient_view().get("t", (5,), np.float32), big)
    assert a.kept_bytes() == b.kept_bytes() == 0
    fresh = transient(None, "t", (2, 3), np.float32)
    assert not np.shares_memory(fresh, big)
