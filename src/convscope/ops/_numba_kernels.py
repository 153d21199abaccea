"""The numba loops behind :mod:`convscope.ops.kernels` (imported only when numba is installed
and a kernel is first used; see that module for what each computes)."""
import numba
import numpy as np


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
def depthwise3x3(x, w, b, s_h, s_w, top, left, y, start, stop):
    """:func:`depthwise` for 3×3 kernels without dilation, the same sums in the same order.

    Where all nine taps fall inside the input, each output is one expression, bias first, then
    the taps in the order a = 0..2, e = 0..2, so the loop over a row's columns vectorises (nine
    loads, multiplies and adds per output and one store, where the general loop reads and
    writes the output row once per tap); the border rows and columns take the general loop."""
    n, ch, h, wd = x.shape
    h_out, w_out = y.shape[2], y.shape[3]
    # columns j whose taps j·s_w − left + e (e = 0, 1, 2) all lie in [0, wd)
    j_lo = min(w_out, max(0, (left + s_w - 1) // s_w))
    j_hi = max(j_lo, min(w_out, (wd - 3 + left) // s_w + 1)) if wd - 3 + left >= 0 else j_lo
    for plane in range(start, stop):
        i_n = plane // ch
        c = plane % ch
        w00, w01, w02 = w[c, 0, 0], w[c, 0, 1], w[c, 0, 2]
        w10, w11, w12 = w[c, 1, 0], w[c, 1, 1], w[c, 1, 2]
        w20, w21, w22 = w[c, 2, 0], w[c, 2, 1], w[c, 2, 2]
        bias = b[c]
        for i in range(h_out):
            r = i * s_h - top
            row = y[i_n, c, i]
            if r < 0 or r + 2 >= h:
                _depthwise_row(x, w, bias, i_n, c, r, s_w, left, row, 0, w_out)
                continue
            x0, x1, x2 = x[i_n, c, r], x[i_n, c, r + 1], x[i_n, c, r + 2]
            _depthwise_row(x, w, bias, i_n, c, r, s_w, left, row, 0, j_lo)
            if s_w == 1:  # unit-stride slices: the loop below vectorises
                m = j_hi - j_lo
                a0, a1, a2 = x0[j_lo - left:], x0[j_lo - left + 1:], x0[j_lo - left + 2:]
                b0, b1, b2 = x1[j_lo - left:], x1[j_lo - left + 1:], x1[j_lo - left + 2:]
                c0, c1, c2 = x2[j_lo - left:], x2[j_lo - left + 1:], x2[j_lo - left + 2:]
                dst = row[j_lo:j_hi]
                for j in range(m):
                    dst[j] = (bias + w00 * a0[j] + w01 * a1[j] + w02 * a2[j]
                              + w10 * b0[j] + w11 * b1[j] + w12 * b2[j]
                              + w20 * c0[j] + w21 * c1[j] + w22 * c2[j])
            else:
                for j in range(j_lo, j_hi):
                    q = j * s_w - left
                    dst_value = (bias + w00 * x0[q] + w01 * x0[q + 1] + w02 * x0[q + 2]
                                 + w10 * x1[q] + w11 * x1[q + 1] + w12 * x1[q + 2]
                                 + w20 * x2[q] + w21 * x2[q + 1] + w22 * x2[q + 2])
                    row[j] = dst_value
            _depthwise_row(x, w, bias, i_n, c, r, s_w, left, row, j_hi, w_out)
    return y


@numba.njit(cache=True, nogil=True, inline="always")
def _depthwise_row(x, w, bias, i_n, c, r, s_w, left, row, j_start, j_stop):
    """Outputs j_start..j_stop-1 of one 3×3 row, skipping the taps outside the input."""
    h, wd = x.shape[2], x.shape[3]
    for j in range(j_start, j_stop):
        total = bias
        for a in range(3):
            rr = r + a
            if rr < 0 or rr >= h:
                continue
            for e in range(3):
                q = j * s_w - left + e
                if 0 <= q < wd:
                    total += w[c, a, e] * x[i_n, c, rr, q]
        row[j] = total


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



@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def batch_norm_train(x, weight, bias, eps, x_hat, y, mean, var, inv_std, start, stop):
    """Channels start..stop-1 of x (N, C, S): the batch's mean and biased variance (two passes,
    float64 sums; "reassoc" lets each sum run in vector lanes), then x̂ = (x − μ)/√(σ² + ε)
    and y = γ·x̂ + β in one more pass."""
    n, ch, s = x.shape
    count = n * s
    for c in range(start, stop):
        total = 0.0
        for i in range(n):
            row = x[i, c]
            for j in range(s):
                total += row[j]
        mu = total / count
        squares = 0.0
        for i in range(n):
            row = x[i, c]
            for j in range(s):
                d = row[j] - mu
                squares += d * d
        sigma2 = squares / count
        inv = 1.0 / np.sqrt(sigma2 + eps)
        g = weight[c]
        b = bias[c]
        for i in range(n):
            row = x[i, c]
            hat = x_hat[i, c]
            out = y[i, c]
            for j in range(s):
                value = (row[j] - mu) * inv
                hat[j] = value
                out[j] = value * g + b
        mean[c] = mu
        var[c] = sigma2
        inv_std[c] = inv
    return y


@numba.njit(cache=True, nogil=True)
def windows_by_offset(xpad, cols, start, stop):
    """cols[c, a, e, n, i, j] = xpad[n, c, i + a, j + e] (stride 1, no dilation, xpad already
    padded), for the (c, a) pairs start..stop-1 of the flattened (C·k_h) axis.

    Kept this plain on purpose: each output row is a unit-step slice copied by a loop from 0,
    which numba vectorises; a general version (strides, implicit padding) measured twice as
    slow on LeNet-5's 10-value rows."""
    n, ch, hp, wp = xpad.shape
    k_h, k_w, h_out, w_out = cols.shape[1], cols.shape[2], cols.shape[4], cols.shape[5]
    for pair in range(start, stop):
        c = pair // k_h
        a = pair % k_h
        for e in range(k_w):
            for i_n in range(n):
                for i in range(h_out):
                    _copy_row(xpad[i_n, c, i + a, e:e + w_out], cols[c, a, e, i_n, i])
    return cols


@numba.njit(cache=True, nogil=True, inline="always")
def _copy_row(src, dst):
    """dst[:] = src[:] as a loop from 0 over unit-step slices, which numba vectorises (a loop
    from an offset keeps its negative-index check and stays scalar)."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@numba.njit(cache=True, nogil=True)
def windows_by_sample(xpad, cols, start, stop):
    """cols[n, c, a, e, i, j] = xpad[n, c, i + a, j + e] (im2col's layout; stride 1, no
    dilation, xpad already padded) for the samples start..stop-1. The same copies as
    :func:`windows_by_offset` in another order; one loop over a transposed view of either
    layout measured 2.4x slower on LeNet-5's conv1 (numba then cannot assume unit strides)."""
    ch, k_h, k_w, h_out, w_out = cols.shape[1], cols.shape[2], cols.shape[3], cols.shape[4], cols.shape[5]
    for i_n in range(start, stop):
        for c in range(ch):
            for a in range(k_h):
                for e in range(k_w):
                    for i in range(h_out):
                        _copy_row(xpad[i_n, c, i + a, e:e + w_out], cols[i_n, c, a, e, i])
    return cols


@numba.njit(cache=True, nogil=True)
def add_windows_by_offset(dcols, dxpad, start, stop):
    """The adjoint of :func:`windows_by_offset`: dxpad[n, c, i + a, j + e] += dcols[c, a, e, n, i, j]
    for the samples start..stop-1 (each sample's pixels are written by one thread only; every
    pixel gets its terms in the order (c, a, e) ascending, whatever the split)."""
    ch, k_h, k_w, n, h_out, w_out = dcols.shape
    for i_n in range(start, stop):
        for c in range(ch):
            for a in range(k_h):
                for e in range(k_w):
                    for i in range(h_out):
                        src = dcols[c, a, e, i_n, i]
                        dst = dxpad[i_n, c, i + a, e:e + w_out]
                        for j in range(w_out):
                            dst[j] += src[j]
    return dxpad


@numba.njit(cache=True, nogil=True)
def max_unpool(dy, index, k_w, s_h, s_w, d_h, d_w, top, left, dx, start, stop):
    """dx (N, C, H, W) of max pooling for the planes start..stop-1 of the (N·C) axis: zero,
    then each output's gradient added at the input position its window index names, outputs
    in row-major order (PyTorch's order); a position in the padding takes nothing."""
    n, ch, h, wd = dx.shape
    h_out, w_out = dy.shape[2], dy.shape[3]
    for plane in range(start, stop):
        i_n = plane // ch
        c = plane % ch
        target = dx[i_n, c]
        target[:, :] = 0
        grad = dy[i_n, c]
        arg = index[i_n, c]
        for i in range(h_out):
            for j in range(w_out):
                t = arg[i, j]
                r = i * s_h + (t // k_w) * d_h - top
                q = j * s_w + (t % k_w) * d_w - left
                if 0 <= r < h and 0 <= q < wd:
                    target[r, q] += grad[i, j]
    return dx


@numba.njit(cache=True, nogil=True, inline="always")
def _take(v, best):
    """Whether v replaces the running maximum best: greater, or NaN (PyTorch's rule). Computed
    without short-circuiting, so the loops below select instead of branching and vectorise."""
    return (v > best) | (v != v)


@numba.njit(cache=True, nogil=True)
def max_pool_2x2(x, y, index, record, start, stop):
    """2×2 max pooling with stride 2, no padding: y[n, c, i, j] = the maximum of x[n, c, 2i + a,
    2j + b] over a, b in window order (t = 2a + b), by :func:`_take`'s rule (the first maximum
    stays on ties, a NaN always wins, the last NaN stays), for the planes start..stop-1 of the
    (N·C) axis; with ``record``, index[n, c, i, j] = t of the maximum."""
    ch = x.shape[1]
    h_out, w_out = y.shape[2], y.shape[3]
    for plane in range(start, stop):
        i_n = plane // ch
        c = plane % ch
        for i in range(h_out):
            top = x[i_n, c, 2 * i]
            bottom = x[i_n, c, 2 * i + 1]
            dst = y[i_n, c, i]
            if record:
                arg = index[i_n, c, i]
                # Plain comparisons first (the loop vectorises: t is a float, as integer
                # selects beside the float ones kept it scalar, 1.1 against 0.14 ms for
                # LeNet-5's first pool), noting any NaN; a row holding one is done again by
                # the exact rule.
                nan = False
                for j in range(w_out):
                    v0, v1 = top[2 * j], top[2 * j + 1]
                    v2, v3 = bottom[2 * j], bottom[2 * j + 1]
                    best = v0
                    t = 0.0
                    take = v1 > best
                    best = v1 if take else best
                    t = 1.0 if take else t
                    take = v2 > best
                    best = v2 if take else best
                    t = 2.0 if take else t
                    take = v3 > best
                    best = v3 if take else best
                    t = 3.0 if take else t
                    dst[j] = best
                    arg[j] = t
                    nan |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3)
                if nan:
                    for j in range(w_out):
                        best = top[2 * j]
                        t = 0
                        for k in range(1, 4):
                            v = top[2 * j + k] if k < 2 else bottom[2 * j + k - 2]
                            if _take(v, best):
                                best = v
                                t = k
                        dst[j] = best
                        arg[j] = t
            else:
                for j in range(w_out):
                    best = top[2 * j]
                    v = top[2 * j + 1]
                    best = v if _take(v, best) else best
                    v = bottom[2 * j]
                    best = v if _take(v, best) else best
                    v = bottom[2 * j + 1]
                    best = v if _take(v, best) else best
                    dst[j] = best
    return y


@numba.njit(cache=True, nogil=True)
def relu_forward(x, y, active, start, stop):
    """y = max(x, 0) (NaN stays NaN) and active = not (x <= 0) (x > 0 or NaN: PyTorch passes
    a NaN's gradient) over x[start:stop] of the flat x, y and active (the mask as int8), in
    one pass where NumPy makes three."""
    zero = y.dtype.type(0)
    # Slices first: indices from 0 let the loop vectorise (from start, numba keeps its
    # negative-index check and the loop runs 7× slower).
    src, dst, mask = x[start:stop], y[start:stop], active[start:stop]
    for i in range(src.shape[0]):
        v = src[i]
        keep = not (v <= 0)
        dst[i] = v if keep else zero
        mask[i] = keep
    return y


@numba.njit(cache=True, nogil=True)
def select_bits(dy, active, dx, start, stop):
    """dx = dy where active else +0, on the flat bits of dy and dx (integers as wide as the
    floats) and the flat int8 mask: exact for inf and NaN (no multiply), one pass."""
    src, mask, dst = dy[start:stop], active[start:stop], dx[start:stop]   # indices from 0: see relu_forward
    for i in range(src.shape[0]):
        dst[i] = src[i] & -dst.dtype.type(mask[i])
    return dx
