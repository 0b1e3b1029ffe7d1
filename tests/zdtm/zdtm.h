/* The zdtm protocol every program of tests/zdtm/ follows (tests/zdtm.rs
 * is the harness).
 *
 *   PROG DIR
 *
 * The program builds its state, then calls zdtm_ready(), which writes
 * its pid to DIR/ready (write + rename, so the file appears whole), and
 * zdtm_wait(), which sleeps in sigsuspend(2) until SIGUSR1 arrives.
 * SIGUSR1 is blocked from zdtm_init() on, so a signal sent early stays
 * pending instead of being lost. The harness checkpoints the group
 * (which ends the original), restores it, sends SIGUSR1 to the restored
 * root, and the program checks everything it built. It ends with
 * zdtm_pass() or zdtm_fail(), which write "PASS" or "FAIL: reason" to
 * DIR/result (a file opened only then, so not part of the image) and
 * exit 0 or 1. A failure before zdtm_ready() is reported the same way. */
#ifndef ZDTM_H
#define ZDTM_H

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *zdtm_dir;
static volatile sig_atomic_t zdtm_woken;

/* DIR/name in a static buffer (one at a time). */
static inline const char *zdtm_path(const char *name)
{
	static char buf[4096];
	snprintf(buf, sizeof buf, "%s/%s", zdtm_dir, name);
	return buf;
}

static inline void zdtm_result(const char *text)
{
	/* Written whole under a temporary name, then renamed: the harness
	 * never reads half a verdict. */
	char tmp[4096], path[4096];
	snprintf(tmp, sizeof tmp, "%s/result.%d", zdtm_dir, getpid());
	snprintf(path, sizeof path, "%s/result", zdtm_dir);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, text, strlen(text)) < 0 || close(fd) != 0 || rename(tmp, path) != 0)
		_exit(3);
}

__attribute__((noreturn, format(printf, 1, 2))) static inline void zdtm_fail(const char *fmt, ...)
{
	char msg[2048];
	int n = snprintf(msg, sizeof msg, "FAIL: ");
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(msg + n, sizeof msg - n - 2, fmt, ap);
	va_end(ap);
	if (errno)
		n += snprintf(msg + n, sizeof msg - n, " (errno: %s)", strerror(errno));
	snprintf(msg + n, sizeof msg - n, "\n");
	zdtm_result(msg);
	_exit(1);
}

/* zdtm_fail unless cond holds; errno is cleared so the reason is only
 * the message. */
#define zdtm_check(cond, ...)                                                  \
	do {                                                                   \
		if (!(cond)) {                                                 \
			errno = 0;                                             \
			zdtm_fail(__VA_ARGS__);                                \
		}                                                              \
	} while (0)

/* zdtm_fail with errno kept, for a call that returned an error. */
#define zdtm_syscall(cond, ...)                                                \
	do {                                                                   \
		if (!(cond))                                                   \
			zdtm_fail(__VA_ARGS__);                                \
	} while (0)

__attribute__((noreturn)) static inline void zdtm_pass(void)
{
	zdtm_result("PASS\n");
	_exit(0);
}

static inline void zdtm_on_usr1(int sig)
{
	(void)sig;
	zdtm_woken = 1;
}

/* Call first: takes DIR from argv and blocks SIGUSR1 (inherited by
 * children and threads). */
static inline void zdtm_init(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		exit(2);
	}
	zdtm_dir = argv[1];
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	struct sigaction sa = {.sa_handler = zdtm_on_usr1};
	sigaction(SIGUSR1, &sa, NULL);
}

/* Tells the harness the state is built: DIR/ready holds the pid. */
static inline void zdtm_ready(void)
{
	char tmp[4096], path[4096];
	snprintf(tmp, sizeof tmp, "%s/ready.tmp", zdtm_dir);
	snprintf(path, sizeof path, "%s/ready", zdtm_dir);
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "%d\n", getpid()) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
		zdtm_fail("writing %s", path);
}

/* Sleeps until SIGUSR1 (sent by the harness after the restore). */
static inline void zdtm_wait(void)
{
	sigset_t set;
	sigprocmask(SIG_SETMASK, NULL, &set);
	sigdelset(&set, SIGUSR1);
	while (!zdtm_woken)
		sigsuspend(&set);
}

/* zdtm_ready() then zdtm_wait(). */
static inline void zdtm_checkpoint_here(void)
{
	zdtm_ready();
	zdtm_wait();
}

/* Waits for child pid; fails unless it exited with status 0. */
static inline void zdtm_reap_ok(pid_t pid, const char *what)
{
	int st;
	pid_t got;
	do
		got = waitpid(pid, &st, 0);
	while (got < 0 && errno == EINTR);
	zdtm_syscall(got == pid, "waitpid %s", what);
	zdtm_check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s ended with status %#x", what, st);
}

/* A unix socket address for DIR/name (fails if the path is too long). */
static inline struct sockaddr_un zdtm_unix_addr(const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *path = zdtm_path(name);
	zdtm_check(strlen(path) < sizeof sa.sun_path, "socket path %s is too long", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	return sa;
}

/* The state letter of task tid (/proc/TID/stat, after the last ')'). */
static inline char zdtm_state(pid_t tid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", tid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 'X';
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 'X';
}

/* Waits until task tid (of this process, or a child) sleeps in system
 * call nr (/proc/TID/syscall starts with its number, proc(5)), or is
 * dead (then the caller's wait reports it). */
static inline void zdtm_wait_blocked(pid_t tid, long nr)
{
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", getpid(), tid);
	if (access(path, F_OK) != 0)
		snprintf(path, sizeof path, "/proc/%d/syscall", tid);
	for (;;) {
		char st = zdtm_state(tid);
		if (st == 'Z' || st == 'X')
			return;
		int fd = open(path, O_RDONLY);
		zdtm_syscall(fd >= 0, "open %s", path);
		ssize_t n = read(fd, buf, sizeof buf - 1);
		close(fd);
		buf[n > 0 ? n : 0] = 0;
		if (n > 0 && strtol(buf, NULL, 10) == nr)
			return;
		usleep(1000);
	}
}

/* Wakes a child blocked in zdtm_wait(), right away: a child the restore
 * has just released may not have re-entered sigsuspend(2) yet, and the
 * signal must still end its wait (the kernel's restart rule, which the
 * restore leaves in force). */
static inline void zdtm_wake(pid_t pid)
{
	kill(pid, SIGUSR1);
}

#endif
