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
    long long n_enter, n_exit, n_io, n_prog, last, max, first_exit;
    char *mv;               /* packed moves (mdtrace.moves.MOVE), or NULL */
    Py_ssize_t mvn, mvcap;
    const char *action;     /* the folded progress lines' sync action (into the block) */
    Py_ssize_t alen;
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
    PyObject *action = PyUnicode_DecodeUTF8(p->action, p->alen, NULL);
    if (action == NULL) {
        Py_DECREF(name);
        return -1;
    }
    PyObject *obs;
    if (p->mv != NULL) {
        obs = PyBytes_FromStringAndSize(p->mv, p->mvn);
        PyMem_Free(p->mv);
        p->mv = NULL;
        p->mvn = p->mvcap = 0;
        if (obs == NULL) {
            Py_DECREF(name);
            Py_DECREF(action);
            return -1;
        }
    } else {
        obs = Py_None;
        Py_INCREF(obs);
    }
    PyObject *t = Py_BuildValue("(NLLLLLLLNN)", name, p->n_enter, p->n_exit, p->n_io,
                                p->n_prog, p->last, p->max, p->first_exit, obs, action);
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
        PyMem_Free(ps->v[i].mv);
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
    int key[2];                 /* 0: the span is cr's, 1: rp's */
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
    for (const char *c = st; c + 5 <= e && (c = memchr(c, '"', e - c)) != NULL; c++) {
        if (c + 5 > e || c[3] != '"' || c[4] != ':')
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
        p->key[p->n] = i;
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
    /* r must equal t outside t's value spans and hold a plain number (1-18 digits) in each:
     * then positions(r) would find the same keys and these values (its other bytes are t's) */
    Pos b = *ta;
    b.cr = 0;
    b.rp = -1;
    Py_ssize_t ia = 0, ib = 0;
    for (int i = 0; i < ta->n; i++) {
        Py_ssize_t seg = ta->s[i] - ia;
        if (rn - ib < seg || memcmp(t + ia, r + ib, seg) != 0)
            return 0;
        ib += seg;
        Py_ssize_t vs = ib;
        long long v = 0;
        while (ib < rn && r[ib] >= '0' && r[ib] <= '9' && ib - vs < 19)
            v = v * 10 + (r[ib++] - '0');
        if (ib == vs || ib - vs > 18)
            return 0;
        b.s[i] = vs;
        b.e[i] = ib;
        if (ta->key[i] == 0)
            b.cr = v;
        else
            b.rp = v;
        ia = ta->e[i];
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
    const char *end = h + n;
    for (const char *c = h; c + kn <= end && (c = memchr(c, key[0], end - c)) != NULL; c++)
        if (c + kn <= end && memcmp(c, key, kn) == 0) {
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

/* The array's pending run, created if needed, with ts as its newest line. */
static Pending *
get_pending(PendSet *ps, const char *name, Py_ssize_t nlen, long long ts)
{
    Py_ssize_t i = find_pending(ps, name, nlen);
    if (i < 0) {
        if (ps->n == ps->cap) {
            Py_ssize_t cap = ps->cap ? ps->cap * 2 : 16;
            Pending *nv = PyMem_Realloc(ps->v, cap * sizeof(Pending));
            if (nv == NULL) {
                PyErr_NoMemory();
                return NULL;
            }
            ps->v = nv;
            ps->cap = cap;
        }
        i = ps->n++;
        ps->v[i] = (Pending){name, nlen, 0, 0, 0, 0, ts, ts, -1, NULL, 0, 0, "", 0};
    }
    Pending *pp = &ps->v[i];
    pp->last = ts;
    if (ts > pp->max)
        pp->max = ts;
    if (ts > ps->max)
        ps->max = ts;
    return pp;
}

#define MOVE_SIZE 48

static void
put_le64(char *d, long long v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(d, &v, 8);
#else
    unsigned long long u = (unsigned long long)v;
    for (int i = 0; i < 8; i++)
        d[i] = (char)(u >> (8 * i));
#endif
}

static long long
get_le64(const char *s)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    long long v;
    memcpy(&v, s, 8);
    return v;
#else
    unsigned long long u = 0;
    for (int i = 7; i >= 0; i--)
        u = (u << 8) | (unsigned char)s[i];
    return (long long)u;
#endif
}

/* Append a packed move (mdtrace.moves.MOVE) to the run. */
static int
add_move(Pending *pp, long long ts, long long cr, long long rp, int code, long long done,
         long long total)
{
    if (pp->mvn + MOVE_SIZE > pp->mvcap) {
        Py_ssize_t cap = pp->mvcap ? pp->mvcap * 2 : 16 * MOVE_SIZE;
        char *nv = PyMem_Realloc(pp->mv, cap);
        if (nv == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        pp->mv = nv;
        pp->mvcap = cap;
    }
    char *d = pp->mv + pp->mvn;
    long long v[6] = {ts, cr, rp, code, done, total};
    for (int i = 0; i < 6; i++)
        put_le64(d + 8 * i, v[i]);
    pp->mvn += MOVE_SIZE;
    return 0;
}

/* mdtrace.skim._numbers_only */
static int
numbers_only(const char *a, Py_ssize_t na, const char *b, Py_ssize_t nb)
{
    Py_ssize_t i = 0, j = 0;
    int in_str = 1;
    while (i < na && j < nb) {
        char c = a[i];
        if (c != b[j])
            return 0;
        i++;
        j++;
        if (c == '"') {
            in_str = !in_str;
        } else if (c == ':' && !in_str) {
            Py_ssize_t ie = i, je = j;
            while (ie < na && a[ie] >= '0' && a[ie] <= '9')
                ie++;
            while (je < nb && b[je] >= '0' && b[je] <= '9')
                je++;
            if (ie > i || je > j) {
                if (ie == i || je == j || ie - i > 18 || je - j > 18 || ie >= na || je >= nb ||
                    (a[ie] != ',' && a[ie] != '}') || (b[je] != ',' && b[je] != '}'))
                    return 0;
                i = ie;
                j = je;
            }
        }
    }
    return i == na && j == nb;
}

/* Occurrences of key (NUL-terminated) in [h, h+n), the first at *at. */
static int
count_key(const char *h, Py_ssize_t n, const char *key, const char **at)
{
    Py_ssize_t kn = (Py_ssize_t)strlen(key);
    const char *end = h + n;
    int cnt = 0;
    for (const char *c = h; c + kn <= end && (c = memchr(c, key[0], end - c)) != NULL; c++)
        if (c + kn <= end && memcmp(c, key, kn) == 0) {
            if (cnt++ == 0)
                *at = c;
        }
    return cnt;
}

/* mdtrace.skim._progress_args: 1 with done, total and the action span, else 0. */
static int
progress_args(const char *r, Py_ssize_t rn, long long *done, long long *total,
              const char **act, Py_ssize_t *alen)
{
    static const char XK[] = ",\"x\":{";
    const char *x = NULL;
    for (const char *c = r + rn - (Py_ssize_t)sizeof(XK) + 1; c >= r; c--)
        if (*c == ',' && memcmp(c, XK, sizeof(XK) - 1) == 0) {
            x = c;
            break;
        }
    if (x == NULL || rn < 2 || r[rn - 1] != '}' || r[rn - 2] != '}')
        return 0;
    const char *body = x + 5, *end = r + rn;
    Py_ssize_t bn = end - body;
    const char *keys[2] = {"\"done\":", "\"total\":"};
    long long vals[2];
    for (int i = 0; i < 2; i++) {
        const char *k = NULL;
        if (count_key(body, bn, keys[i], &k) != 1)
            return 0;
        const char *vs = k + strlen(keys[i]), *ve = vs;
        long long v = 0;
        while (ve < end && *ve >= '0' && *ve <= '9' && ve - vs < 19)
            v = v * 10 + (*ve++ - '0');
        if (ve == vs || ve - vs > 18 || ve >= end || (*ve != ',' && *ve != '}'))
            return 0;
        vals[i] = v;
    }
    const char *k = NULL;
    if (count_key(body, bn, "\"action\":", &k) != 1 || end - k < 10 || k[9] != '"')
        return 0;
    const char *as = k + 10;
    const char *ae = memchr(as, '"', end - as);
    if (ae == NULL)
        return 0;
    *done = vals[0];
    *total = vals[1];
    *act = as;
    *alen = ae - as;
    return 1;
}

static int aside(const char *t, Py_ssize_t tn, const char *r, Py_ssize_t rn, long long *cr,
                 long long *rp);

/* mdtrace.skim._fold: 0 no; 1 folds without a state; 2 with the state's position. */
static int
fold(const char *t, Py_ssize_t tn, PyObject *kt, int prog, const char *r, Py_ssize_t rn,
     long long *cr, long long *rp, long long *done, long long *total, const char **act,
     Py_ssize_t *alen)
{
    if (kt == NULL || !PyBytes_Check(kt) || memchr(r, '\\', rn) != NULL)
        return 0;
    int keep = aside(t, tn, r, rn, cr, rp);
    if (keep == 0)
        return 0;
    const char *ts = find_state(t, tn);
    const char *rs = find_state(r, rn);
    const char *ldn, *tdn;
    Py_ssize_t ldnn, tdnn;
    if (!field(r, rs == NULL ? rn : rs - r, ",\"dn\":\"", &ldn, &ldnn) ||
        !field(t, ts == NULL ? tn : ts - t, ",\"dn\":\"", &tdn, &tdnn))
        return 0;
    if (ldnn && !span_eq(ldn, ldnn, tdn, tdnn))
        return 0;
    if (!numbers_only(PyBytes_AS_STRING(kt), PyBytes_GET_SIZE(kt), r, rn))
        return 0;
    *done = *total = 0;
    *act = "";
    *alen = 0;
    if (prog && !progress_args(r, rn, done, total, act, alen))
        return 0;
    return keep;
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
#define NKEYS 128
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

/* The fold template's key: name NUL kind (mdtrace.skim: name + b"\\0" + kind). */
static PyObject *
kind_key(Keys *ks, const char *name, Py_ssize_t nlen, const char *kind, Py_ssize_t klen)
{
    char buf[512];
    if (nlen + 1 + klen > (Py_ssize_t)sizeof(buf)) {
        PyObject *k = PyBytes_FromStringAndSize(NULL, nlen + 1 + klen);
        if (k != NULL) {
            char *d = PyBytes_AS_STRING(k);
            memcpy(d, name, nlen);
            d[nlen] = 0;
            memcpy(d + nlen + 1, kind, klen);
        }
        return k;
    }
    memcpy(buf, name, nlen);
    buf[nlen] = 0;
    memcpy(buf + nlen + 1, kind, klen);
    return get_key(ks, buf, nlen + 1 + klen);
}

/* 1 io_stats, 2 progress: the kinds that fold into a run (mdtrace.skim._fold). */
static int
fold_kind(const char *k, Py_ssize_t n)
{
    return (n == 8 && memcmp(k, "io_stats", 8) == 0) ? 1 :
           (n == 8 && memcmp(k, "progress", 8) == 0) ? 2 : 0;
}

static void
free_keys(Keys *ks)
{
    for (int i = 0; i < ks->n; i++)
        Py_DECREF(ks->v[i]);
    ks->n = 0;
}

/* A template list's bytes (borrowed), or NULL with TypeError set if it is malformed. */
static PyObject *
template_bytes(PyObject *t)
{
    if (!PyList_Check(t) || PyList_GET_SIZE(t) != 5 || !PyBytes_Check(PyList_GET_ITEM(t, 0))) {
        PyErr_SetString(PyExc_TypeError, "scan: malformed template");
        return NULL;
    }
    return PyList_GET_ITEM(t, 0);
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
    long long skimmed = 0, n_lines = 0, n_out = 0;
    int blind = 0;

    const char *p = block, *bend = block + blen;
    while (p < bend) {
        const char *nl = memchr(p, '\n', bend - p);
        const char *le = nl ? nl : bend;
        n_lines += nl != NULL;
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
        int cr = is_cr(kind, klen), fk;
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
                PyObject *tb = template_bytes(t);
                if (tb == NULL) {
                    Py_DECREF(key);
                    goto fail;
                }
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
                Pending *pp = get_pending(&ps, name, nlen, ts);
                if (pp == NULL) {
                    Py_DECREF(key);
                    goto fail;
                }
                if (cr == 1) {
                    pp->n_enter++;
                } else {
                    pp->n_exit++;
                    if (pp->first_exit < 0)
                        pp->first_exit = ts;
                }
                if (pcr != item_ll(t, 3) || prp != item_ll(t, 4)) {   /* the position moved */
                    if (add_move(pp, ts, pcr, prp, 0, 0, 0) < 0 || set_ll(t, 3, pcr) < 0 ||
                        set_ll(t, 4, prp) < 0) {
                        Py_DECREF(key);
                        goto fail;
                    }
                }
                skimmed++;
                Py_DECREF(key);
                continue;
            }
        } else if (key != NULL && !tick && (fk = fold_kind(kind, klen)) != 0) {
            PyObject *t = PyDict_GetItemWithError(templates, key);     /* borrowed */
            PyObject *kk = t == NULL ? NULL : kind_key(&keys, name, nlen, kind, klen);
            PyObject *kt = kk == NULL ? NULL : PyDict_GetItemWithError(templates, kk);
            Py_XDECREF(kk);
            if (PyErr_Occurred()) {
                Py_DECREF(key);
                goto fail;
            }
            long long fcr = 0, frp = -1, done = 0, total = 0;
            const char *act = "";
            Py_ssize_t alen = 0;
            int f = 0;
            if (t != NULL && kt != NULL) {
                PyObject *tb = template_bytes(t);
                if (tb == NULL) {
                    Py_DECREF(key);
                    goto fail;
                }
                f = fold(PyBytes_AS_STRING(tb), PyBytes_GET_SIZE(tb), kt, fk == 2, rest, rlen,
                         &fcr, &frp, &done, &total, &act, &alen);
            }
            if (f) {
                Pending *pp = get_pending(&ps, name, nlen, ts);
                int rc = pp == NULL ? -1 : 0;
                if (rc == 0 && f == 2) {
                    rc = (set_ll(t, 3, fcr) < 0 || set_ll(t, 4, frp) < 0 ||
                          add_move(pp, ts, fcr, frp, 1, 0, 0) < 0) ? -1 : 0;
                }
                if (rc == 0) {
                    if (fk == 1) {
                        pp->n_io++;
                    } else {
                        pp->n_prog++;
                        pp->action = act;
                        pp->alen = alen;
                        rc = add_move(pp, ts, item_ll(t, 3), item_ll(t, 4), 2, done, total);
                    }
                }
                Py_DECREF(key);
                if (rc < 0)
                    goto fail;
                skimmed++;
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
            if (!cr && fold_kind(kind, klen)) {     /* the fold template of this kind */
                PyObject *kk = kind_key(&keys, name, nlen, kind, klen);
                PyObject *r = kk == NULL ? NULL : PyBytes_FromStringAndSize(rest, rlen);
                rc = r == NULL ? -1 : PyDict_SetItem(templates, kk, r);
                Py_XDECREF(kk);
                Py_XDECREF(r);
                if (rc < 0) {
                    Py_DECREF(key);
                    goto fail;
                }
            }
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
        n_out++;
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
    return Py_BuildValue("(NNLLLOLL)", out, ops, skimmed, now, last_tick,
                         blind ? Py_True : Py_False, n_lines, n_out);

fail:
    free_pending(&ps);
    free_keys(&keys);
    free_tpos(&tpos);
    Py_XDECREF(ops);
    Py_XDECREF(out);
    return NULL;
}

/* mdtrace.moves.fold_py */
static PyObject *
fold_moves(PyObject *self, PyObject *args)
{
    Py_buffer mv;
    PyObject *token, *ref;
    double speed;
    long long changed, seen;
    if (!PyArg_ParseTuple(args, "y*OOdLL:fold", &mv, &token, &ref, &speed, &changed, &seen))
        return NULL;
    long long oc = -1, orp = -2, os = -1, r0 = 0, r1 = 0;
    int have = token != Py_None, have_ref = ref != Py_None, tok_new = 0, ref_new = 0;
    if ((have && !PyArg_ParseTuple(token, "LLL", &oc, &orp, &os)) ||
        (have_ref && !PyArg_ParseTuple(ref, "LL", &r0, &r1)) || mv.len % MOVE_SIZE) {
        PyBuffer_Release(&mv);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "fold: moves are not whole MOVE records");
        return NULL;
    }
    const char *b = mv.buf;
    for (Py_ssize_t off = 0; off < mv.len; off += MOVE_SIZE) {
        long long ts = get_le64(b + off), curr = get_le64(b + off + 8);
        long long reshape = get_le64(b + off + 16), code = get_le64(b + off + 24);
        long long done = get_le64(b + off + 32), sysfs, alt;
        seen = ts;
        if (code == 2) {
            sysfs = alt = done;
        } else {
            sysfs = have ? os : 0;
            alt = 0;
        }
        if (curr != oc || reshape != orp || sysfs != os) {
            oc = curr;
            orp = reshape;
            os = sysfs;
            have = tok_new = 1;
            changed = ts;
            long long pos = curr > 3 ? curr : alt;
            if (!have_ref || pos < r1 || pos == 0) {
                r0 = ts;
                r1 = pos;
                have_ref = ref_new = 1;
                if (pos == 0)
                    speed = 0.0;
            } else if (ts - r0 >= 1000000000LL) {
                speed = (double)(pos - r1) * 1e9 / (double)(ts - r0);
                r0 = ts;
                r1 = pos;
                ref_new = 1;
            }
        }
    }
    PyBuffer_Release(&mv);
    PyObject *t = tok_new ? Py_BuildValue("(LLL)", oc, orp, os) : (Py_INCREF(token), token);
    PyObject *r = ref_new ? Py_BuildValue("(LL)", r0, r1) : (Py_INCREF(ref), ref);
    if (t == NULL || r == NULL) {
        Py_XDECREF(t);
        Py_XDECREF(r);
        return NULL;
    }
    return Py_BuildValue("(NNdLL)", t, r, speed, changed, seen);
}

/* mdtrace.moves.thin */
static int
thin(PyObject *pts)
{
    Py_ssize_t n = PyList_GET_SIZE(pts);
    PyObject *last = PyList_GET_ITEM(pts, n - 1);
    Py_INCREF(last);
    PyObject *one = PyLong_FromLong(1), *two = PyLong_FromLong(2);
    PyObject *sl = (one && two) ? PySlice_New(one, Py_None, two) : NULL;
    Py_XDECREF(one);
    Py_XDECREF(two);
    int rc = sl == NULL ? -1 : PyObject_DelItem(pts, sl);
    Py_XDECREF(sl);
    if (rc == 0 && PyList_GET_ITEM(pts, PyList_GET_SIZE(pts) - 1) != last)
        rc = PyList_Append(pts, last);
    Py_DECREF(last);
    return rc;
}

/* (a, b, c) without parsing a Py_BuildValue format per point; c_obj: c as an object to share */
static PyObject *
triple(long long a, long long b, long long c, PyObject *c_obj)
{
    PyObject *t = PyTuple_New(3);
    if (t == NULL)
        return NULL;
    long long v[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        PyObject *o = (i == 2 && c_obj != NULL) ? (Py_INCREF(c_obj), c_obj) :
            PyLong_FromLongLong(v[i]);
        if (o == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, o);
    }
    return t;
}

/* mdtrace.moves.points_py */
static PyObject *
points_moves(PyObject *self, PyObject *args)
{
    PyObject *pts, *rm_obj;
    Py_buffer mv;
    Py_ssize_t maxp;
    if (!PyArg_ParseTuple(args, "O!y*O!n:points", &PyList_Type, &pts, &mv, &PyLong_Type,
                          &rm_obj, &maxp))
        return NULL;
    long long rm = PyLong_AsLongLong(rm_obj);
    if (rm == -1 && PyErr_Occurred()) {
        PyBuffer_Release(&mv);
        return NULL;
    }
    const char *b = mv.buf;
    int have = 0;               /* last point's (value, total) known */
    long long lv = 0, lt = 0;
    for (Py_ssize_t off = 0; off + MOVE_SIZE <= mv.len; off += MOVE_SIZE) {
        Py_ssize_t n = PyList_GET_SIZE(pts);
        if (!have && n > 0) {
            PyObject *lp = PyList_GET_ITEM(pts, n - 1);
            if (!PyTuple_Check(lp) || PyTuple_GET_SIZE(lp) < 3) {
                PyErr_SetString(PyExc_TypeError, "points: a point is not a (ts, v, total)");
                goto fail;
            }
            lv = PyLong_AsLongLong(PyTuple_GET_ITEM(lp, 1));
            lt = PyLong_AsLongLong(PyTuple_GET_ITEM(lp, 2));
            if (PyErr_Occurred())
                goto fail;
            have = 1;
        }
        long long ts = get_le64(b + off), cr = get_le64(b + off + 8);
        long long code = get_le64(b + off + 24), v, total;
        if (code == 2) {
            v = get_le64(b + off + 32);
            total = get_le64(b + off + 40);
            if (n > 0 && lv == v && lt == total)
                continue;
        } else if (cr > 3 && rm && (n == 0 || lv != cr)) {
            v = cr;
            total = rm;
        } else {
            continue;
        }
        PyObject *p = triple(ts, v, total, total == rm ? rm_obj : NULL);
        if (p == NULL || PyList_Append(pts, p) < 0) {
            Py_XDECREF(p);
            goto fail;
        }
        Py_DECREF(p);
        lv = v;
        lt = total;
        have = 1;
        if (PyList_GET_SIZE(pts) > maxp) {
            if (thin(pts) < 0)
                goto fail;
            have = 0;       /* thinning keeps the last point; re-read it anyway */
        }
    }
    PyBuffer_Release(&mv);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&mv);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "Skim a block of trace lines (see mdtrace.skim.scan_py)."},
    {"fold", fold_moves, METH_VARARGS, "Progress tracking over packed moves (mdtrace.moves.fold_py)."},
    {"points", points_moves, METH_VARARGS,
     "Report progress points from packed moves (mdtrace.moves.points_py)."},
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
