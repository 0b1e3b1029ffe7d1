/* exit_group(2) while many threads are blocked in different syscalls: the
 * kernel kills every thread; the status must be the exit_group code. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

static int pipefd[2];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int ready;

static void *blocker(void *arg)
{
	long kind = (long)arg;
	pthread_mutex_lock(&lock);
	ready++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	char c;
	switch (kind % 3) {
	case 0:
		read(pipefd[0], &c, 1); /* never written */
		break;
	case 1:
		sleep(300);
		break;
	default:
		pause();
	}
	return NULL;
}

int main(void)
{
	enum { N = 64 };
	if (pipe(pipefd) != 0)
		return 1;
	pthread_t t;
	for (long i = 0; i < N; i++)
		pthread_create(&t, NULL, blocker, (void *)i);
	pthread_mutex_lock(&lock);
	while (ready < N)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	printf("all %d threads started\n", N);
	fflush(stdout);
	/* Blocked or about to block: either way they must all die now. */
	syscall(SYS_exit_group, 5);
	return 1;
}
