/* mdtrace BPF common part: the one event record, the one ring buffer, state readers.
 *
 * Every struct offset and enum value below comes in as a -D constant computed from the running
 * kernel's BTF by mdtrace/kernel/offsets.py (MDDEV_RECOVERY, REC_RUNNING, ...): md.h is not in
 * linux-headers and its layout changes between 6.1, 6.7, 6.11 and 6.19, so nothing here names a
 * md/dm struct member directly.  All reads go through bpf_probe_read_kernel().
 *
 * The Python side (mdtrace/sources/bcc_source.py) concatenates this header with the selected
 * bpf C files into ONE program text, so all programs share the single ring buffer `events`.
 */
#include <uapi/linux/ptrace.h>
/* No <linux/sched.h> (nothing here uses it: task fields are BTF offsets) nor any other kernel
 * header tree: the bcc compile under TCG parses every header again at each start.  Measured in
 * the 6.1 and 6.12 guests, same instructions out: 45 s with sched.h, 21-28 s without. */

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 256
#endif

/* event kinds: Ev in mdtrace/sources/bcc_decode.py, same names (tests/test_contracts.py) */
#define EV_CHECK_RECOVERY_ENTER 1
#define EV_CHECK_RECOVERY_EXIT  2
#define EV_DO_SYNC_ENTER        3
#define EV_DO_SYNC_EXIT         4
#define EV_REAP                 5
#define EV_THREAD_REGISTER      6
#define EV_THREAD_UNREGISTER    7
#define EV_START_RESHAPE        8
#define EV_IO_WAIT              9
#define EV_IO_STATS             10
#define EV_DM_SUSPEND_ENTER     11
#define EV_DM_SUSPEND_EXIT      12
#define EV_DM_RESUME_ENTER      13
#define EV_DM_RESUME_EXIT       14
#define EV_RAID_TARGET          15
#define EV_MDDEV_SUSPEND        16
#define EV_MDDEV_RESUME         17
#define EV_LOCK                 18
#define EV_ARRAY_CREATE         19
#define EV_ARRAY_STOP           20
#define EV_TEST                 99   /* smoke test (tracepoint) */

/* lock classes (a2 of EV_LOCK) and ops (a1) */
#define LK_RECONFIG  1
#define LK_SUSPEND   2
#define LK_DM_SUSPEND 3
#define LK_OPEN      4
#define OP_ACQUIRE   1
#define OP_ACQUIRED  2
#define OP_RELEASE   3
#define OP_CONTEND   4
#define OP_TRYFAIL   5

struct mdt_event {
    u64 ts;
    u64 mddev;          /* raw pointer: hashed in user space, never written out */
    u64 recovery;
    u64 flags;
    u64 reshape_pos;
    u64 curr_resync;
    u64 resync_max;
    u64 a0, a1, a2, a3; /* kind-specific arguments (see bcc_decode.py) */
    u32 kind;
    u32 cpu;
    u32 pid;
    u32 tid;
    s32 ro;
    s32 suspended;
    s32 level;
    u8 sync_thread;
    u8 has_state;
    u8 is_dm;
    u8 pad0;
    char comm[16];
    char name[32];      /* md: gendisk->disk_name; dm-raid: mapped_device->disk->disk_name */
    char dm_name[16];   /* dm-raid: mapped_device->name ("major:minor") */
    char str[32];       /* thread name / dm message text */
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);

/* per-CPU scratch for building an event (216 bytes is too big for comfort on the stack) */
BPF_PERCPU_ARRAY(scratch, struct mdt_event, 1);
/* events that could not be reserved in the ring buffer, per kind: read by user space */
BPF_ARRAY(lost_count, u64, 32);

#ifdef MDT_LOCKS
/* lock address -> class (LK_*): only these mutexes are reported by locks.c */
BPF_HASH(watched_locks, u64, u32, 1024);
static __always_inline void watch_lock(u64 addr, u32 cls)
{
    watched_locks.insert(&addr, &cls);
}
#else
static __always_inline void watch_lock(u64 addr, u32 cls) {}
#endif

static __always_inline u64 rd_u64(u64 base, s64 off)
{
    u64 v = 0;
    if (base && off >= 0)
        bpf_probe_read_kernel(&v, sizeof(v), (void *)(base + off));
    return v;
}

static __always_inline s32 rd_s32(u64 base, s64 off)
{
    s32 v = 0;
    if (base && off >= 0)
        bpf_probe_read_kernel(&v, sizeof(v), (void *)(base + off));
    return v;
}

static __always_inline struct mdt_event *ev_new(u32 kind)
{
    u32 zero = 0;
    struct mdt_event *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    __builtin_memset(e, 0, sizeof(*e));
    u64 id = bpf_get_current_pid_tgid();
    e->ts = bpf_ktime_get_ns();
    e->kind = kind;
    e->cpu = bpf_get_smp_processor_id();
    e->pid = id >> 32;
    e->tid = (u32)id;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    return e;
}

/* Array name: md arrays have mddev->gendisk; dm-raid arrays have none (6.1-6.18), so go
 * container_of(mddev, struct raid_set, md)->ti->table->md (struct mapped_device). */
static __always_inline void read_names(struct mdt_event *e, u64 mddev)
{
    u64 disk = rd_u64(mddev, MDDEV_GENDISK);
    if (disk) {
        bpf_probe_read_kernel_str(&e->name, sizeof(e->name), (void *)(disk + GENDISK_DISK_NAME));
        return;
    }
#if HAVE_DM_NAMES
    u64 rs = mddev - RAID_SET_MD;
    u64 ti = rd_u64(rs, RAID_SET_TI);
    u64 table = rd_u64(ti, DM_TARGET_TABLE);
    u64 md = rd_u64(table, DM_TABLE_MD);
    u64 mdisk = rd_u64(md, MAPPED_DEVICE_DISK);
    if (mdisk) {
        e->is_dm = 1;
        bpf_probe_read_kernel_str(&e->name, sizeof(e->name), (void *)(mdisk + GENDISK_DISK_NAME));
        bpf_probe_read_kernel_str(&e->dm_name, sizeof(e->dm_name), (void *)(md + MAPPED_DEVICE_NAME));
    }
#endif
}

/* The array state the engine needs (mddev->recovery, flags, ro, suspended, sync_thread, ...),
 * read at this moment. */
static __always_inline void read_state(struct mdt_event *e, u64 mddev)
{
    if (!mddev)
        return;
    e->mddev = mddev;
    e->has_state = 1;
    e->recovery = rd_u64(mddev, MDDEV_RECOVERY);
    e->flags = rd_u64(mddev, MDDEV_FLAGS);
    e->ro = rd_s32(mddev, MDDEV_RO);
    e->suspended = rd_s32(mddev, MDDEV_SUSPENDED);
    e->level = rd_s32(mddev, MDDEV_LEVEL);
    e->sync_thread = rd_u64(mddev, MDDEV_SYNC_THREAD) != 0;
    e->reshape_pos = rd_u64(mddev, MDDEV_RESHAPE_POS);
    e->curr_resync = rd_u64(mddev, MDDEV_CURR_RESYNC);
    e->resync_max = rd_u64(mddev, MDDEV_RESYNC_MAX);
    read_names(e, mddev);
    watch_lock(mddev + MDDEV_RECONFIG_MUTEX, LK_RECONFIG);
#if HAVE_SUSPEND_MUTEX
    watch_lock(mddev + MDDEV_SUSPEND_MUTEX, LK_SUSPEND);
#endif
}

static __always_inline void ev_submit(void *ctx, struct mdt_event *e)
{
    if (events.ringbuf_output(e, sizeof(*e), 0) != 0) {
        u32 k = e->kind & 31;
        u64 *c = lost_count.lookup(&k);
        if (c)
            __sync_fetch_and_add(c, 1);
    }
}

/* Caller of the probed function (resolved to a symbol in user space; the raw address never
 * leaves the process).  Frame 1 of the kernel stack: the unwinder restores the real return
 * address when a kretprobe on the same function has replaced it with its trampoline (reading
 * [sp] directly would then give arch_rethook_trampoline).  Fallback: [sp] at entry. */
static __always_inline u64 caller_ip(struct pt_regs *ctx)
{
    u64 st[2] = {};
    if (bpf_get_stack(ctx, st, sizeof(st), 0) >= (int)sizeof(st))
        return st[1];
    u64 ip = 0;
    bpf_probe_read_kernel(&ip, sizeof(ip), (void *)PT_REGS_SP(ctx));
    return ip;
}

/* The per-IO gate (issue 17: BPF time per IO <= 1 % of the IO itself).  A request can wait
 * in raid5_make_request on a reshape only while the array has one: mddev->reshape_position is
 * MaxSector ((sector_t)~0) otherwise (md.c mddev_init; end_reshape/raid5_finish_reshape put it
 * back).  So the in-flight table of reshape_io.c is filled only while some array's
 * reshape_position is set: count = arrays seen so by md_check_recovery (lifecycle.c), force =
 * user space saw one in sysfs (an array whose daemon is not running md_check_recovery, e.g. a
 * frozen reshape on a quiet array).  A healthy array's IO costs one array-map load here (an
 * inlined lookup: no helper call).  on_since: when the gate last opened (ktime, CLOCK_MONOTONIC
 * like user space's time.monotonic_ns); an in-flight slot older than it was filled in an
 * earlier open period and its return may have been skipped while the gate was shut. */
struct io_gate_t {
    s64 count;               /* written by the programs only (atomic add) */
    u64 on_since;
};
struct io_gate_user_t {
    u64 force;               /* written by user space only (bcc_source.py IoGate) */
    u64 on_since;
};
BPF_ARRAY(io_gate, struct io_gate_t, 1);
BPF_ARRAY(io_gate_user, struct io_gate_user_t, 1);

/* 1 when the gate is open; *on_since = when it last opened */
static __always_inline int io_gate_open(u64 *on_since)
{
    u32 zero = 0;
    struct io_gate_t *g = io_gate.lookup(&zero);
    struct io_gate_user_t *u = io_gate_user.lookup(&zero);
    if (!g || !u || (g->count <= 0 && !u->force))
        return 0;
    *on_since = g->on_since > u->on_since ? g->on_since : u->on_since;
    return 1;
}

/* one more (d = 1) or one fewer (d = -1) array with a reshape position */
static __always_inline void io_gate_add(s64 d)
{
    u32 zero = 0;
    struct io_gate_t *g = io_gate.lookup(&zero);
    struct io_gate_user_t *u = io_gate_user.lookup(&zero);
    if (!g || !u)
        return;
    if (d > 0 && g->count <= 0 && !u->force)
        g->on_since = bpf_ktime_get_ns();
    __sync_fetch_and_add(&g->count, d);
}

/* entry -> return argument stash, keyed by thread id */
struct stash_val { u64 a0; u64 a1; u64 a2; };
BPF_HASH(stash, u64, struct stash_val, 4096);      /* tid -> entry arguments */

/* key = function id << 32 | tid, so nested probed calls do not overwrite each other */
#define F_CHECK_RECOVERY 1
#define F_DO_SYNC        2
#define F_START_RESHAPE  3
#define F_MD_RUN         4
#define F_DO_MD_STOP     5
#define F_SUSPEND        6
#define F_RESUME         7
#define F_DM_SUSPEND     8
#define F_DM_RESUME      9
#define F_RAID_HOOK      10
#define F_MUTEX          11

static __always_inline void stash_put(u64 fid, u64 a0, u64 a1, u64 a2)
{
    u64 tid = fid << 32 | (u32)bpf_get_current_pid_tgid();
    struct stash_val v = {.a0 = a0, .a1 = a1, .a2 = a2};
    stash.update(&tid, &v);
}

static __always_inline int stash_take(u64 fid, struct stash_val *out)
{
    u64 tid = fid << 32 | (u32)bpf_get_current_pid_tgid();
    struct stash_val *v = stash.lookup(&tid);
    if (!v)
        return 0;
    *out = *v;
    stash.delete(&tid);
    return 1;
}


static __always_inline int emit_state(struct pt_regs *ctx, u32 kind, u64 mddev, u64 a0, u64 a1)
{
    struct mdt_event *e = ev_new(kind);
    if (!e)
        return 0;
    read_state(e, mddev);
    e->a0 = a0;
    e->a1 = a1;
    ev_submit(ctx, e);
    return 0;
}
