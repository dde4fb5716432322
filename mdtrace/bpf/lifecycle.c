/* mdtrace: the sync-thread lifecycle of md arrays (NEEDED -> the daemon registers the sync
 * thread -> md_do_sync -> DONE -> md_reap_sync_thread), array create/stop,
 * mddev suspend/resume.  Needs common.h.  Attached as kprobes/kretprobes by the probe plan
 * (mdtrace/kernel/probes.py); a function missing on a kernel is simply not attached.
 *
 * Verified by attaching in the 6.1.192 and 6.12.117 guests (tests/vm/test_bpf_guest.py) and
 * against their BTF/kallsyms (tests/data/btf/).  6.7-6.9: md.c's
 * md_unregister_thread(struct mddev *, struct md_thread __rcu **) gained the mddev argument and
 * mddev_suspend() became int in 6.7 (both forms handled via BTF-derived -D constants); not
 * attached on a real 6.7-6.9 kernel.
 */

/* md_check_recovery(struct mddev *mddev): the md daemon's step 2 and 4 (6.1, 6.7-6.9, 6.12:
 * same signature).  raid5d calls it on every loop (hundreds of times a second under IO), so it
 * is reported CHANGE-ONLY (issue 12): an entry when the array's state words differ from the
 * last reported entry, an exit when they differ from the last reported exit, and otherwise one
 * exit sample per CRC_SAMPLE_NS (2 s) carrying the positions: with `record`'s sysfs progress
 * samples (0.3/s measured) a steady resync stays under one event a second per array.
 * a0 = md_check_recovery calls of that kind the event stands for (itself included), so "the
 * daemon ran N times and did not reap" (F1/F2) stays countable.  An idle array (recovery word 0 and no reshape position) is not
 * reported at all: md_check_recovery returns at once when none of NEEDED/DONE/sb_flags is set.
 *
 * The per-array memory lives in an ARRAY map slot picked by the calling thread (tid %
 * DAEMON_SLOTS; the caller is the array's own daemon thread, one per array), so the common
 * call costs no hash lookup: one inlined array lookup and two reads. */
#ifndef CRC_SAMPLE_NS
#define CRC_SAMPLE_NS 2000000000ULL
#endif
#define DAEMON_SLOTS 256
#define MAX_SECTOR (~0ULL)

struct crc_words {
    u64 recovery;
    u64 flags;
    s32 ro;
    s32 suspended;
    u64 sync_thread;
};

struct daemon_slot {
    u64 tid;                 /* owner thread; 0 = free */
    u64 mddev;
    struct crc_words enter_last, exit_last;
    u64 exit_last_ts;
    u32 enter_calls, exit_calls;
    u8 in_call;              /* the running call's entry was not idle: its exit is read */
    u8 reshaping;            /* counted in io_gate */
    u8 seen_enter, seen_exit;
    u32 pad;
};
BPF_ARRAY(daemon_slots, struct daemon_slot, DAEMON_SLOTS);

static __always_inline void crc_read(struct crc_words *w, u64 mddev, u64 rec)
{
    w->recovery = rec;
    w->flags = rd_u64(mddev, MDDEV_FLAGS);
    w->ro = rd_s32(mddev, MDDEV_RO);
    w->suspended = rd_s32(mddev, MDDEV_SUSPENDED);
    w->sync_thread = rd_u64(mddev, MDDEV_SYNC_THREAD) != 0;
}

static __always_inline int crc_same(struct crc_words *a, struct crc_words *b)
{
    return a->recovery == b->recovery && a->flags == b->flags && a->ro == b->ro &&
           a->suspended == b->suspended && a->sync_thread == b->sync_thread;
}

/* forget a slot's array (new owner or array stopped), giving back its io_gate count */
static __always_inline void daemon_slot_free(struct daemon_slot *s)
{
    if (s->reshaping)
        io_gate_add(-1);
    __builtin_memset(s, 0, sizeof(*s));
}

int md_check_recovery_enter(struct pt_regs *ctx)
{
    u64 mddev = PT_REGS_PARM1(ctx);
    u64 tid = (u32)bpf_get_current_pid_tgid();
    u32 idx = tid % DAEMON_SLOTS;
    struct daemon_slot *s = daemon_slots.lookup(&idx);
    if (!s || !mddev)
        return 0;
    if (s->tid != tid || s->mddev != mddev) {
        daemon_slot_free(s);
        s->tid = tid;
        s->mddev = mddev;
    }
    u64 rec = rd_u64(mddev, MDDEV_RECOVERY);
    u8 reshaping = rd_u64(mddev, MDDEV_RESHAPE_POS) != MAX_SECTOR;
    if (reshaping != s->reshaping) {
        s->reshaping = reshaping;
        io_gate_add(reshaping ? 1 : -1);
    }
    s->in_call = 0;
    /* idle, and so was the last reported entry (first sight of an array is reported once) */
    if (rec == 0 && !reshaping && s->seen_enter && s->enter_last.recovery == 0)
        return 0;
    struct crc_words w = {};
    crc_read(&w, mddev, rec);
    s->in_call = 1;
    s->enter_calls++;
    if (s->seen_enter && crc_same(&w, &s->enter_last))
        return 0;
    u64 calls = s->enter_calls;
    s->enter_last = w;
    s->seen_enter = 1;
    s->enter_calls = 0;
    return emit_state(ctx, EV_CHECK_RECOVERY_ENTER, mddev, calls, 0);
}

int md_check_recovery_exit(struct pt_regs *ctx)
{
    u64 tid = (u32)bpf_get_current_pid_tgid();
    u32 idx = tid % DAEMON_SLOTS;
    struct daemon_slot *s = daemon_slots.lookup(&idx);
    if (!s || s->tid != tid || !s->in_call)
        return 0;
    s->in_call = 0;
    u64 mddev = s->mddev;
    struct crc_words w = {};
    crc_read(&w, mddev, rd_u64(mddev, MDDEV_RECOVERY));
    u64 now = bpf_ktime_get_ns();
    s->exit_calls++;
    if (s->seen_exit && crc_same(&w, &s->exit_last) && now - s->exit_last_ts < CRC_SAMPLE_NS)
        return 0;
    u64 calls = s->exit_calls;
    s->exit_last = w;
    s->exit_last_ts = now;
    s->seen_exit = 1;
    s->exit_calls = 0;
    return emit_state(ctx, EV_CHECK_RECOVERY_EXIT, mddev, calls, 0);
}

/* an array stopped: free the daemon slots that remember it (its daemon thread is gone) */
static __always_inline void daemon_slots_forget(u64 mddev)
{
    for (u32 i = 0; i < DAEMON_SLOTS; i++) {
        u32 idx = i;
        struct daemon_slot *s = daemon_slots.lookup(&idx);
        if (s && s->mddev == mddev)
            daemon_slot_free(s);
    }
}

/* md_do_sync(struct md_thread *thread): step 3, runs in the sync thread itself, so comm is the
 * thread name ("md0_resync"; 6.8+ also "_reshape").  mddev = thread->mddev (6.1, 6.12). */
int md_do_sync_enter(struct pt_regs *ctx)
{
    u64 mddev = rd_u64(PT_REGS_PARM1(ctx), MD_THREAD_MDDEV);
    stash_put(F_DO_SYNC, mddev, 0, 0);
    return emit_state(ctx, EV_DO_SYNC_ENTER, mddev, 0, 0);
}

int md_do_sync_exit(struct pt_regs *ctx)
{
    struct stash_val v;
    if (!stash_take(F_DO_SYNC, &v))
        return 0;
    return emit_state(ctx, EV_DO_SYNC_EXIT, v.a0, 0, 0);
}

/* md_reap_sync_thread(struct mddev *mddev): step 4 (6.1, 6.7-6.9, 6.12).  Must run with
 * mddev->reconfig_mutex held by the caller (dm-raid's raid_message() did not before cd32b27a66db).  The mutex
 * owner word is a task_struct pointer with flag bits in the low 3 bits.
 * a0 = caller owns the mutex, a1 = mutex owned by anyone, a2 = caller address. */
int md_reap_sync_thread_enter(struct pt_regs *ctx)
{
    u64 mddev = PT_REGS_PARM1(ctx);
    u64 owner = rd_u64(mddev, MDDEV_RECONFIG_MUTEX + MUTEX_OWNER) & ~7ULL;
    u64 me = bpf_get_current_task();
    struct mdt_event *e = ev_new(EV_REAP);
    if (!e)
        return 0;
    read_state(e, mddev);
    e->a0 = owner == me;
    e->a1 = owner != 0;
    e->a2 = caller_ip(ctx);
    ev_submit(ctx, e);
    return 0;
}

/* md_register_thread(void (*run)(struct md_thread *), struct mddev *mddev, const char *name)
 * (6.1, 6.7-6.9, 6.12).  a0 = run (md_do_sync for a sync thread; symbolised in user space),
 * a1 = caller address (F4: a sync thread registered outside md_check_recovery/md_start_sync). */
int md_register_thread_enter(struct pt_regs *ctx)
{
    u64 mddev = PT_REGS_PARM2(ctx);
    struct mdt_event *e = ev_new(EV_THREAD_REGISTER);
    if (!e)
        return 0;
    read_state(e, mddev);
    e->a0 = PT_REGS_PARM1(ctx);
    e->a1 = caller_ip(ctx);
    bpf_probe_read_kernel_str(&e->str, sizeof(e->str), (void *)PT_REGS_PARM3(ctx));
    ev_submit(ctx, e);
    return 0;
}

/* md_unregister_thread: 6.1 (struct md_thread **threadp); 6.7+ (struct mddev *mddev,
 * struct md_thread __rcu **threadp).  UNREGISTER_NARGS comes from the BTF FUNC_PROTO.
 * a0 = thread->run, a1 = caller; str = thread task's comm. */
int md_unregister_thread_enter(struct pt_regs *ctx)
{
#if UNREGISTER_NARGS >= 2
    u64 threadp = PT_REGS_PARM2(ctx);
#else
    u64 threadp = PT_REGS_PARM1(ctx);
#endif
    u64 thread = rd_u64(threadp, 0);
    if (!thread)
        return 0;
    u64 mddev = rd_u64(thread, MD_THREAD_MDDEV);
    struct mdt_event *e = ev_new(EV_THREAD_UNREGISTER);
    if (!e)
        return 0;
    read_state(e, mddev);
    e->a0 = rd_u64(thread, MD_THREAD_RUN);
    e->a1 = caller_ip(ctx);
    u64 tsk = rd_u64(thread, MD_THREAD_TSK);
    if (tsk)
        bpf_probe_read_kernel_str(&e->str, sizeof(e->str), (void *)(tsk + TASK_COMM));
    ev_submit(ctx, e);
    return 0;
}

/* raid5_start_reshape(struct mddev *mddev) (raid456; 6.1, 6.7-6.9, 6.12: pers->start_reshape).
 * F5: called while a previous reshape was interrupted.  Entry: a1 = caller, a2 = 0;
 * exit: a0 = return value, a2 = 1. */
int raid5_start_reshape_enter(struct pt_regs *ctx)
{
    u64 mddev = PT_REGS_PARM1(ctx);
    u64 caller = caller_ip(ctx);
    stash_put(F_START_RESHAPE, mddev, caller, 0);
    return emit_state(ctx, EV_START_RESHAPE, mddev, 0, caller);
}

int raid5_start_reshape_exit(struct pt_regs *ctx)
{
    struct stash_val v;
    if (!stash_take(F_START_RESHAPE, &v))
        return 0;
    struct mdt_event *e = ev_new(EV_START_RESHAPE);
    if (!e)
        return 0;
    read_state(e, v.a0);
    e->a0 = PT_REGS_RC(ctx);
    e->a1 = v.a1;
    e->a2 = 1;
    ev_submit(ctx, e);
    return 0;
}

/* md_run(struct mddev *mddev) (6.1, 6.12): used by both md (do_md_run) and dm-raid (raid_ctr),
 * so a successful return is "array created" for both kinds. */
int md_run_enter(struct pt_regs *ctx)
{
    stash_put(F_MD_RUN, PT_REGS_PARM1(ctx), 0, 0);
    return 0;
}

int md_run_exit(struct pt_regs *ctx)
{
    struct stash_val v;
    if (!stash_take(F_MD_RUN, &v))
        return 0;
    if ((int)PT_REGS_RC(ctx) != 0)
        return 0;
    return emit_state(ctx, EV_ARRAY_CREATE, v.a0, 0, 0);
}

/* md_stop(struct mddev *mddev): dm-raid's stop (raid_dtr), 6.1 and 6.12.
 * do_md_stop(struct mddev *, int mode, struct block_device *) (static; md arrays): reported
 * on a zero return only (it refuses with -EBUSY while the array is open). */
int md_stop_enter(struct pt_regs *ctx)
{
    daemon_slots_forget(PT_REGS_PARM1(ctx));
    return emit_state(ctx, EV_ARRAY_STOP, PT_REGS_PARM1(ctx), 0, 0);
}

int do_md_stop_enter(struct pt_regs *ctx)
{
    u64 mddev = PT_REGS_PARM1(ctx);
    stash_put(F_DO_MD_STOP, mddev, 0, 0);
    return 0;
}

int do_md_stop_exit(struct pt_regs *ctx)
{
    struct stash_val v;
    if (!stash_take(F_DO_MD_STOP, &v))
        return 0;
    if ((int)PT_REGS_RC(ctx) != 0)
        return 0;
    daemon_slots_forget(v.a0);
    return emit_state(ctx, EV_ARRAY_STOP, v.a0, 0, 0);
}

/* mddev_suspend: 6.1 void (struct mddev *) under reconfig_mutex; 6.7+ int (struct mddev *,
 * bool interruptible) taking suspend_mutex.  mddev_resume(struct mddev *) all versions.
 * a0 = phase (0 enter, 1 exit), a1 = return value on exit (6.7+; 0 on 6.1). */
int mddev_suspend_enter(struct pt_regs *ctx)
{
    u64 mddev = PT_REGS_PARM1(ctx);
    stash_put(F_SUSPEND, mddev, 0, 0);
    return emit_state(ctx, EV_MDDEV_SUSPEND, mddev, 0, 0);
}

int mddev_suspend_exit(struct pt_regs *ctx)
{
    struct stash_val v;
    if (!stash_take(F_SUSPEND, &v))
        return 0;
#if MDDEV_SUSPEND_RETURNS_INT
    u64 rc = (u64)(s64)(int)PT_REGS_RC(ctx);
#else
    u64 rc = 0;
#endif
    return emit_state(ctx, EV_MDDEV_SUSPEND, v.a0, 1, rc);
}

int mddev_resume_enter(struct pt_regs *ctx)
{
    u64 mddev = PT_REGS_PARM1(ctx);
    stash_put(F_RESUME, mddev, 0, 0);
    return emit_state(ctx, EV_MDDEV_RESUME, mddev, 0, 0);
}

int mddev_resume_exit(struct pt_regs *ctx)
{
    struct stash_val v;
    if (!stash_take(F_RESUME, &v))
        return 0;
    return emit_state(ctx, EV_MDDEV_RESUME, v.a0, 1, 0);
}
