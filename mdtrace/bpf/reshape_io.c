/* mdtrace: raid456 IO that waits on a reshape (F7), kept IN THE KERNEL.
 * Needs common.h.  Never one event per bio: requests live in an in-flight table here; user
 * space only hears of requests slower than IO_THRESH_NS (when they finish), of requests still
 * in flight past it (re-reported every IO_THRESH_NS by a periodic perf-event program), of
 * requests re-submitted in a loop (6.9+ STRIPE_WAIT_RESHAPE: raid5_make_request returns false
 * and md_handle_request retries), and per-array counters every IO_STATS_NS.
 *
 * raid456: static bool raid5_make_request(struct mddev *mddev, struct bio *bi), reached via
 * pers->make_request from md_handle_request - 6.1, 6.7-6.9, 6.12 (bool since 5.x).
 * 6.1/6.7/6.8: a request across the reshape position sleeps in it (wait_woken on
 * conf->wait_for_overlap, TASK_UNINTERRUPTIBLE); 6.9+: it returns false (requeue loop).
 * r5conf->reshape_progress / reshape_safe (sector_t): 6.1 and 6.12.
 *
 * All of it runs only while the io_gate (common.h) is open, i.e. while some array has a
 * reshape position: a healthy array's request costs one inlined array-map load per probe.
 */

#ifndef IO_THRESH_NS
#define IO_THRESH_NS 1000000000ULL
#endif
#ifndef IO_STATS_NS
#define IO_STATS_NS 5000000000ULL
#endif
/* the engine's F7 threshold: a request still waiting is re-reported the moment its wait
 * crosses it (not up to IO_THRESH_NS later), so live F7 latency is threshold + scan period */
#ifndef IO_ALERT_NS
#define IO_ALERT_NS 0ULL
#endif
#define IO_SLOTS 128              /* in-flight table; slot = tid % IO_SLOTS */

struct io_slot {
    u64 tid;
    u64 ts;
    u64 mddev;
    u64 sector;
    u64 last_report;
    u32 sectors;
    u32 opf;
};

struct io_stat {
    u64 requests;
    u64 slow;
    u64 blocked;
    u64 max_wait;
    u64 last_emit;
};

struct requeue_key { u64 mddev; u64 sector; };
struct requeue_val { u64 first; u64 last_report; u64 retries; };

BPF_ARRAY(io_inflight, struct io_slot, IO_SLOTS);
BPF_HASH(io_stats, u64, struct io_stat, 256);               /* mddev -> counters */
BPF_HASH(io_requeue, struct requeue_key, struct requeue_val, 1024);
BPF_ARRAY(io_untracked, u64, 1);                            /* slot collisions */

/* io_wait: a0 = sector, a1 = sectors | opf << 32, a2 = wait_ns,
 * a3 = done | mode << 1 (0 sleep, 1 requeue) | retries << 8; str holds reshape
 * progress/safe as two u64 (decoded in user space). */
static __always_inline void emit_io_wait(struct pt_regs *ctx, u64 mddev, u64 sector,
                                         u64 sectors_opf, u64 wait, u64 done, u64 mode,
                                         u64 retries, u64 scan_tid)
{
    struct mdt_event *e = ev_new(EV_IO_WAIT);
    if (!e)
        return;
    if (scan_tid) {
        /* periodic scan: the interrupted task is not the blocked one */
        e->pid = 0;
        e->tid = scan_tid;
        __builtin_memset(e->comm, 0, sizeof(e->comm));
    }
    read_state(e, mddev);
    e->a0 = sector;
    e->a1 = sectors_opf;
    e->a2 = wait;
    e->a3 = done | mode << 1 | retries << 8;
#if HAVE_R5CONF
    u64 conf = rd_u64(mddev, MDDEV_PRIVATE);
    u64 prog = rd_u64(conf, R5CONF_RESHAPE_PROGRESS);
    u64 safe = rd_u64(conf, R5CONF_RESHAPE_SAFE);
    __builtin_memcpy(&e->str[0], &prog, 8);
    __builtin_memcpy(&e->str[8], &safe, 8);
#endif
    ev_submit(ctx, e);
}

/* the wait (age) is past IO_ALERT_NS but was not when last reported (reported_age) */
static __always_inline int crossed_alert(u64 age, u64 reported_age)
{
    return IO_ALERT_NS > IO_THRESH_NS && age >= IO_ALERT_NS && reported_age < IO_ALERT_NS;
}

static __always_inline void account(struct pt_regs *ctx, u64 mddev, u64 wait, int slow,
                                    int blocked, u64 now)
{
    struct io_stat zero = {};
    struct io_stat *st = io_stats.lookup_or_try_init(&mddev, &zero);
    if (!st)
        return;
    __sync_fetch_and_add(&st->requests, 1);
    if (slow)
        __sync_fetch_and_add(&st->slow, 1);
    if (blocked)
        __sync_fetch_and_add(&st->blocked, 1);
    if (wait > st->max_wait)
        st->max_wait = wait;
    /* the first tracked request of an array reports at once (last_emit 0): since the io_gate
     * tracks requests only while a reshape position exists, a short episode would otherwise
     * never fill an IO_STATS_NS window */
    if (now - st->last_emit < IO_STATS_NS)
        return;
    struct mdt_event *e = ev_new(EV_IO_STATS);
    if (!e)
        return;
    read_state(e, mddev);
    e->a0 = st->requests;
    e->a1 = st->slow;
    e->a2 = st->blocked;
    e->a3 = st->max_wait;
    st->requests = 0;
    st->slow = 0;
    st->blocked = 0;
    st->max_wait = 0;
    st->last_emit = now;
    ev_submit(ctx, e);
}

int raid5_make_request_enter(struct pt_regs *ctx)
{
    /* no array has a reshape position: nothing can wait on one (io_gate, common.h) */
    u64 on_since;
    if (!io_gate_open(&on_since))
        return 0;
    u64 tid = (u32)bpf_get_current_pid_tgid();
    u32 idx = tid % IO_SLOTS;
    struct io_slot *s = io_inflight.lookup(&idx);
    if (!s)
        return 0;
    /* a slot filled before the gate last opened is free (its return may have been skipped) */
    if (s->tid && s->tid != tid && s->ts >= on_since) {
        u32 z = 0;
        u64 *c = io_untracked.lookup(&z);
        if (c)
            __sync_fetch_and_add(c, 1);
        return 0;
    }
    u64 bio = PT_REGS_PARM2(ctx);
    s->mddev = PT_REGS_PARM1(ctx);
    s->sector = rd_u64(bio, BIO_SECTOR);
    s->sectors = (u32)rd_s32(bio, BIO_SIZE) >> 9;
    s->opf = (u32)rd_s32(bio, BIO_OPF);
    s->last_report = 0;
    s->ts = bpf_ktime_get_ns();
    s->tid = tid;
    return 0;
}

int raid5_make_request_exit(struct pt_regs *ctx)
{
    u64 on_since;
    if (!io_gate_open(&on_since))
        return 0;
    u64 tid = (u32)bpf_get_current_pid_tgid();
    u32 idx = tid % IO_SLOTS;
    struct io_slot *s = io_inflight.lookup(&idx);
    if (!s || s->tid != tid)
        return 0;
    if (s->ts < on_since) {
        /* filled before the gate last shut; its wait is unknown: forget it */
        s->tid = 0;
        return 0;
    }
    u64 now = bpf_ktime_get_ns();
    u64 mddev = s->mddev;
    u64 sector = s->sector;
    u64 so = (u64)s->sectors | (u64)s->opf << 32;
    u64 wait = now - s->ts;
    u64 reported = s->last_report;
    s->tid = 0;
    int ok = (PT_REGS_RC(ctx) & 0xff) != 0;
    struct requeue_key k = {.mddev = mddev, .sector = sector};
    struct requeue_val *rq = io_requeue.lookup(&k);
    if (!ok) {
        /* refused (6.9+ STRIPE_WAIT_RESHAPE, or suspended): md_handle_request retries */
        if (!rq) {
            struct requeue_val nv = {.first = now, .last_report = 0, .retries = 1};
            io_requeue.update(&k, &nv);
            return 0;
        }
        rq->retries++;
        u64 age = now - rq->first;
        if (age >= IO_THRESH_NS && (now - rq->last_report >= IO_THRESH_NS ||
                                    crossed_alert(age, rq->last_report - rq->first))) {
            rq->last_report = now;
            emit_io_wait(ctx, mddev, sector, so, now - rq->first, 0, 1, rq->retries, 0);
        }
        return 0;
    }
    if (rq) {
        u64 total = now - rq->first;
        u64 retries = rq->retries;
        io_requeue.delete(&k);
        if (total >= IO_THRESH_NS)
            emit_io_wait(ctx, mddev, sector, so, total, 1, 1, retries, 0);
        account(ctx, mddev, total, total >= IO_THRESH_NS, 1, now);
        return 0;
    }
    if (wait >= IO_THRESH_NS || reported)
        emit_io_wait(ctx, mddev, sector, so, wait, 1, 0, 0, 0);
    account(ctx, mddev, wait, wait >= IO_THRESH_NS, reported != 0, now);
    return 0;
}

/* Periodic (perf software clock, CPU 0 only): report requests still sleeping in
 * raid5_make_request past the threshold, again every IO_THRESH_NS while they stay blocked.
 * ctx is a struct bpf_perf_event_data, never looked into: it stays void * because
 * <uapi/linux/bpf_perf_event.h> pulls in the kernel's linux/ptrace.h tree and doubled the bcc
 * compile (measured in the 6.12 guest under TCG: 80.7 s with it, 34.5 s without). */
int io_scan(void *ctx)
{
    if (bpf_get_smp_processor_id() != 0)
        return 0;
    u64 on_since;
    if (!io_gate_open(&on_since))
        return 0;
    u64 now = bpf_ktime_get_ns();
    for (u32 i = 0; i < IO_SLOTS; i++) {
        u32 idx = i;
        struct io_slot *s = io_inflight.lookup(&idx);
        if (!s || !s->tid)
            continue;
        /* the owner may refill the slot on another CPU meanwhile (a 6.9+ requeue loop
         * re-enters raid5_make_request constantly): ts can be newer than now */
        u64 ts = s->ts;
        if (ts >= now || now - ts < IO_THRESH_NS || ts < on_since)
            continue;
        if (now - s->last_report < IO_THRESH_NS && !crossed_alert(now - ts, s->last_report - ts))
            continue;
        s->last_report = now;
        emit_io_wait((struct pt_regs *)ctx, s->mddev, s->sector,
                     (u64)s->sectors | (u64)s->opf << 32, now - ts, 0, 0, 0, s->tid);
    }
    return 0;
}
