/* A process that forks children right up to the freeze: the newest may
 * still sit in its very first stop, never having run an instruction, when
 * the group is checkpointed. After the restore every child still has the
 * SIGUSR1 handler it inherited (zdtm_init's), so each one woken with
 * SIGUSR1 exits with status 0 instead of being killed by the signal. */
#include "zdtm.h"
#include <sys/mman.h>

#define LIVE 32

struct shared {
	volatile long forked;
	volatile int stop;
};

static int reap_woken(pid_t pid)
{
	zdtm_wake(pid);
	int st;
	pid_t got;
	do
		got = waitpid(pid, &st, 0);
	while (got < 0 && errno == EINTR);
	if (got == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	fprintf(stderr, "child %d: waitpid %d, status %#x\n", pid, got, st);
	return 1;
}

/* Forks until told to stop; exits 0 only if every child woke by its
 * handler. */
static void forker(struct shared *sh)
{
	pid_t kids[LIVE];
	int n = 0, head = 0, bad = 0;
	while (!sh->stop) {
		pid_t c = fork();
		if (c < 0)
			_exit(2);
		if (c == 0) {
			zdtm_wait();
			_exit(0);
		}
		sh->forked++;
		if (n < LIVE) {
			kids[n++] = c;
			continue;
		}
		bad |= reap_woken(kids[head]);
		kids[head] = c;
		head = (head + 1) % LIVE;
	}
	for (int i = 0; i < n; i++)
		bad |= reap_woken(kids[i]);
	_exit(bad);
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	zdtm_syscall(sh != MAP_FAILED, "mmap");
	pid_t f = fork();
	zdtm_syscall(f >= 0, "fork");
	if (f == 0)
		forker(sh);
	while (sh->forked < 2 * LIVE)
		usleep(1000);
	zdtm_checkpoint_here();
	sh->stop = 1;
	zdtm_reap_ok(f, "the forker (every child it forked woke by its handler)");
	zdtm_pass();
}
