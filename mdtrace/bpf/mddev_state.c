/* mdtrace: one mddev's own words, copied when a harmless read asks md or dm-raid for its state.
 *
 * The fallback of `mdtrace diagnose`'s kernel-state stage where /proc/kcore cannot be read
 * (absent, masked by a container, CAP_SYS_RAWIO dropped) but BPF can
 * (mdtrace/sources/snapshot/bpf_state.py).  A standalone program: it is compiled alone, without
 * common.h (no ring buffer, no event record): user space attaches it, reads
 * /sys/block/mdX/md/array_state and runs `dmsetup status --target raid`, then reads the
 * `mddev_snaps` map.  Each entry holds the bytes the /proc/kcore reader would have read for
 * that mddev (kcore.py read_mddev: the struct itself, the name chain, the percpu_ref data),
 * each with its kernel address, so user space decodes them with the SAME reader
 * (kcore.Captured); nothing is decided here.  Read-only: bpf_probe_read_kernel only.
 *
 * Probed (versions checked: 6.1, 6.12; both static, reached through a function pointer, so
 * never inlined away):
 *   md.c:     static ssize_t array_state_show(struct mddev *mddev, char *page)
 *             (md_attr_show -> entry->show; no reconfig_mutex since b7b17c9b67e5 "md: remove
 *             mddev_lock() from md_attr_show()", 4.12: the read does not queue behind a hang)
 *   dm-raid.c: static void raid_status(struct dm_target *ti, status_type_t type,
 *             unsigned int status_flags, char *result, unsigned int maxlen)
 *             (dm ioctl table_status -> retrieve_status; rs = ti->private, mddev = &rs->md;
 *             takes no md lock)
 * Offsets are -D constants from the running kernel's BTF (mdtrace/kernel/offsets.py FIELDS,
 * -1 when absent), MDDEV_SIZE = sizeof(struct mddev), REF_ACTIVE_IO / REF_WRITES_PENDING = 1
 * when the member is a struct percpu_ref (6.1, 6.12) rather than an atomic_t.
 */
#include <uapi/linux/ptrace.h>

/* the captured regions besides the struct itself (bpf_state.py REGIONS, same order) */
#define R_GENDISK_NAME    0   /* gendisk->disk_name, 32 */
#define R_RS_TI           1   /* container_of(mddev, struct raid_set, md)->ti, 8 */
#define R_TI_TABLE        2   /* ti->table, 8 */
#define R_TABLE_MD        3   /* table->md (struct mapped_device *), 8 */
#define R_MD_DISK         4   /* md->disk, 8 */
#define R_DM_DISK_NAME    5   /* md->disk->disk_name, 32 */
#define R_DM_NAME         6   /* md->name ("253:6"), 16 */
#define R_ACTIVE_IO       7   /* active_io.data->count, 8 */
#define R_WRITES_PENDING  8   /* writes_pending.data->count, 8 */
#define NREG              9
#define REG_MAX           32

#define PROBE_ARRAY_STATE 1
#define PROBE_RAID_STATUS 2

struct mdt_snap {
    u64 mddev;               /* key as well; never leaves user space (KASLR) */
    u32 probe;               /* PROBE_* */
    u32 body_ok;             /* the struct copy succeeded */
    u64 reg_addr[NREG];      /* kernel address of each region (0: not captured) */
    u32 reg_len[NREG];
    u32 reg_ok[NREG];
    u8 reg_data[NREG * REG_MAX];  /* flat: bcc's ctypes mistranslates 2-D arrays */
    u8 body[MDDEV_SIZE];     /* struct mddev, as read */
};

BPF_PERCPU_ARRAY(snap_buf, struct mdt_snap, 1);
BPF_HASH(mddev_snaps, u64, struct mdt_snap, 256);

static __always_inline u64 body_u64(struct mdt_snap *s, s64 off)
{
    u64 v = 0;
    if (off >= 0 && off + 8 <= MDDEV_SIZE)
        __builtin_memcpy(&v, s->body + off, 8);
    return v;
}

/* copy len (<= REG_MAX) bytes at addr into region i; returns the first 8 as a u64 */
static __always_inline u64 cap(struct mdt_snap *s, int i, u64 addr, u32 len)
{
    u64 v = 0;
    if (!addr || addr < 4096)
        return 0;
    s->reg_addr[i] = addr;
    s->reg_len[i] = len;
    if (bpf_probe_read_kernel(s->reg_data + i * REG_MAX, len, (void *)addr) == 0) {
        s->reg_ok[i] = 1;
        if (len >= 8)
            __builtin_memcpy(&v, s->reg_data + i * REG_MAX, 8);
    }
    return v;
}

/* a percpu_ref's data->count (kcore.py _ref reads it when the ref is in atomic mode) */
static __always_inline void cap_ref(struct mdt_snap *s, int i, s64 ref)
{
    if (ref < 0 || PERCPU_REF_DATA < 0 || PERCPU_REF_DATA_COUNT < 0)
        return;
    u64 data = body_u64(s, ref + PERCPU_REF_DATA);
    if (data)
        cap(s, i, data + PERCPU_REF_DATA_COUNT, 8);
}

static __always_inline int snap(u64 mddev, u32 probe)
{
    u32 zero = 0;
    struct mdt_snap *s = snap_buf.lookup(&zero);
    if (!s || !mddev)
        return 0;
    /* no memset of the ~2.8 KiB (clang refuses the call): the body and each region are
     * overwritten by their read (bpf_probe_read_kernel zeroes the buffer on a fault), and
     * user space looks only at regions marked ok */
#pragma unroll
    for (int i = 0; i < NREG; i++) {
        s->reg_addr[i] = 0;
        s->reg_len[i] = 0;
        s->reg_ok[i] = 0;
    }
    s->body_ok = 0;
    s->mddev = mddev;
    s->probe = probe;
    if (bpf_probe_read_kernel(s->body, MDDEV_SIZE, (void *)mddev) != 0)
        return 0;
    s->body_ok = 1;
    /* kcore.py _names: md arrays have a gendisk; dm-raid ones go through the raid_set */
    u64 gendisk = body_u64(s, MDDEV_GENDISK);
    if (gendisk) {
        cap(s, R_GENDISK_NAME, gendisk + GENDISK_DISK_NAME, 32);
    } else if (RAID_SET_MD >= 0 && RAID_SET_TI >= 0 && DM_TARGET_TABLE >= 0 &&
               DM_TABLE_MD >= 0 && MAPPED_DEVICE_DISK >= 0 && MAPPED_DEVICE_NAME >= 0) {
        u64 ti = cap(s, R_RS_TI, mddev - RAID_SET_MD + RAID_SET_TI, 8);
        u64 table = ti ? cap(s, R_TI_TABLE, ti + DM_TARGET_TABLE, 8) : 0;
        u64 md = table ? cap(s, R_TABLE_MD, table + DM_TABLE_MD, 8) : 0;
        u64 disk = md ? cap(s, R_MD_DISK, md + MAPPED_DEVICE_DISK, 8) : 0;
        if (disk)
            cap(s, R_DM_DISK_NAME, disk + GENDISK_DISK_NAME, 32);
        if (md)
            cap(s, R_DM_NAME, md + MAPPED_DEVICE_NAME, 16);
    }
#if REF_ACTIVE_IO
    cap_ref(s, R_ACTIVE_IO, MDDEV_ACTIVE_IO);
#endif
#if REF_WRITES_PENDING
    cap_ref(s, R_WRITES_PENDING, MDDEV_WRITES_PENDING);
#endif
    mddev_snaps.update(&mddev, s);
    return 0;
}

/* md.c array_state_show(struct mddev *mddev, char *page): 6.1, 6.12 */
int array_state_show_enter(struct pt_regs *ctx)
{
    return snap(PT_REGS_PARM1(ctx), PROBE_ARRAY_STATE);
}

/* dm-raid.c raid_status(struct dm_target *ti, ...): rs = ti->private, mddev = &rs->md;
 * 6.1, 6.12 */
int raid_status_enter(struct pt_regs *ctx)
{
    u64 ti = PT_REGS_PARM1(ctx);
    u64 rs = 0;
    if (!ti || DM_TARGET_PRIVATE < 0 || RAID_SET_MD < 0)
        return 0;
    bpf_probe_read_kernel(&rs, sizeof(rs), (void *)(ti + DM_TARGET_PRIVATE));
    if (!rs)
        return 0;
    return snap(rs + RAID_SET_MD, PROBE_RAID_STATUS);
}
