"""The numba loops behind :mod:`convscope.ops.kernels` (imported only when numba is installed
and a kernel is first used; see that module for what each computes)."""
import numba


@numba.njit(cache=True, nogil=True)   # cache: later processes load the machine code
def depthwise(x, w, b, s_h, s_w, d_h, d_w, top, left, y, start, stop):
    """Planes start..stop-1 of the flattened (N·C) axis of y."""
    # y[n, c, i, j] = b[c] + Σ_{a,e} w[c, a, e]·x[n, c, i·s_h + a·d_h − top, j·s_w + e·d_w − left]
    n, ch, h, wd = x.shape
    k_h, k_w = w.shape[1], w.shape[2]
    h_out, w_out = y.shape[2], y.shape[3]
    for plane in range(start, stop):
        i_n = plane // ch
        c = plane % ch
        for i in range(h_out):
            row = y[i_n, c, i]
            row[:] = b[c]
            for a in range(k_h):
                r = i * s_h + a * d_h - top
                if r < 0 or r >= h:
                    continue
                for e in range(k_w):
                    off = e * d_w - left
                    # the columns j with 0 <= j·s_w + off < wd
                    j0 = 0 if off >= 0 else (s_w - 1 - off) // s_w
                    j1 = min(w_out, (wd - off + s_w - 1) // s_w) if wd > off else 0
                    if j1 <= j0:
                        continue
                    wv = w[c, a, e]
                    # Slices, so the inner loop has non-negative indices; a unit-step slice
                    # keeps the contiguous layout, which lets the loop vectorise.
                    dst = row[j0:j1]
                    if s_w == 1:
                        src = x[i_n, c, r, j0 + off:j1 + off]
                        for j in range(j1 - j0):
                            dst[j] += wv * src[j]
                    else:
                        src_s = x[i_n, c, r, j0 * s_w + off:(j1 - 1) * s_w + off + 1:s_w]
                        for j in range(j1 - j0):
                            dst[j] += wv * src_s[j]
    return y



@numba.njit(cache=True, nogil=True)
def channel_affine(x, scale, shift, y):
    """y[n, c, ...] = x[n, c, ...]·scale[c] + shift[c] on the (N·C, plane) views x and y:
    one read and one write per value."""
    ch = scale.shape[0]
    for plane in range(x.shape[0]):
        a = scale[plane % ch]
        b = shift[plane % ch]
        src = x[plane]
        dst = y[plane]
        for j in range(src.shape[0]):
            dst[j] = src[j] * a + b
    return y

