#define _GNU_SOURCE
/* Relative paths start from the directory an fd or the cwd names *now*,
 * in the cases iso_fdreuse.c leaves out. The supervisor keeps an O_PATH
 * handle on each /proc/TID/fd/N (and /proc/TID/cwd) it has read, per fd
 * number: these steps change what the number or the cwd names between two
 * reads through the same handle.
 *
 *   iso_fdlinks ROOT      ROOT holds directories A, B and C, each with a
 *                         file "f" whose content is the letter.
 *
 * Prints one line "STEP LETTER" per check (a read of "f" relative to the
 * fd or cwd under test), "STEP ERR" if it failed. Steps:
 *   dup3       dup3(fd of C, the number of A, O_CLOEXEC)
 *   sibling    a CLONE_FILES thread closes the number the main thread
 *              just used for A and opens B there
 *   cycle      200 rounds of close and reopen at one number, A, B, C in
 *              turn: each read names the round's directory (one line)
 *   renamed    another process renames A to D (the fd follows the
 *              directory) and makes a new A holding "N": the fd still
 *              reads "A", a fresh open of A reads "N"
 *   cwd-moved  the same with the cwd: after the rename a relative open
 *              reads from the moved directory
 *   closed     the number is closed: ERR (EBADF), then reopened on C
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static char letter(int dirfd)
{
	char c = '?';
	int fd = openat(dirfd, "f", O_RDONLY);
	if (fd < 0)
		return 0;
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
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

static int number;

static void *swapper(void *arg)
{
	(void)arg;
	close(number);
	int b = dir("B");
	if (b != number) {
		dup2(b, number);
		close(b);
	}
	return NULL;
}

/* In a child process: rename ROOT/A to ROOT/D, make a new ROOT/A with "N". */
static int move_a(void)
{
	pid_t kid = fork();
	if (kid == 0) {
		char from[4096], to[4096], f[4096];
		snprintf(from, sizeof from, "%s/A", root);
		snprintf(to, sizeof to, "%s/D", root);
		snprintf(f, sizeof f, "%s/A/f", root);
		if (rename(from, to) != 0 || mkdir(from, 0755) != 0)
			_exit(1);
		FILE *w = fopen(f, "w");
		if (!w || fputs("N", w) < 0 || fclose(w) != 0)
			_exit(1);
		_exit(0);
	}
	int st;
	return waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Put the moved tree back as it was: D is A again, the new A is gone. */
static int restore_a(void)
{
	char a[4096], d[4096], f[4096];
	snprintf(a, sizeof a, "%s/A", root);
	snprintf(d, sizeof d, "%s/D", root);
	snprintf(f, sizeof f, "%s/A/f", root);
	return unlink(f) == 0 && rmdir(a) == 0 && rename(d, a) == 0;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	snprintf(root, sizeof root, "%s", argv[1]);

	int a = dir("A");
	say("first", letter(a));
	int c = dir("C");
	if (dup3(c, a, O_CLOEXEC) != a)
		return 3;
	say("dup3", letter(a));
	close(c);
	close(a);

	number = dir("A");
	say("sibling-before", letter(number));
	pthread_t t;
	pthread_create(&t, NULL, swapper, NULL);
	pthread_join(t, NULL);
	say("sibling", letter(number));
	close(number);

	char got[201] = {0}, want[201] = {0};
	int n = dir("A");
	close(n);
	for (int i = 0; i < 200; i++) {
		const char *name = i % 3 == 0 ? "A" : i % 3 == 1 ? "B" : "C";
		int fd = dir(name);
		if (fd != n)
			return 4;
		want[i] = name[0];
		got[i] = letter(fd) ? letter(fd) : '!';
		close(fd);
	}
	say("cycle", strcmp(got, want) == 0 ? 'Y' : 0);

	a = dir("A");
	say("renamed-before", letter(a));
	if (!move_a())
		return 5;
	say("renamed", letter(a));
	int fresh = dir("A");
	say("renamed-fresh", letter(fresh));
	close(fresh);
	close(a);
	if (!restore_a())
		return 6;

	char p[4096];
	snprintf(p, sizeof p, "%s/A", root);
	if (chdir(p) != 0)
		return 7;
	say("cwd-before", letter(AT_FDCWD));
	if (!move_a())
		return 8;
	say("cwd-moved", letter(AT_FDCWD));
	if (chdir(root) != 0 || !restore_a())
		return 9;

	a = dir("A");
	say("closed-before", letter(a));
	close(a);
	say("closed", letter(a));
	c = dir("C");
	say(c == a ? "closed-reopened" : "closed-reopened-other-number", letter(c));
	return 0;
}
