/* A tree of processes three levels deep with sessions and process
 * groups: child A leads a new session, A's child A1 leads its own group
 * in A's session and A1's child A1a is in A1's group; child B leads a
 * group in the root's session and B's child B1 joins it. After the
 * restore every process checks its pid, parent, group and session
 * against what it saw before; each reports through its exit status. */
#include "zdtm.h"

struct ids {
	pid_t pid, ppid, pgid, sid;
};

static struct ids now(void)
{
	return (struct ids){getpid(), getppid(), getpgid(0), getsid(0)};
}

static int same(struct ids a)
{
	struct ids b = now();
	return a.pid == b.pid && a.ppid == b.ppid && a.pgid == b.pgid && a.sid == b.sid;
}

/* Runs a leaf or inner node: fork the children, wait for the wake-up
 * (each process gets SIGUSR1 from its parent), check, reap. */
static int node(int depth, int kind);

static pid_t spawn(int depth, int kind, int *pipe_w)
{
	pid_t kid = fork();
	if (kid == 0) {
		if (kind == 'A')
			setsid();
		else if (kind == '1' || kind == 'B')
			setpgid(0, 0);
		/* A1a and B1 stay in their parent's group. */
		(void)pipe_w;
		_exit(node(depth + 1, kind));
	}
	return kid;
}

static int ready_fd;

static int node(int depth, int kind)
{
	pid_t kids[2] = {0, 0};
	int n = 0;
	if (kind == 'A')
		kids[n++] = spawn(depth, '1', NULL);
	else if (kind == '1')
		kids[n++] = spawn(depth, 'a', NULL);
	else if (kind == 'B')
		kids[n++] = spawn(depth, 'b', NULL);
	struct ids before = now();
	if (write(ready_fd, "x", 1) != 1)
		return 10;
	zdtm_wait();
	if (!same(before))
		return 11;
	for (int i = 0; i < n; i++) {
		zdtm_wake(kids[i]);
		int st;
		if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st))
			return 12 + i;
	}
	return 0;
}

/* The tree under its top process, which leads its own session, so that
 * every session and group of the test is inside the image (one led from
 * outside reads as 0 after a restore in a new pid namespace). */
static int top(int up)
{
	int p[2];
	if (pipe(p) != 0)
		return 20;
	ready_fd = p[1];
	pid_t a = spawn(0, 'A', NULL);
	pid_t b = spawn(0, 'B', NULL);
	/* Five descendants each write one byte once their ids are set. */
	char buf[5];
	for (int got = 0; got < 5;) {
		ssize_t n = read(p[0], buf, 5 - got);
		if (n <= 0)
			return 21;
		got += n;
	}
	struct ids me = now();
	if (write(up, "x", 1) != 1)
		return 22;
	zdtm_wait();
	if (!same(me))
		return 23;
	pid_t kids[2] = {a, b};
	for (int i = 0; i < 2; i++) {
		zdtm_wake(kids[i]);
		int st;
		if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st))
			return 24 + i;
	}
	return 0;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int up[2];
	zdtm_syscall(pipe(up) == 0, "pipe");
	pid_t t = fork();
	if (t == 0) {
		if (setsid() < 0)
			_exit(30);
		_exit(top(up[1]));
	}
	char x;
	zdtm_syscall(read(up[0], &x, 1) == 1, "the tree did not get ready");
	zdtm_checkpoint_here();
	zdtm_wake(t);
	int st;
	zdtm_syscall(waitpid(t, &st, 0) == t, "waitpid");
	zdtm_check(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		   "the tree failed: status %d (10s: a node was not ready, 11: its ids changed, "
		   "12+: its child failed, 2x: the top)",
		   WEXITSTATUS(st));
	zdtm_pass();
}
