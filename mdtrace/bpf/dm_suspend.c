/* mdtrace: dm core suspend/resume and the dm-raid target hooks, with the dm device name.
 * Needs common.h.  HAVE_DM_MOD / HAVE_DM_RAID (from BTF) say whether the modules' layouts are
 * known; the probe plan attaches only what kallsyms lists.
 *
 * dm.c: int dm_suspend(struct mapped_device *md, unsigned int suspend_flags),
 *       int dm_resume(struct mapped_device *md) - 6.1, 6.7-6.9, 6.12 unchanged.
 * dm-raid.c (static, via raid_target): raid_postsuspend(ti), raid_preresume(ti) (int),
 *       raid_resume(ti), raid_message(ti, argc, argv, result, maxlen) - 6.1 and 6.12;
 *       raid_presuspend(ti), raid_presuspend_undo(ti) - 6.9+ only (absent on 6.1).
 * container_of(mddev, struct raid_set, md) is how dm-raid reaches its mddev: ti->private is
 * the raid_set, and the mddev is embedded at RAID_SET_MD.
 */

#define HOOK_PRESUSPEND      1
#define HOOK_PRESUSPEND_UNDO 2
#define HOOK_POSTSUSPEND     3
#define HOOK_PRERESUME       4
#define HOOK_RESUME          5
#define HOOK_MESSAGE         6

#if HAVE_DM_MOD
/* dm device names into the event; the mapped_device's suspend_lock is a watched lock */
static __always_inline void read_dm(struct mdt_event *e, u64 md)
{
    u64 disk = rd_u64(md, MAPPED_DEVICE_DISK);
    if (disk)
        bpf_probe_read_kernel_str(&e->name, sizeof(e->name), (void *)(disk + GENDISK_DISK_NAME));
    bpf_probe_read_kernel_str(&e->dm_name, sizeof(e->dm_name), (void *)(md + MAPPED_DEVICE_NAME));
    e->is_dm = 1;
    watch_lock(md + MAPPED_DEVICE_SUSPEND_LOCK, LK_DM_SUSPEND);
}

static __always_inline int emit_dm(struct pt_regs *ctx, u32 kind, u64 md, u64 a0, u64 a1)
{
    struct mdt_event *e = ev_new(kind);
    if (!e)
        return 0;
    read_dm(e, md);
    e->a0 = a0;
    e->a1 = a1;
    ev_submit(ctx, e);
    return 0;
}

/* a0 = suspend_flags on entry; a1 = return value on exit */
int dm_suspend_enter(struct pt_regs *ctx)
{
    u64 md = PT_REGS_PARM1(ctx);
    stash_put(F_DM_SUSPEND, md, 0, 0);
    return emit_dm(ctx, EV_DM_SUSPEND_ENTER, md, PT_REGS_PARM2(ctx), 0);
}

int dm_suspend_exit(struct pt_regs *ctx)
{
    struct stash_val v;
    if (!stash_take(F_DM_SUSPEND, &v))
        return 0;
    return emit_dm(ctx, EV_DM_SUSPEND_EXIT, v.a0, 0, (u64)(s64)(int)PT_REGS_RC(ctx));
}

int dm_resume_enter(struct pt_regs *ctx)
{
    u64 md = PT_REGS_PARM1(ctx);
    stash_put(F_DM_RESUME, md, 0, 0);
    return emit_dm(ctx, EV_DM_RESUME_ENTER, md, 0, 0);
}

int dm_resume_exit(struct pt_regs *ctx)
{
    struct stash_val v;
    if (!stash_take(F_DM_RESUME, &v))
        return 0;
    return emit_dm(ctx, EV_DM_RESUME_EXIT, v.a0, 0, (u64)(s64)(int)PT_REGS_RC(ctx));
}
#endif /* HAVE_DM_MOD */

#if HAVE_DM_RAID && HAVE_DM_MOD
/* raid_* hooks take struct dm_target *ti; ti->private is the raid_set.
 * a0 = hook, a1 = phase (0 enter / 1 exit), a2 = return value (int hooks). */
static __always_inline int emit_hook(struct pt_regs *ctx, u64 ti, u32 hook, u32 phase, u64 rc)
{
    u64 rs = rd_u64(ti, DM_TARGET_PRIVATE);
    if (!rs)
        return 0;
    struct mdt_event *e = ev_new(EV_RAID_TARGET);
    if (!e)
        return 0;
    read_state(e, rs + RAID_SET_MD);
    e->a0 = hook;
    e->a1 = phase;
    e->a2 = rc;
    if (hook == HOOK_MESSAGE && phase == 0) {
        /* argv[0] of the dm message: "frozen", "idle", "resync", "recover", "check"... */
        u64 argv = PT_REGS_PARM3(ctx);
        u64 a0p = rd_u64(argv, 0);
        if (a0p)
            bpf_probe_read_kernel_str(&e->str, sizeof(e->str), (void *)a0p);
    }
    ev_submit(ctx, e);
    return 0;
}

/* One BPF program per macro expansion: bcc 0.18 (Debian bullseye) gives a second function
 * defined in the same expansion no program section of its own ("Unknown program
 * b'raid_postsuspend_exit'" on 5.10, measured), bcc 0.26+ handles both. */
#define RAID_HOOK_ENTER(fn, id)                                             \
int fn##_enter(struct pt_regs *ctx)                                         \
{                                                                           \
    u64 ti = PT_REGS_PARM1(ctx);                                            \
    stash_put(F_RAID_HOOK + (id << 4), ti, 0, 0);                           \
    return emit_hook(ctx, ti, id, 0, 0);                                    \
}
#define RAID_HOOK_EXIT(fn, id)                                              \
int fn##_exit(struct pt_regs *ctx)                                          \
{                                                                           \
    struct stash_val v;                                                     \
    if (!stash_take(F_RAID_HOOK + (id << 4), &v))                           \
        return 0;                                                           \
    return emit_hook(ctx, v.a0, id, 1, (u64)(s64)(int)PT_REGS_RC(ctx));     \
}

/* raid_presuspend / raid_presuspend_undo: 6.9+ (dm-raid.c) */
RAID_HOOK_ENTER(raid_presuspend, HOOK_PRESUSPEND)
RAID_HOOK_EXIT(raid_presuspend, HOOK_PRESUSPEND)
RAID_HOOK_ENTER(raid_presuspend_undo, HOOK_PRESUSPEND_UNDO)
RAID_HOOK_EXIT(raid_presuspend_undo, HOOK_PRESUSPEND_UNDO)
/* raid_postsuspend, raid_preresume, raid_resume, raid_message: 5.10 to 7.2 */
RAID_HOOK_ENTER(raid_postsuspend, HOOK_POSTSUSPEND)
RAID_HOOK_EXIT(raid_postsuspend, HOOK_POSTSUSPEND)
RAID_HOOK_ENTER(raid_preresume, HOOK_PRERESUME)
RAID_HOOK_EXIT(raid_preresume, HOOK_PRERESUME)
RAID_HOOK_ENTER(raid_resume, HOOK_RESUME)
RAID_HOOK_EXIT(raid_resume, HOOK_RESUME)
RAID_HOOK_ENTER(raid_message, HOOK_MESSAGE)
RAID_HOOK_EXIT(raid_message, HOOK_MESSAGE)
#endif /* HAVE_DM_RAID */
