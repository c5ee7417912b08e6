/* The kernels of _sparse64.h, written once for every level: _sparse64.c includes this
 * file once per level after defining
 *
 *   NAME(f)                 the level's name for f
 *   VEC, LANES              a vector of LANES doubles (LANES divides NR_SPARSE_PANEL)
 *   V_PAIR, V_ONE, V_UPDATE vectors per pass: forward on two rows, on one, update
 *   vzero(), vload(p), vstore(p, v), vbroadcast(p), vadd(a, b)
 *   vfma(a, b, c)           a * b + c with one rounding
 *   vload_part(p, r), vstore_part(p, v, r)   the first r < LANES lanes (others read as 0)
 *
 * - forward: for each pair of rows, the columns where either row is nonzero are listed
 *   (branch-free), then each listed column adds its weights, scaled by the two entries,
 *   to V_PAIR accumulators per row; the two rows share each load of weights.  A column
 *   where only one row is nonzero adds an exact zero to the other's sums, which leaves
 *   them as they were (they start at +0.0 and never become -0.0).
 * - update: for each block of up to 32 rows, a 32-bit mask per column marks the rows
 *   where it is nonzero; each such column sums x[i, p] g[i, :] over its rows into
 *   V_UPDATE accumulators and adds alpha times the sum to its row of the panels.
 */

/* Vector of units j .. j + LANES - 1 (j a multiple of LANES) of input p in the panels. */
#define PANEL_VECTOR(wt, stride, j, p) \
    ((wt) + (size_t)((j) / NR_SPARSE_PANEL) * (stride) + (size_t)NR_SPARSE_PANEL * (p) \
     + (j) % NR_SPARSE_PANEL)

/* Columns p < k where x[p], or y[p] unless y is NULL, is not +0.0; idx has room for k. */
static inline int NAME(nonzero_columns)(const double *x, const double *y, int k, int *idx)
{
    int count = 0;
    for (int p = 0; p < k; p++) {
        idx[count] = p;
        count += (nr_bits64(x[p]) | (y ? nr_bits64(y[p]) : 0)) != 0;
    }
    return count;
}

/* Units j .. j + V LANES of one row (zx) or two (zx, zy) over the listed columns; the
 * last vector holds `last` units (LANES when full). */
static inline __attribute__((always_inline)) void
NAME(forward_tile)(int ROWS, int V, int last, const double *x, const double *y,
                   const int *idx, int count, const double *wt, size_t stride, int j,
                   const double *b, double *zx, double *zy)
{
    VEC ax[16], ay[16];
    for (int v = 0; v < V; v++)
        ax[v] = ay[v] = vzero();
    for (int t = 0; t < count; t++) {
        int p = idx[t];
        VEC xv = vbroadcast(x + p);
        VEC yv = ROWS == 2 ? vbroadcast(y + p) : xv;
        for (int v = 0; v < V; v++) {  /* panels are padded: the last vector reads zeros */
            VEC wv = vload(PANEL_VECTOR(wt, stride, j + v * LANES, p));
            ax[v] = vfma(xv, wv, ax[v]);
            if (ROWS == 2)
                ay[v] = vfma(yv, wv, ay[v]);
        }
    }
    for (int v = 0; v < V; v++) {
        int u = j + v * LANES;
        int full = v < V - 1 || last == LANES;
        VEC bias = !b ? vzero() : full ? vload(b + u) : vload_part(b + u, last);
        for (int r = 0; r < ROWS; r++) {
            VEC out = vadd(r ? ay[v] : ax[v], bias);
            double *z = (r ? zy : zx) + u;
            if (full)
                vstore(z, out);
            else
                vstore_part(z, out, last);
        }
    }
}

#define NR_FORWARD_REST(V) \
    if ((V) <= VMAX) NAME(forward_tile)(ROWS, (V) <= VMAX ? (V) : 1, last, x, y, idx, count, \
                                        wt, stride, j, b, zx, zy)

/* Units 0 .. n - 1 of one or two rows, VMAX vectors per pass, then the rest. */
static inline __attribute__((always_inline)) void
NAME(forward_units)(int ROWS, int VMAX, int n, const double *x, const double *y,
                    const int *idx, int count, const double *wt, size_t stride,
                    const double *b, double *zx, double *zy)
{
    int j = 0;
    for (; j + VMAX * LANES <= n; j += VMAX * LANES)
        NAME(forward_tile)(ROWS, VMAX, LANES, x, y, idx, count, wt, stride, j, b, zx, zy);
    if (j == n)
        return;
    int vectors = (n - j + LANES - 1) / LANES, last = n - j - (vectors - 1) * LANES;
    switch (vectors) {
    case 1: NR_FORWARD_REST(1); break;
    case 2: NR_FORWARD_REST(2); break;
    case 3: NR_FORWARD_REST(3); break;
    case 4: NR_FORWARD_REST(4); break;
    case 5: NR_FORWARD_REST(5); break;
    case 6: NR_FORWARD_REST(6); break;
    case 7: NR_FORWARD_REST(7); break;
    case 8: NR_FORWARD_REST(8); break;
    case 9: NR_FORWARD_REST(9); break;
    case 10: NR_FORWARD_REST(10); break;
    case 11: NR_FORWARD_REST(11); break;
    case 12: NR_FORWARD_REST(12); break;
    case 13: NR_FORWARD_REST(13); break;
    case 14: NR_FORWARD_REST(14); break;
    case 15: NR_FORWARD_REST(15); break;
    default: NR_FORWARD_REST(16); break;
    }
}

void NAME(nr_sparse_forward_f64)(int m, int n, int k, const double *x, int ldx,
                                 const double *wt, const double *b, double *z, int ldz)
{
    int idx[NR_SPARSE_MAX_INPUTS];
    size_t stride = (size_t)NR_SPARSE_PANEL * k;
    int i = 0;
    for (; i + 2 <= m; i += 2) {
        const double *xr = x + (size_t)i * ldx, *yr = xr + ldx;
        double *zr = z + (size_t)i * ldz;
        int count = NAME(nonzero_columns)(xr, yr, k, idx);
        NAME(forward_units)(2, V_PAIR, n, xr, yr, idx, count, wt, stride, b, zr, zr + ldz);
    }
    if (i < m) {
        const double *xr = x + (size_t)i * ldx;
        double *zr = z + (size_t)i * ldz;
        int count = NAME(nonzero_columns)(xr, NULL, k, idx);
        NAME(forward_units)(1, V_ONE, n, xr, NULL, idx, count, wt, stride, b, zr, NULL);
    }
}

/* rows_of[p]: bit i set if x[i, p] is not +0.0, for p < k, i < m <= 32. */
static inline void NAME(column_rows)(int m, int k, const double *x, int ldx, uint32_t *rows_of)
{
    for (int p = 0; p < k; p++)
        rows_of[p] = 0;
    for (int i = 0; i < m; i++) {
        const double *row = x + (size_t)i * ldx;
        for (int p = 0; p < k; p++)
            rows_of[p] |= (uint32_t)(nr_bits64(row[p]) != 0) << i;
    }
}

/* W^T[p, j .. j + V LANES) += alpha * sum_{i in rows} x[i, p] * g[i, j ..]; the last
 * vector holds `last` units. */
static inline __attribute__((always_inline)) void
NAME(update_tile)(int V, int last, uint32_t rows, const double *x, int ldx, int p,
                  const double *g, int ldg, VEC alpha, double *wt, size_t stride, int j)
{
    VEC acc[16];
    for (int v = 0; v < V; v++)
        acc[v] = vzero();
    while (rows) {
        int i = nr_lowest_bit(rows);
        rows &= rows - 1;
        VEC xv = vbroadcast(x + (size_t)i * ldx + p);
        const double *gr = g + (size_t)i * ldg + j;
        for (int v = 0; v < V; v++) {
            VEC gv = v < V - 1 || last == LANES ? vload(gr + v * LANES)
                                                : vload_part(gr + v * LANES, last);
            acc[v] = vfma(xv, gv, acc[v]);
        }
    }
    for (int v = 0; v < V; v++) {
        double *w = (double *)PANEL_VECTOR(wt, stride, j + v * LANES, p);
        if (v < V - 1 || last == LANES)
            vstore(w, vfma(alpha, acc[v], vload(w)));
        else
            vstore_part(w, vfma(alpha, acc[v], vload_part(w, last)), last);
    }
}

#define NR_UPDATE_REST(V) \
    if ((V) <= V_UPDATE) NAME(update_tile)((V) <= V_UPDATE ? (V) : 1, last, rows, x, ldx, p, \
                                           g, ldg, a, wt, stride, j)

void NAME(nr_sparse_update_f64)(int m, int n, int k, double alpha, const double *g, int ldg,
                                const double *x, int ldx, double *wt)
{
    uint32_t rows_of[NR_SPARSE_MAX_INPUTS];
    size_t stride = (size_t)NR_SPARSE_PANEL * k;
    VEC a = vbroadcast(&alpha);
    int tiled = n / (V_UPDATE * LANES) * (V_UPDATE * LANES);
    int vectors = (n - tiled + LANES - 1) / LANES, last = n - tiled - (vectors - 1) * LANES;
    for (int i0 = 0; i0 < m; i0 += 32, x += (size_t)32 * ldx, g += (size_t)32 * ldg) {
        NAME(column_rows)(m - i0 < 32 ? m - i0 : 32, k, x, ldx, rows_of);
        for (int p = 0; p < k; p++) {
            uint32_t rows = rows_of[p];
            if (!rows)
                continue;
            int j = 0;
            for (; j < tiled; j += V_UPDATE * LANES)
                NAME(update_tile)(V_UPDATE, LANES, rows, x, ldx, p, g, ldg, a, wt, stride, j);
            switch (j < n ? vectors : 0) {
            case 0: break;
            case 1: NR_UPDATE_REST(1); break;
            case 2: NR_UPDATE_REST(2); break;
            case 3: NR_UPDATE_REST(3); break;
            case 4: NR_UPDATE_REST(4); break;
            case 5: NR_UPDATE_REST(5); break;
            case 6: NR_UPDATE_REST(6); break;
            case 7: NR_UPDATE_REST(7); break;
            default: NR_UPDATE_REST(8); break;
            }
        }
    }
}

#undef NR_FORWARD_REST
#undef NR_UPDATE_REST
#undef PANEL_VECTOR

/* The including file's parameters, so that the next level can define its own. */
#undef NAME
#undef VEC
#undef LANES
#undef V_PAIR
#undef V_ONE
#undef V_UPDATE
#undef vzero
#undef vload
#undef vstore
#undef vbroadcast
#undef vadd
#undef vfma
#undef vload_part
#undef vstore_part
