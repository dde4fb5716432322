/*
 * mdtrace._skimc: the C twin of mdtrace.skim.scan_py (same arguments, same result, line for
 * line; tests/test_skim.py checks them against each other).  Read mdtrace/skim.py for what
 * is skimmed and why that is exact; this file only makes the byte scan fast.
 *
 *   scan(templates: dict[bytes, bytes], block: bytes, now: int, last_tick: int,
 *        tick_ns: int) -> (out: bytes, ops: list, skimmed: int, now: int, last_tick: int,
 *                          blind: bool)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef struct {
    const char *name;       /* points into the block */
    Py_ssize_t len;
    long long n_enter, n_exit, last, max, first_exit;
    PyObject *obs;          /* list of (ts, curr_resync, reshape_pos) moves, or NULL */
} Pending;

typedef struct {
    Pending *v;
    Py_ssize_t n, cap;
    long long max;          /* largest ts pending (-1: none) */
    long long fed_now;      /* the engine clock as fed so far */
} PendSet;

static const char ENTER[] = "check_recovery_enter";
static const char EXIT_[] = "check_recovery_exit";

static int
is_cr(const char *k, Py_ssize_t n)
{
    return (n == (Py_ssize_t)sizeof(ENTER) - 1 && memcmp(k, ENTER, n) == 0) ? 1 :
           (n == (Py_ssize_t)sizeof(EXIT_) - 1 && memcmp(k, EXIT_, n) == 0) ? 2 : 0;
}

/* Append pending run p as a Repeat tuple to ops. */
static int
emit(PendSet *ps, Pending *p, PyObject *ops)
{
    PyObject *name = PyUnicode_DecodeASCII(p->name, p->len, NULL);
    if (name == NULL)
        return -1;
    PyObject *obs = p->obs ? p->obs : Py_None;
    Py_INCREF(obs);
    PyObject *t = Py_BuildValue("(NLLLLLN)", name, p->n_enter, p->n_exit, p->last, p->max,
                                p->first_exit, obs);
    Py_CLEAR(p->obs);
    if (t == NULL)
        return -1;
    int rc = PyList_Append(ops, t);
    Py_DECREF(t);
    if (rc < 0)
        return -1;
    if (p->max > ps->fed_now)
        ps->fed_now = p->max;
    return 0;
}

static int
flush_one(PendSet *ps, Py_ssize_t i, PyObject *ops)
{
    if (emit(ps, &ps->v[i], ops) < 0)
        return -1;
    /* keep insertion order, as the Python twin's dict does */
    memmove(&ps->v[i], &ps->v[i + 1], (ps->n - i - 1) * sizeof(Pending));
    ps->n--;
    return 0;
}

static int
flush_all(PendSet *ps, PyObject *ops)
{
    for (Py_ssize_t i = 0; i < ps->n; i++)
        if (emit(ps, &ps->v[i], ops) < 0)
            return -1;
    ps->n = 0;
    ps->max = -1;
    return 0;
}

static void
free_pending(PendSet *ps)
{
    for (Py_ssize_t i = 0; i < ps->n; i++)
        Py_CLEAR(ps->v[i].obs);
    PyMem_Free(ps->v);
}

static Py_ssize_t
find_pending(PendSet *ps, const char *name, Py_ssize_t len)
{
    for (Py_ssize_t i = 0; i < ps->n; i++)
        if (ps->v[i].len == len && memcmp(ps->v[i].name, name, len) == 0)
            return i;
    return -1;
}

/* First '"a":' in [h, h+n): by its ':' (vectorised memchr; glibc's memmem is slow here). */
static const char *
find_akey(const char *h, Py_ssize_t n)
{
    const char *end = h + n, *c = h + 3;
    while (c < end && (c = memchr(c, ':', end - c)) != NULL) {
        if (c[-3] == '"' && c[-2] == 'a' && c[-1] == '"')
            return c - 3;
        c++;
    }
    return NULL;
}

/* First '"s":{' in [h, h+n), by its '{' (rare in a line). */
static const char *
find_state(const char *h, Py_ssize_t n)
{
    const char *end = h + n, *c = h + 4;
    while (c < end && (c = memchr(c, '{', end - c)) != NULL) {
        if (c[-4] == '"' && c[-3] == 's' && c[-2] == '"' && c[-1] == ':')
            return c - 4;
        c++;
    }
    return NULL;
}

/* The curr_resync / reshape_pos values in a line's state object (mdtrace.skim._positions). */
typedef struct {
    int n;                      /* value spans found, in order */
    Py_ssize_t s[2], e[2];      /* offsets into the rest */
    long long cr, rp;           /* absent: 0 / -1 */
} Pos;

static int
positions(const char *r, Py_ssize_t n, Pos *p)
{
    const char *st = find_state(r, n);
    if (st == NULL)
        return 0;
    const char *e = memchr(st, '}', (r + n) - st);
    if (e == NULL)
        return 0;
    /* one pass for both keys; a key seen twice: not skimmable (which one would count?) */
    const char *k[2] = {NULL, NULL};
    for (const char *c = st; c + 5 <= e; c++) {
        if (c[0] != '"' || c[3] != '"' || c[4] != ':')
            continue;
        int i = (c[1] == 'c' && c[2] == 'r') ? 0 : (c[1] == 'r' && c[2] == 'p') ? 1 : -1;
        if (i < 0)
            continue;
        if (k[i] != NULL)
            return 0;
        k[i] = c;
    }
    p->cr = 0;
    p->rp = -1;
    p->n = 0;
    for (int j = 0; j < 2; j++) {
        /* in order of appearance */
        int i = (k[0] && k[1]) ? ((k[0] < k[1]) ? j : 1 - j) : j;
        if (k[i] == NULL)
            continue;
        const char *vs = k[i] + 5, *ve = vs;
        long long v = 0;
        while (ve < e && *ve >= '0' && *ve <= '9' && ve - vs < 19)
            v = v * 10 + (*ve++ - '0');
        if (ve == vs || ve - vs > 18 || (*ve != ',' && *ve != '}'))
            return 0;
        p->s[p->n] = vs - r;
        p->e[p->n] = ve - r;
        p->n++;
        if (i == 0)
            p->cr = v;
        else
            p->rp = v;
    }
    return 1;
}

/* 1 with *out set if rest equals tmpl but for the position values (mdtrace.skim._variant). */
static int
variant_pos(const char *t, Py_ssize_t tn, const Pos *ta, const char *r, Py_ssize_t rn,
            Pos *out)
{
    Pos a = *ta, b;
    if (!positions(r, rn, &b) || a.n != b.n)
        return 0;
    Py_ssize_t ia = 0, ib = 0;
    for (int i = 0; i < a.n; i++) {
        if (a.s[i] - ia != b.s[i] - ib || memcmp(t + ia, r + ib, a.s[i] - ia) != 0)
            return 0;
        ia = a.e[i];
        ib = b.e[i];
    }
    if (tn - ia != rn - ib || memcmp(t + ia, r + ib, tn - ia) != 0)
        return 0;
    *out = b;
    return 1;
}

static int
variant(const char *t, Py_ssize_t tn, const char *r, Py_ssize_t rn, Pos *out)
{
    Pos a;
    return positions(t, tn, &a) && variant_pos(t, tn, &a, r, rn, out);
}

/* Template positions computed in this call, by template object (held, so no address reuse). */
#define NTPOS 64
typedef struct {
    PyObject *t[NTPOS];
    Pos pos[NTPOS];
    int ok[NTPOS];
    int n;
} TposCache;

static int
template_pos(TposCache *tc, PyObject *tb, Pos *out)
{
    for (int i = 0; i < tc->n; i++)
        if (tc->t[i] == tb) {
            *out = tc->pos[i];
            return tc->ok[i];
        }
    int ok = positions(PyBytes_AS_STRING(tb), PyBytes_GET_SIZE(tb), out);
    if (tc->n < NTPOS) {
        Py_INCREF(tb);
        tc->t[tc->n] = tb;
        tc->pos[tc->n] = *out;
        tc->ok[tc->n] = ok;
        tc->n++;
    }
    return ok;
}

static void
free_tpos(TposCache *tc)
{
    for (int i = 0; i < tc->n; i++)
        Py_DECREF(tc->t[i]);
    tc->n = 0;
}

static const char *const KEEP[] = {
    "progress", "lock", "io_stats", "io_wait", "sync_action", "sysfs_state", "raid_target",
    "dm_suspend_enter", "dm_suspend_exit", "dm_resume_enter", "dm_resume_exit",
    "mddev_suspend", "mddev_resume", "wait_begin", "wait_end", "start_reshape",
    "thread_unregister", NULL,
};

/* mdtrace.skim._KEEP */
static int
is_keep(const char *k, Py_ssize_t n)
{
    for (int i = 0; KEEP[i] != NULL; i++)
        if ((Py_ssize_t)strlen(KEEP[i]) == n && memcmp(KEEP[i], k, n) == 0)
            return 1;
    return 0;
}

/* mdtrace.skim._field: 1 with the value span (empty if the key is absent), 0 if unterminated */
static int
field(const char *h, Py_ssize_t n, const char *key, const char **v, Py_ssize_t *vn)
{
    Py_ssize_t kn = (Py_ssize_t)strlen(key);
    for (const char *c = h; c + kn <= h + n; c++)
        if (*c == key[0] && memcmp(c, key, kn) == 0) {
            const char *vs = c + kn;
            const char *ve = memchr(vs, '"', (h + n) - vs);
            if (ve == NULL)
                return 0;
            *v = vs;
            *vn = ve - vs;
            return 1;
        }
    *v = h;
    *vn = 0;
    return 1;
}

static int
span_eq(const char *a, Py_ssize_t an, const char *b, Py_ssize_t bn)
{
    return an == bn && memcmp(a, b, an) == 0;
}

static int variant(const char *t, Py_ssize_t tn, const char *r, Py_ssize_t rn, Pos *out);

/* mdtrace.skim._aside: 0 drop (None), 1 keep without a state (_NO_STATE), 2 keep with the
 * line's position in *cr / *rp. */
static int
aside(const char *t, Py_ssize_t tn, const char *r, Py_ssize_t rn, long long *cr,
      long long *rp)
{
    const char *ts = find_state(t, tn);
    const char *rs = find_state(r, rn);
    Py_ssize_t hn = rs == NULL ? rn : rs - r;
    Py_ssize_t thn = ts == NULL ? tn : ts - t;     /* templates always have a state */
    if (memchr(r, '\\', hn) != NULL || memchr(t, '\\', thn) != NULL)
        return 0;
    const char *ldn, *lmd, *tdn, *tmd;
    Py_ssize_t ldnn, lmdn, tdnn, tmdn;
    if (!field(r, hn, ",\"dn\":\"", &ldn, &ldnn) || !field(r, hn, ",\"md\":\"", &lmd, &lmdn) ||
        !field(t, thn, ",\"dn\":\"", &tdn, &tdnn) || !field(t, thn, ",\"md\":\"", &tmd, &tmdn))
        return 0;
    if ((ldnn && tdnn && !span_eq(ldn, ldnn, tdn, tdnn)) ||
        (lmdn && !span_eq(lmd, lmdn, tmd, tmdn)))
        return 0;
    if (rs == NULL)
        return 1;
    if (ts == NULL)
        return 0;
    const char *te = memchr(ts, '}', (t + tn) - ts);
    const char *re = memchr(rs, '}', (r + rn) - rs);
    if (te == NULL || re == NULL)
        return 0;
    Pos q;
    if (!variant(ts, te + 1 - ts, rs, re + 1 - rs, &q))
        return 0;
    *cr = q.cr;
    *rp = q.rp;
    return 2;
}

static long long
item_ll(PyObject *list, Py_ssize_t i)
{
    return PyLong_AsLongLong(PyList_GET_ITEM(list, i));
}

static int
set_ll(PyObject *list, Py_ssize_t i, long long v)
{
    PyObject *o = PyLong_FromLongLong(v);
    if (o == NULL)
        return -1;
    return PyList_SetItem(list, i, o);     /* steals o, drops the old value */
}

/* Parse a line in the writer's shape.  Returns 1 with the fields set, 0 if not in shape. */
static int
parse(const char *s, Py_ssize_t n, long long *ts, const char **kind, Py_ssize_t *klen,
      const char **name, Py_ssize_t *nlen, const char **rest)
{
    if (n < 5 || memcmp(s, "{\"t\":", 5) != 0)
        return 0;
    const char *end = s + n;
    unsigned long long v = 0;           /* unsigned: wraps harmlessly past 19 digits */
    const char *k = s + 5;
    while (k < end && *k >= '0' && *k <= '9')
        v = v * 10 + (*k++ - '0');      /* at most 18 digits are used, see below */
    Py_ssize_t nd = k - (s + 5);
    if (nd < 1 || nd > 18 || end - k < 6 || memcmp(k, ",\"k\":\"", 6) != 0)
        return 0;
    const char *ks = k + 6;
    const char *ke = memchr(ks, '"', end - ks);
    if (ke == NULL || memchr(ks, '\\', ke - ks) != NULL)
        return 0;
    *ts = (long long)v;
    *kind = ks;
    *klen = ke - ks;
    *rest = ke;
    Py_ssize_t rlen = end - ke;
    if (!(rlen >= 7 && memcmp(ke + 1, ",\"a\":\"", 6) == 0)) {
        *name = NULL;
        *nlen = 0;
        return find_akey(ke, rlen) == NULL;
    }
    const char *ns = ke + 7;
    const char *ne = memchr(ns, '"', end - ns);
    if (ne == NULL || ne == ns || memchr(ns, '\\', ne - ns) != NULL)
        return 0;
    for (const char *c = ns; c < ne; c++)
        if ((unsigned char)*c >= 0x80)
            return 0;
    *name = ns;
    *nlen = ne - ns;
    return 1;
}

/* Array-name keys made in this call, reused: a dict lookup with a fresh bytes object would
 * allocate and hash it on every line. */
#define NKEYS 64
typedef struct {
    PyObject *v[NKEYS];
    int n;
} Keys;

static PyObject *
get_key(Keys *ks, const char *name, Py_ssize_t len)
{
    for (int i = 0; i < ks->n; i++) {
        PyObject *k = ks->v[i];
        if (PyBytes_GET_SIZE(k) == len && memcmp(PyBytes_AS_STRING(k), name, len) == 0) {
            Py_INCREF(k);
            return k;
        }
    }
    PyObject *k = PyBytes_FromStringAndSize(name, len);
    if (k != NULL && ks->n < NKEYS) {
        Py_INCREF(k);
        ks->v[ks->n++] = k;
    }
    return k;
}

static void
free_keys(Keys *ks)
{
    for (int i = 0; i < ks->n; i++)
        Py_DECREF(ks->v[i]);
    ks->n = 0;
}

static PyObject *
scan(PyObject *self, PyObject *args)
{
    PyObject *templates, *block_obj;
    long long now, last_tick, tick_ns;
    if (!PyArg_ParseTuple(args, "O!SLLL:scan", &PyDict_Type, &templates, &block_obj, &now,
                          &last_tick, &tick_ns))
        return NULL;
    const char *block = PyBytes_AS_STRING(block_obj);
    Py_ssize_t blen = PyBytes_GET_SIZE(block_obj);

    PyObject *ops = PyList_New(0);
    PyObject *out = PyBytes_FromStringAndSize(NULL, blen + 1);
    PendSet ps = {NULL, 0, 0, -1, now};
    Keys keys = {{NULL}, 0};
    TposCache tpos;
    tpos.n = 0;
    if (ops == NULL || out == NULL)
        goto fail;
    char *o = PyBytes_AS_STRING(out);
    Py_ssize_t olen = 0;
    long long skimmed = 0;
    int blind = 0;

    const char *p = block, *bend = block + blen;
    while (p < bend) {
        const char *nl = memchr(p, '\n', bend - p);
        const char *le = nl ? nl : bend;
        Py_ssize_t n = le - p;
        const char *line = p;
        p = nl ? nl + 1 : bend;
        if (n == 0)
            continue;
        long long ts = 0;
        const char *kind = NULL, *name = NULL, *rest = NULL;
        Py_ssize_t klen = 0, nlen = 0;
        int ok = blind ? 0 : parse(line, n, &ts, &kind, &klen, &name, &nlen, &rest);
        if (!ok) {
            if (!blind) {
                blind = 1;
                if (flush_all(&ps, ops) < 0)
                    goto fail;
                PyDict_Clear(templates);
            }
            goto copy_out;
        }
        if (ts > now)
            now = ts;
        int tick = now - last_tick >= tick_ns;
        int cr = is_cr(kind, klen);
        Py_ssize_t rlen = (line + n) - rest;
        PyObject *key = NULL;
        if (name != NULL) {
            key = get_key(&keys, name, nlen);
            if (key == NULL)
                goto fail;
        }
        if (key != NULL && !tick && cr) {
            PyObject *t = PyDict_GetItemWithError(templates, key);     /* borrowed */
            if (t == NULL && PyErr_Occurred()) {
                Py_DECREF(key);
                goto fail;
            }
            int match = 0;
            long long pcr = 0, prp = -1;
            if (t != NULL) {
                if (!PyList_Check(t) || PyList_GET_SIZE(t) != 5 ||
                    !PyBytes_Check(PyList_GET_ITEM(t, 0))) {
                    Py_DECREF(key);
                    PyErr_SetString(PyExc_TypeError, "scan: malformed template");
                    goto fail;
                }
                PyObject *tb = PyList_GET_ITEM(t, 0);
                Pos q, ta;
                if (PyBytes_GET_SIZE(tb) == rlen && memcmp(PyBytes_AS_STRING(tb), rest, rlen) == 0) {
                    match = 1;
                    pcr = item_ll(t, 1);
                    prp = item_ll(t, 2);
                } else if (template_pos(&tpos, tb, &ta) &&
                           variant_pos(PyBytes_AS_STRING(tb), PyBytes_GET_SIZE(tb), &ta, rest,
                                       rlen, &q)) {
                    match = 1;
                    pcr = q.cr;
                    prp = q.rp;
                }
            }
            if (match) {
                Py_ssize_t i = find_pending(&ps, name, nlen);
                if (i < 0) {
                    if (ps.n == ps.cap) {
                        Py_ssize_t cap = ps.cap ? ps.cap * 2 : 16;
                        Pending *nv = PyMem_Realloc(ps.v, cap * sizeof(Pending));
                        if (nv == NULL) {
                            Py_DECREF(key);
                            PyErr_NoMemory();
                            goto fail;
                        }
                        ps.v = nv;
                        ps.cap = cap;
                    }
                    i = ps.n++;
                    ps.v[i] = (Pending){name, nlen, 0, 0, ts, ts, -1, NULL};
                }
                Pending *pp = &ps.v[i];
                if (cr == 1) {
                    pp->n_enter++;
                } else {
                    pp->n_exit++;
                    if (pp->first_exit < 0)
                        pp->first_exit = ts;
                }
                pp->last = ts;
                if (ts > pp->max)
                    pp->max = ts;
                if (ts > ps.max)
                    ps.max = ts;
                if (pcr != item_ll(t, 3) || prp != item_ll(t, 4)) {   /* the position moved */
                    PyObject *m = NULL;
                    if (pp->obs == NULL)
                        pp->obs = PyList_New(0);
                    if (pp->obs != NULL)
                        m = Py_BuildValue("(LLL)", ts, pcr, prp);
                    int rc = m == NULL ? -1 : PyList_Append(pp->obs, m);
                    Py_XDECREF(m);
                    if (rc < 0 || set_ll(t, 3, pcr) < 0 || set_ll(t, 4, prp) < 0) {
                        Py_DECREF(key);
                        goto fail;
                    }
                }
                skimmed++;
                Py_DECREF(key);
                continue;
            }
        }
        /* an ordinary line.  A second "a" key: another writer's shape (a repeat is
         * identical to its template, which passed this check, so it can have none) */
        if (key != NULL && find_akey(name + nlen, (line + n) - (name + nlen))) {
            Py_DECREF(key);
            blind = 1;
            if (flush_all(&ps, ops) < 0)
                goto fail;
            PyDict_Clear(templates);
            goto copy_out;
        }
        /* bring the engine up to date first */
        {
            long long hi = ps.fed_now > ts ? ps.fed_now : ts;
            if (tick || ps.max > hi) {
                if (flush_all(&ps, ops) < 0) {
                    Py_XDECREF(key);
                    goto fail;
                }
            } else if (key != NULL) {
                Py_ssize_t i = find_pending(&ps, name, nlen);
                if (i >= 0 && flush_one(&ps, i, ops) < 0) {
                    Py_DECREF(key);
                    goto fail;
                }
            }
        }
        if (tick)
            last_tick = now;
        if (ts > ps.fed_now)
            ps.fed_now = ts;
        if (key != NULL) {
            int rc;
            Pos q;
            int keep = 0;       /* 0: drop the template, 1: keep it, 2: keep, new position */
            long long acr = 0, arp = -1;
            PyObject *t = NULL;
            if (cr && positions(rest, rlen, &q)) {
                PyObject *r = PyBytes_FromStringAndSize(rest, rlen);
                PyObject *lst = r == NULL ? NULL :
                    Py_BuildValue("[NLLLL]", r, q.cr, q.rp, q.cr, q.rp);
                rc = lst == NULL ? -1 : PyDict_SetItem(templates, key, lst);
                Py_XDECREF(lst);
                keep = -1;
            } else if (!cr && is_keep(kind, klen)) {
                t = PyDict_GetItemWithError(templates, key);      /* borrowed */
                if (t == NULL && PyErr_Occurred()) {
                    Py_DECREF(key);
                    goto fail;
                }
                if (t != NULL && PyList_Check(t) && PyList_GET_SIZE(t) == 5 &&
                    PyBytes_Check(PyList_GET_ITEM(t, 0))) {
                    PyObject *tb = PyList_GET_ITEM(t, 0);
                    keep = aside(PyBytes_AS_STRING(tb), PyBytes_GET_SIZE(tb), rest, rlen,
                                 &acr, &arp);
                }
            }
            if (keep == 2) {
                rc = set_ll(t, 3, acr) < 0 || set_ll(t, 4, arp) < 0 ? -1 : 0;
            } else if (keep == 0) {
                rc = PyDict_DelItem(templates, key);
                if (rc < 0 && PyErr_ExceptionMatches(PyExc_KeyError)) {
                    PyErr_Clear();
                    rc = 0;
                }
            } else if (keep == 1) {
                rc = 0;
            }
            Py_DECREF(key);
            if (rc < 0)
                goto fail;
        }
    copy_out:
        memcpy(o + olen, line, n);
        olen += n;
        o[olen++] = '\n';
        if (PyList_Append(ops, Py_None) < 0)
            goto fail;
    }
    if (flush_all(&ps, ops) < 0)
        goto fail;
    free_pending(&ps);
    free_keys(&keys);
    free_tpos(&tpos);
    if (_PyBytes_Resize(&out, olen) < 0) {
        Py_DECREF(ops);
        return NULL;
    }
    return Py_BuildValue("(NNLLLO)", out, ops, skimmed, now, last_tick,
                         blind ? Py_True : Py_False);

fail:
    free_pending(&ps);
    free_keys(&keys);
    free_tpos(&tpos);
    Py_XDECREF(ops);
    Py_XDECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "Skim a block of trace lines (see mdtrace.skim.scan_py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "mdtrace._skimc",
    "C twin of mdtrace.skim.scan_py: skims identical md_check_recovery re-reads.", -1, methods,
};

PyMODINIT_FUNC
PyInit__skimc(void)
{
    return PyModule_Create(&module);
}
