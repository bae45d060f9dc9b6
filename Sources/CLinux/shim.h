#ifndef WEBHOOK_CLINUX_SHIM_H
#define WEBHOOK_CLINUX_SHIM_H

// Linux facilities Swift's Glibc module does not import: some are macros built from other macros or declared only
// under _GNU_SOURCE, and prctl is variadic. Each is wrapped in a function with a fixed signature; nothing here
// allocates or keeps state.
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <signal.h>
#include <stdint.h>
#include <linux/futex.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <time.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/vfs.h>

/// Flags for an unnamed file in a directory (open(2) O_TMPFILE), written and then linked into place. glibc's
/// <fcntl.h> declares O_TMPFILE only under _GNU_SOURCE; its value is the kernel's __O_TMPFILE | O_DIRECTORY.
#ifdef O_TMPFILE
static inline int clinux_o_tmpfile(void) { return O_TMPFILE; }
#else
static inline int clinux_o_tmpfile(void) { return 020000000 | O_DIRECTORY; }
#endif

/// Names this process in ps and /proc/PID/comm (prctl PR_SET_NAME; 15 bytes at most).
static inline int clinux_set_process_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

/// Runs this process only when a CPU would otherwise idle (SCHED_IDLE): for work nobody waits on.
static inline int clinux_schedule_when_idle(void) {
    struct sched_param none = { .sched_priority = 0 };
    return sched_setscheduler(0, 5 /* SCHED_IDLE */, &none);
}

/// Asks the kernel to send `signal` to this process when its parent dies (prctl PR_SET_PDEATHSIG).
static inline int clinux_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, signal); }

/// A descriptor that becomes readable when one of the (blocked) `signals` is pending: signals as events in a
/// poll set, with no handler and no global flag.
static inline int clinux_signal_fd(const sigset_t *signals) {
    return signalfd(-1, signals, SFD_CLOEXEC | SFD_NONBLOCK);
}

/// accept4(2) with SOCK_CLOEXEC, so that no command the handler starts inherits the connection.
extern int accept4(int, struct sockaddr *, socklen_t *, int);
static inline int clinux_accept_cloexec(int listening) { return accept4(listening, 0, 0, SOCK_CLOEXEC); }

/// The commit this binary was built from, when the build says so: `swift build -Xcc -DWEBHOOK_BUILD_COMMIT='"abc123"'`.
#ifdef WEBHOOK_BUILD_COMMIT
static inline const char *clinux_build_commit(void) { return WEBHOOK_BUILD_COMMIT; }
#else
static inline const char *clinux_build_commit(void) { return "unknown"; }
#endif

/// Atomic add and load on 64-bit counters in memory shared between processes (the status scoreboard).
static inline void clinux_atomic_add(int64_t *counter, int64_t value) {
    __atomic_fetch_add(counter, value, __ATOMIC_RELAXED);
}
static inline int64_t clinux_atomic_load(const int64_t *counter) { return __atomic_load_n(counter, __ATOMIC_RELAXED); }
static inline void clinux_atomic_store(int64_t *counter, int64_t value) { __atomic_store_n(counter, value, __ATOMIC_RELAXED); }
/// Sets `*counter` to `desired` if it holds `expected`; says whether it did.
static inline _Bool clinux_atomic_replace(int64_t *counter, int64_t expected, int64_t desired) {
    return __atomic_compare_exchange_n(counter, &expected, desired, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/// Sequentially consistent counters shared between processes (the journal's group commit): `*counter` += 1,
/// returning the new value; a load; and raising `*counter` to at least `value`.
static inline int64_t clinux_atomic_increment(int64_t *counter) { return __atomic_add_fetch(counter, 1, __ATOMIC_SEQ_CST); }
static inline int64_t clinux_atomic_load_ordered(const int64_t *counter) { return __atomic_load_n(counter, __ATOMIC_SEQ_CST); }
static inline void clinux_atomic_store_ordered(int64_t *counter, int64_t value) { __atomic_store_n(counter, value, __ATOMIC_SEQ_CST); }
static inline void clinux_atomic_raise(int64_t *counter, int64_t value) {
    int64_t seen = __atomic_load_n(counter, __ATOMIC_SEQ_CST);
    while (seen < value && !__atomic_compare_exchange_n(counter, &seen, value, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
}

/// Sleeps while the low 32 bits of `*counter` (a little-endian counter in shared memory) still equal those of
/// `seen`, at most `microseconds`, or until clinux_wake_all on it (futex(2), FUTEX_WAIT across processes).
static inline int clinux_wait_while_unchanged(int64_t *counter, int64_t seen, long microseconds) {
    struct timespec timeout = { microseconds / 1000000, (microseconds % 1000000) * 1000 };
    return (int)syscall(SYS_futex, (uint32_t *)counter, FUTEX_WAIT, (uint32_t)seen, &timeout, 0, 0);
}
static inline int clinux_wake_all(int64_t *counter) {
    return (int)syscall(SYS_futex, (uint32_t *)counter, FUTEX_WAKE, 0x7fffffff, 0, 0, 0);
}

/// Takes (`exclusive`) or gives back a lock on bytes [start, start + length) of `fd`'s file, waiting for it if
/// `wait`: an open-file-description lock (F_OFD_SETLK/F_OFD_SETLKW), so it belongs to this descriptor and goes when
/// it is closed, however the process ends. Without waiting, -1 with errno EAGAIN when another descriptor holds it.
static inline int clinux_lock_range(int fd, int64_t start, int64_t length, _Bool exclusive, _Bool wait) {
    struct flock lock = { .l_type = exclusive ? F_WRLCK : F_UNLCK, .l_whence = SEEK_SET, .l_start = start,
                          .l_len = length, .l_pid = 0 };
    int result;
    do {
        result = fcntl(fd, wait ? 38 /* F_OFD_SETLKW */ : 37 /* F_OFD_SETLK */, &lock);
    } while (result < 0 && errno == EINTR);
    return result;
}

/// The first hole at or after `offset` in `fd`'s file (lseek SEEK_HOLE), or -1.
static inline int64_t clinux_next_hole(int fd, int64_t offset) {
#ifdef SEEK_HOLE
    return lseek(fd, offset, SEEK_HOLE);
#else
    return lseek(fd, offset, 4);
#endif
}

/// syncfs(2): flush every dirty page and inode of the file system holding `fd` (the journal's checkpoint).
extern int syncfs(int);
static inline int clinux_syncfs(int fd) { return syncfs(fd); }

/// Whether `fd` is on FUSE (fstatfs f_type FUSE_SUPER_MAGIC), where syncfs(2) never reaches the file system's server
/// (Linux forwards it to virtiofs only) and so makes nothing durable.
static inline int clinux_is_fuse(int fd) {
    struct statfs status;
    return fstatfs(fd, &status) == 0 && status.f_type == 0x65735546;
}

/// A descriptor that becomes readable when a file is created in, or moved into, `directory` (inotify).
static inline int clinux_watch_directory(const char *directory) {
    int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (fd >= 0 && inotify_add_watch(fd, directory, IN_CREATE | IN_MOVED_TO) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/// A descriptor for process `pid` (pidfd_open(2)): a signal sent through it reaches that process or none, never
/// one that reused its pid. glibc 2.36 has no declaration without <sys/pidfd.h>.
static inline int clinux_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
static inline int clinux_pidfd_send_signal(int pidfd, int signal) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signal, 0, 0);
}

/// The sender and the value of a queued signal (sigqueue(3)), out of siginfo_t's unions.
static inline pid_t clinux_signal_sender(const siginfo_t *info) { return info->si_pid; }
static inline int clinux_signal_value(const siginfo_t *info) { return info->si_code == SI_QUEUE ? info->si_value.sival_int : 0; }
static inline int clinux_queue_signal(pid_t pid, int signal, int value) {
    union sigval carried = { .sival_int = value };
    return sigqueue(pid, signal, carried);
}

#endif
