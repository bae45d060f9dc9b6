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
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

/// Flags for an unnamed file in a directory (open(2) O_TMPFILE), written and then linked into place. glibc's
/// <fcntl.h> declares O_TMPFILE only under _GNU_SOURCE; its value is the kernel's __O_TMPFILE | O_DIRECTORY.
#ifdef O_TMPFILE
static inline int clinux_o_tmpfile(void) { return O_TMPFILE; }
#else
static inline int clinux_o_tmpfile(void) { return 020000000 | O_DIRECTORY; }
#endif

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

#endif
