/* The main thread calls pthread_exit while a worker keeps the process
 * alive: the leader stays a zombie in /proc/PID/task, which never reports a
 * ptrace stop. A snapshot must skip it, not hang on it.
 * argv[1]: a directory; the worker writes DIR/pid, then sleeps. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static const char *dir;

static void *worker(void *arg)
{
	char path[4096], tmp[4096];
	(void)arg;
	usleep(50000); /* let the leader exit first */
	snprintf(tmp, sizeof tmp, "%s/pid.tmp", dir);
	snprintf(path, sizeof path, "%s/pid", dir);
	FILE *f = fopen(tmp, "w");
	fprintf(f, "%d\n", getpid());
	fclose(f);
	rename(tmp, path);
	sleep(60);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t th;
	if (argc < 2)
		return 2;
	dir = argv[1];
	pthread_create(&th, NULL, worker, NULL);
	pthread_exit(NULL);
}
