/* mdtrace: md/dm mutexes (reconfig_mutex, suspend_mutex, dm suspend_lock, open_mutex) for the
 * lock-order (F8) and wait-for (F9) checks.  Compiled only with --locks (MDT_LOCKS); needs
 * common.h.  Only locks in the watched_locks map are reported: the map is filled IN THE
 * KERNEL by the other programs as they meet arrays (read_state: reconfig/suspend mutex of
 * every mddev; dm_suspend.c: mapped_device->suspend_lock), so unrelated kernel mutexes cost a
 * hash lookup and nothing else.
 *
 * Default: contention only - __mutex_lock_slowpath / __mutex_lock_interruptible_slowpath /
 * __mutex_lock_killable_slowpath (kernel/locking/mutex.c, noinline, 6.1 and 6.12) are only
 * entered when the fast path failed: entry = "contend", return = "acquired" after the wait.
 * MDT_LOCKS_FULL adds mutex_lock/mutex_lock_interruptible (acquire/acquired), mutex_trylock
 * failures and mutex_unlock (release) for exact lock-order graphs (hot: every mutex in the
 * kernel pays a map lookup).
 * EV_LOCK: a0 = lock address (hashed in user space), a1 = op, a2 = class.
 */

static __always_inline int lock_event(struct pt_regs *ctx, u64 lock, u32 op)
{
    u32 *cls = watched_locks.lookup(&lock);
    if (!cls)
        return 0;
    u32 c = *cls;
    struct mdt_event *e = ev_new(EV_LOCK);
    if (!e)
        return 0;
    if (c == LK_RECONFIG)
        read_state(e, lock - MDDEV_RECONFIG_MUTEX);
#if HAVE_SUSPEND_MUTEX
    else if (c == LK_SUSPEND)
        read_state(e, lock - MDDEV_SUSPEND_MUTEX);
#endif
#if HAVE_DM_MOD
    else if (c == LK_DM_SUSPEND) {
        u64 md = lock - MAPPED_DEVICE_SUSPEND_LOCK;
        u64 disk = rd_u64(md, MAPPED_DEVICE_DISK);
        if (disk)
            bpf_probe_read_kernel_str(&e->name, sizeof(e->name),
                                      (void *)(disk + GENDISK_DISK_NAME));
        bpf_probe_read_kernel_str(&e->dm_name, sizeof(e->dm_name),
                                  (void *)(md + MAPPED_DEVICE_NAME));
        e->is_dm = 1;
    }
#endif
    e->a0 = lock;
    e->a1 = op;
    e->a2 = c;
    ev_submit(ctx, e);
    return 0;
}

static __always_inline int lock_enter(struct pt_regs *ctx, u32 op, u64 fid)
{
    u64 lock = PT_REGS_PARM1(ctx);
    if (!watched_locks.lookup(&lock))
        return 0;
    stash_put(fid, lock, 0, 0);
    return lock_event(ctx, lock, op);
}

static __always_inline int lock_return(struct pt_regs *ctx, u64 fid)
{
    struct stash_val v;
    if (!stash_take(fid, &v))
        return 0;
    /* mutex_lock_interruptible & co return non-zero when interrupted: not acquired */
    if ((int)PT_REGS_RC(ctx) != 0)
        return 0;
    return lock_event(ctx, v.a0, OP_ACQUIRED);
}

/* __mutex_lock_slowpath(struct mutex *lock) and the interruptible/killable variants */
int mutex_slowpath_enter(struct pt_regs *ctx) { return lock_enter(ctx, OP_CONTEND, F_MUTEX + 2); }
int mutex_slowpath_exit(struct pt_regs *ctx) { return lock_return(ctx, F_MUTEX + 2); }

#ifdef MDT_LOCKS_FULL
/* mutex_lock(struct mutex *), mutex_lock_interruptible(struct mutex *) */
int mutex_lock_enter(struct pt_regs *ctx) { return lock_enter(ctx, OP_ACQUIRE, F_MUTEX); }
int mutex_lock_exit(struct pt_regs *ctx) { return lock_return(ctx, F_MUTEX); }

/* int mutex_trylock(struct mutex *): returns 1 when taken */
int mutex_trylock_enter(struct pt_regs *ctx)
{
    u64 lock = PT_REGS_PARM1(ctx);
    if (watched_locks.lookup(&lock))
        stash_put(F_MUTEX + 1, lock, 0, 0);
    return 0;
}

int mutex_trylock_exit(struct pt_regs *ctx)
{
    struct stash_val v;
    if (!stash_take(F_MUTEX + 1, &v))
        return 0;
    return lock_event(ctx, v.a0, PT_REGS_RC(ctx) ? OP_ACQUIRED : OP_TRYFAIL);
}

/* void mutex_unlock(struct mutex *) */
int mutex_unlock_enter(struct pt_regs *ctx)
{
    return lock_event(ctx, PT_REGS_PARM1(ctx), OP_RELEASE);
}
#endif
