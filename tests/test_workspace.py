"""The work-buffer pool reuses buffers and never keeps more than MAX_BYTES alive."""
import numpy as np

from convscope.ops import workspace as ws


def test_same_name_shape_dtype_is_reused():
    ws.clear()
    a = ws.workspace("t.a", (3, 4), np.float32)
    assert ws.workspace("t.a", (3, 4), np.float32) is a
    assert ws.workspace("t.a", (3, 4), np.float64) is not a   # another dtype is another buffer
    assert ws.workspace("t.b", (3, 4), np.float32) is not a   # another name too


def test_pool_is_capped_and_evicts_least_recently_used(monkeypatch):
    ws.clear()
    monkeypatch.setattr(ws, "MAX_BYTES", 1000)
    first = ws.workspace("t.first", (100,), np.float32)       # 400 bytes
    ws.workspace("t.second", (100,), np.float32)              # 800 bytes kept
    ws.workspace("t.first", (100,), np.float32)               # touch: second is now oldest
    ws.workspace("t.third", (100,), np.float32)               # 1,200 > 1,000: evict second
    assert ws.pooled_bytes() == 800
    assert ws.workspace("t.first", (100,), np.float32) is first
    big = ws.workspace("t.big", (1000,), np.float32)          # 4,000 bytes: handed out, not kept
    assert big.shape == (1000,) and ws.pooled_bytes() == 800
    ws.clear()
    assert ws.pooled_bytes() == 0
