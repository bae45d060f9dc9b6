#ifndef WEBHOOK_CLINUX_HOOK_GUARD_H
#define WEBHOOK_CLINUX_HOOK_GUARD_H

// The guard that runs one hook command and makes sure nothing of it outlives the run, nor the process that asked for
// it. It is C, not Swift, because it runs in a child forked from a possibly multi-threaded process (a FastCGI
// worker): until it exits it may only make system calls, never allocate or take a lock.
//
//   caller (runner, worker, `spool retry`, a consumer)
//     └─ guard: PR_SET_CHILD_SUBREAPER, every signal blocked, watches the caller through a pidfd
//          └─ /bin/sh -c COMMAND: its own process group, PR_SET_PDEATHSIG(SIGKILL) towards the guard
//               └─ whatever the command starts; orphans (even after setsid) are re-parented to the guard
//
// The guard ends the run when the command exits, when the deadline passes (SIGTERM to the group and every
// descendant, `grace` milliseconds, then SIGKILL), or at once with SIGKILL when the caller dies, however it dies.
// Either way it kills and reaps every process left, then writes the command's wait status to `report`.
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "shim.h"  // clinux_pidfd_open

/// What the guard writes to its report descriptor once the run is over.
struct clinux_hook_report {
    int32_t status;     // the command's wait status
    int32_t timed_out;  // 1 if the deadline passed and it was stopped
    int32_t stopped;    // 1 if the caller asked for it to stop (a byte on `stop`) and it was killed
};

static inline int64_t clinux_guard_now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/// Sends `signal` to the command's process group and to every child of this (subreaper) process: what left the
/// group with setsid is re-parented here once its own parent is gone. Returns how many children it found. Once the
/// group is empty `*group` becomes 0, so that its number, free for reuse, is never signalled again.
static inline int clinux_guard_signal_all(pid_t *group, int signal) {
    if (*group > 0 && kill(-*group, signal) != 0 && errno == ESRCH) *group = 0;
    int found = 0, fd = open("/proc/thread-self/children", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buffer[4096];
    long length = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    pid_t pid = 0;
    for (long i = 0; i < length; i++) {
        if (buffer[i] >= '0' && buffer[i] <= '9') {
            pid = pid * 10 + (buffer[i] - '0');
        } else if (pid > 0) {
            kill(pid, signal);
            found++;
            pid = 0;
        }
    }
    if (pid > 0) { kill(pid, signal); found++; }
    return found;
}

/// Stops everything left of the run: `first` (SIGTERM, or SIGKILL when nobody waits any more) to all of it, then
/// SIGKILL once `grace_ms` have passed, or at once if `caller` (a pidfd) reports the caller's death. Reaps every
/// child; the command's status (if it had not been reaped yet) goes to `*status`.
static inline void clinux_guard_end(pid_t command, int *command_alive, int *status, int first, int64_t grace_ms,
                                    int caller) {
    int64_t kill_at = clinux_guard_now_ms() + (first == SIGKILL ? 0 : grace_ms);
    int killing = first == SIGKILL;
    pid_t group = command;
    clinux_guard_signal_all(&group, first);
    for (;;) {
        int child_status;
        pid_t pid;
        while ((pid = waitpid(-1, &child_status, WNOHANG)) > 0) {
            if (pid == command) { *status = child_status; *command_alive = 0; }
        }
        if (pid < 0 && errno == ECHILD) return;  // nothing left
        struct pollfd watch = { .fd = caller, .events = POLLIN, .revents = 0 };
        if (!killing && caller >= 0 && poll(&watch, 1, 0) > 0) kill_at = 0;
        if (!killing && clinux_guard_now_ms() >= kill_at) killing = 1;
        if (killing) {
            clinux_guard_signal_all(&group, SIGKILL);
        } else if (!*command_alive) {
            clinux_guard_signal_all(&group, SIGTERM);  // orphans that arrived since
        }
        poll(0, 0, 10);
    }
}

/// Forks the guard, which runs `path` with `argv` and `envp`, stdin from `input`, stdout and stderr to `output`,
/// for at most `timeout_ms` (then `grace_ms` after SIGTERM). Returns the guard's pid (or -1 with errno); the guard
/// writes a clinux_hook_report to `report` and exits once nothing of the run is left. Every descriptor passed
/// should be close-on-exec: the command gets only its three standard ones. A byte written to `stop` (a pipe's read
/// end, or -1) by a caller that lives but may no longer run the command (a consumer whose lease was lost) kills
/// the run at once, SIGKILL to all of it.
static inline pid_t clinux_hook_spawn(const char *path, char *const argv[], char *const envp[], int input, int output,
                                      int report, int64_t timeout_ms, int64_t grace_ms, int stop) {
    pid_t caller = getpid();
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    sigset_t saved;
    pthread_sigmask(SIG_SETMASK, &all, &saved);  // no handler of the caller's may run in the forked guard
    pid_t guard = fork();
    if (guard != 0) {
        int saved_errno = errno;
        pthread_sigmask(SIG_SETMASK, &saved, 0);
        errno = saved_errno;
        return guard;
    }
    // The guard. Signals stay blocked: SIGINT from a terminal or SIGTERM to the caller's group must not kill it
    // before it has killed the command (it learns of the caller's end through the pidfd).
    int64_t started = clinux_guard_now_ms();
    prctl(PR_SET_NAME, "webhook-hook", 0, 0, 0);
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    int caller_fd = clinux_pidfd_open(caller);
    if (getppid() != caller) _exit(1);  // the caller died before we could watch it
    pid_t guard_pid = getpid();
    pid_t command = fork();
    if (command == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != guard_pid) _exit(127);  // the guard died before the line above
        if (dup2(input, 0) < 0 || dup2(output, 1) < 0 || dup2(output, 2) < 0) _exit(126);
        struct sigaction standard = { 0 };
        standard.sa_handler = SIG_DFL;
        for (int signal = 1; signal < 65; signal++) sigaction(signal, &standard, 0);  // SIG_IGN survives exec
        sigprocmask(SIG_SETMASK, &none, 0);
        execve(path, argv, envp);
        _exit(127);
    }
    struct clinux_hook_report result = { .status = 127 << 8, .timed_out = 0, .stopped = 0 };
    if (command < 0) {
        result.status = 126 << 8;
        (void)!write(report, &result, sizeof result);
        _exit(0);
    }
    setpgid(command, command);  // as the child does: whichever runs first, the group exists before any signal
    int command_fd = clinux_pidfd_open(command);
    int command_alive = 1;
    int tick = caller_fd >= 0 && command_fd >= 0 ? 1000 : 20;  // without pidfds (Linux < 5.3), look every 20 ms
    for (;;) {
        int64_t left = started + timeout_ms - clinux_guard_now_ms();
        if (left <= 0) {
            result.timed_out = 1;
            clinux_guard_end(command, &command_alive, &result.status, SIGTERM, grace_ms, caller_fd);
            break;
        }
        struct pollfd watch[3] = { { .fd = caller_fd, .events = POLLIN }, { .fd = command_fd, .events = POLLIN },
                                   { .fd = stop, .events = POLLIN } };
        poll(watch, 3, (int)(left < tick ? left : tick));
        if (getppid() != caller || (caller_fd >= 0 && watch[0].revents)) {
            clinux_guard_end(command, &command_alive, &result.status, SIGKILL, 0, -1);
            _exit(1);  // nobody is left to read a report
        }
        if (stop >= 0 && watch[2].revents) {
            result.stopped = 1;
            clinux_guard_end(command, &command_alive, &result.status, SIGKILL, 0, -1);
            break;
        }
        int status;
        if (waitpid(command, &status, WNOHANG) == command) {
            result.status = status;
            command_alive = 0;
            clinux_guard_end(command, &command_alive, &status, SIGTERM, grace_ms, caller_fd);
            break;
        }
    }
    (void)!write(report, &result, sizeof result);
    _exit(0);
}

#endif
