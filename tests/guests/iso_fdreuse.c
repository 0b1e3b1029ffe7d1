/* Relative paths must always start from the directory the fd (or cwd) names
 * *now*, for the thread that asks: the supervisor reads the fd's link per
 * call, and nothing may go stale when the number is reused.
 *
 *   iso_fdreuse ROOT          ROOT holds directories A, B and C, each with
 *                             a file "f" whose content is the letter.
 *
 * Prints one line "STEP LETTER" per check (a read of "f" relative to the
 * fd or cwd under test); "STEP ERR" if it failed. Steps:
 *   reuse      close(fd of A), open B: the same number names B
 *   dup2       dup2(fd of C, that number)
 *   chdir      chdir(A), then chdir(B): relative open follows the cwd
 *   fchdir     fchdir(fd of C)
 *   thread     a CLONE_FILES thread opens A; the main thread uses that fd
 *   unshared   a thread cloned without CLONE_FILES|CLONE_FS puts B at the
 *              number the main thread has A at, and chdirs to A while the
 *              main thread's cwd is C: each sees its own table and cwd
 *   fork       a forked child reuses the number for C; the parent keeps A
 *   exec       the program re-executes itself: an inherited fd still names
 *              A, a CLOEXEC one's number reused after exec names B
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[2048];

static int dir(const char *name)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", root, name);
	return open(p, O_RDONLY | O_DIRECTORY);
}

/* The letter in "f" relative to dirfd (AT_FDCWD: the cwd). Raw syscalls:
 * also called from a thread made by clone(2) without a TLS of its own. */
static char letter(int dirfd)
{
	char c = '?';
	long fd = syscall(SYS_openat, dirfd, "f", O_RDONLY);
	if (fd < 0)
		return 0;
	if (syscall(SYS_read, fd, &c, 1) != 1)
		c = 0;
	syscall(SYS_close, fd);
	return c;
}

static void say(const char *step, char c)
{
	if (c)
		printf("%s %c\n", step, c);
	else
		printf("%s ERR\n", step);
	fflush(stdout);
}

static int shared_fd = -1;

static void *opener(void *arg)
{
	(void)arg;
	shared_fd = dir("A");
	return NULL;
}

static int unshared_fd;
static char path_a[4096], path_b[4096];
static volatile char unshared_seen, unshared_cwd;

/* Raw syscalls only: this thread shares the main thread's TLS. */
static int unshared(void *arg)
{
	(void)arg;
	/* This thread's table is a copy: replace the number there only. */
	syscall(SYS_close, unshared_fd);
	long fd = syscall(SYS_openat, AT_FDCWD, path_b, O_RDONLY | O_DIRECTORY);
	unshared_seen = fd == unshared_fd ? letter(unshared_fd) : 'n';
	if (syscall(SYS_chdir, path_a) == 0)
		unshared_cwd = letter(AT_FDCWD);
	else
		unshared_cwd = 'x';
	return 0;
}

static void after_exec(int kept)
{
	say("exec-kept", letter(kept));
	int b = dir("B"); /* the lowest free number: the CLOEXEC one's */
	say(b == kept + 1 ? "exec-reused" : "exec-reused-other-number", letter(b));
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--after-exec")) {
		snprintf(root, sizeof root, "%s", argv[2]);
		after_exec(atoi(argv[3]));
		return 0;
	}
	if (argc != 2)
		return 2;
	snprintf(root, sizeof root, "%s", argv[1]);

	int a = dir("A");
	say("first", letter(a));
	close(a);
	int b = dir("B");
	say(b == a ? "reuse" : "reuse-other-number", letter(b));
	int c = dir("C");
	dup2(c, b);
	say("dup2", letter(b));
	close(c);
	close(b);

	char p[4096];
	snprintf(p, sizeof p, "%s/A", root);
	if (chdir(p) == 0)
		say("chdir-A", letter(AT_FDCWD));
	snprintf(p, sizeof p, "%s/B", root);
	if (chdir(p) == 0)
		say("chdir-B", letter(AT_FDCWD));
	c = dir("C");
	if (fchdir(c) == 0)
		say("fchdir", letter(AT_FDCWD));
	close(c);

	pthread_t t;
	pthread_create(&t, NULL, opener, NULL);
	pthread_join(t, NULL);
	say("thread", letter(shared_fd));
	close(shared_fd);

	/* A thread of this process with its own fd table and cwd. */
	snprintf(path_a, sizeof path_a, "%s/A", root);
	snprintf(path_b, sizeof path_b, "%s/B", root);
	unshared_fd = dir("A");
	static char stack[1 << 16] __attribute__((aligned(16)));
	int flags = CLONE_VM | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
	if (clone(unshared, stack + sizeof stack, flags, NULL) < 0) {
		perror("clone");
		return 1;
	}
	for (int i = 0; i < 6000 && !unshared_cwd; i++)
		usleep(10000);
	say("unshared-thread", unshared_seen);
	say("unshared-thread-cwd", unshared_cwd);
	say("unshared-main", letter(unshared_fd));
	say("unshared-main-cwd", letter(AT_FDCWD));
	close(unshared_fd);

	a = dir("A");
	pid_t kid = fork();
	if (kid == 0) {
		close(a);
		c = dir("C");
		say(c == a ? "fork-child" : "fork-child-other-number", letter(c));
		_exit(0);
	}
	waitpid(kid, NULL, 0);
	say("fork-parent", letter(a));

	/* a stays open across exec; a CLOEXEC fd just above it is closed. */
	int gone = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (gone != a + 1)
		return 3;
	char n[16];
	snprintf(n, sizeof n, "%d", a);
	execl("/proc/self/exe", argv[0], "--after-exec", root, n, (char *)NULL);
	perror("execl");
	return 1;
}
