/* A process that creates and joins threads right up to the freeze: the
 * newest may not have run yet when the group is checkpointed. After the
 * restore every thread runs on its own stack with its own argument and
 * still has the clear_child_tid that pthread_create gave it
 * (CLONE_CHILD_CLEARTID), so pthread_join returns its value once it ends. */
#include "zdtm.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#define LIVE 16

struct shared {
	volatile long created;
	volatile int stop;
};

static atomic_int release_all;

static void *worker(void *arg)
{
	long want = (long)arg;
	volatile long mine = want;
	while (!atomic_load(&release_all))
		usleep(200);
	return (void *)(mine == want ? want : -1);
}

static int join_ok(pthread_t t, long want)
{
	void *got;
	if (pthread_join(t, &got) != 0)
		return 1;
	return (long)got != want;
}

/* Creates and joins threads until told to stop; exits 0 only if every
 * join returned the thread's own value. */
static void creator(struct shared *sh)
{
	pthread_t ts[LIVE];
	long ids[LIVE];
	int n = 0, bad = 0;
	long next = 1;
	while (!sh->stop) {
		if (n == LIVE) {
			/* Let the current batch end, join them, start again. */
			atomic_store(&release_all, 1);
			for (int i = 0; i < n; i++)
				bad |= join_ok(ts[i], ids[i]);
			atomic_store(&release_all, 0);
			n = 0;
		}
		ids[n] = next++;
		if (pthread_create(&ts[n], NULL, worker, (void *)ids[n]) != 0)
			_exit(2);
		n++;
		sh->created++;
	}
	atomic_store(&release_all, 1);
	for (int i = 0; i < n; i++)
		bad |= join_ok(ts[i], ids[i]);
	_exit(bad);
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	zdtm_syscall(sh != MAP_FAILED, "mmap");
	pid_t c = fork();
	zdtm_syscall(c >= 0, "fork");
	if (c == 0)
		creator(sh);
	while (sh->created < 4 * LIVE)
		usleep(1000);
	zdtm_checkpoint_here();
	sh->stop = 1;
	zdtm_reap_ok(c, "the thread creator (every thread joined with its own value)");
	zdtm_pass();
}
