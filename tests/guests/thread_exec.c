/* A non-leader thread calls execve(2). The kernel makes the exec'ing thread
 * the new thread-group leader: it takes over the leader's pid, every other
 * thread (including the old leader) is destroyed, and the tid of the caller
 * disappears. The new image checks it kept the original pid. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

static char *self;

static void *exec_thread(void *arg)
{
	char pid[32];
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	printf("thread tid differs from pid: %d\n", (pid_t)syscall(SYS_gettid) != getpid());
	fflush(stdout);
	char *argv[] = { self, "child", pid, NULL };
	execv(self, argv);
	perror("execv");
	exit(2);
}

static void *idle_thread(void *arg)
{
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "child") == 0) {
		int same_pid = getpid() == atoi(argv[2]);
		int leader = (pid_t)syscall(SYS_gettid) == getpid();
		printf("new image: pid preserved=%d leader=%d\n", same_pid, leader);
		return 0;
	}
	self = argv[0];
	pthread_t t;
	/* A few idle threads that the exec must tear down. */
	for (int i = 0; i < 4; i++)
		pthread_create(&t, NULL, idle_thread, NULL);
	pthread_create(&t, NULL, exec_thread, NULL);
	for (;;)
		pause();
}
