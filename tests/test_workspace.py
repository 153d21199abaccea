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


def _arena_span(budget):
    base = budget._arena.__array_interface__["data"][0]
    return base, base + budget._arena.nbytes


def _inside(array, span):
    start = array.__array_interface__["data"][0]
    return span[0] <= start and start + array.nbytes <= span[1]


def test_transients_inside_scopes_are_a_stack_on_one_arena():
    # Inside scopes, transients are regions of one arena used as a stack: a region lives until
    # its scope ends, a nested scope's regions never overlap the live ones, and after the
    # first pass the arena is as large as the deepest stack (here 720 bytes: 400, then 200
    # and 16 each starting on a 64-byte boundary), not the sum of every name's largest request.
    from convscope.ops.workspace import Budget, transient, transient_scope
    budget = Budget()
    ws = Workspace(budget)

    def one_call():
        with transient_scope(ws):
            outer = transient(ws, "t.outer", (100,), np.float32)          # bytes 0..400
            assert np.shares_memory(transient(ws, "t.outer", (50,), np.float32), outer)  # same name, same region
            with transient_scope(ws):
                inner = transient(ws, "t.inner", (50,), np.float32)       # bytes 448..648
                other = transient(ws, "t.other", (4,), np.float32)        # bytes 704..720
                assert not np.shares_memory(inner, outer) and not np.shares_memory(other, inner)
            again = transient(ws, "t.again", (50,), np.float32)           # the inner scope's bytes again
            return outer, again

    one_call()                              # first pass: no arena yet, every region an array of its own
    assert budget.arena_bytes() == 0 and budget._high == 720
    outer, again = one_call()               # the arena now holds the deepest stack
    assert budget.arena_bytes() == 720
    span = _arena_span(budget)
    assert _inside(outer, span) and _inside(again, span)
    assert again.__array_interface__["data"][0] - span[0] == 448
    assert budget._top == 0 and not budget._scopes   # every scope closed
    # Outside any scope the old rule holds: one kept buffer per name.
    assert not _inside(transient(ws, "t.outer", (10,), np.float32), span)


def test_a_layer_call_frees_its_transients_and_winograd_keeps_only_its_input():
    # Winograd's training cache holds x (a reference), not its 4×-larger transform V; backward
    # recomputes V. Every transient of a layer call lives in the arena and is freed at its end.
    import convscope as cs
    from convscope.ops.conv import using_path
    layer = cs.layers.Conv2d(32, 3, padding=1).build((16, 12, 12), seed=0)
    x = np.random.default_rng(0).standard_normal((4, 16, 12, 12)).astype(np.float32)
    with using_path("winograd"):
        layer.forward(x, train=True)
        cache = layer._cache.data
        assert cache["x"] is x and "v" not in cache
        dx = layer.backward(np.ones((4, 32, 12, 12), np.float32))
    budget = layer.workspace.budget
    assert budget._top == 0 and not budget._scopes and not budget._transient
    with using_path("reference"):
        layer.forward(x, train=True)
        ref = layer.backward(np.ones((4, 32, 12, 12), np.float32))
    np.testing.assert_allclose(dx, ref, rtol=1e-4, atol=1e-4)
