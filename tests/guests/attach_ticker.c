/* A target for `isotrace attach`: started natively, attached to later.
 *
 * argv[1]: output file; argv[2]: ticks per thread; argv[3]: threads (>= 1).
 * Each thread, every 50 ms, opens the output file (O_APPEND), writes
 * "T I" (thread number, tick) and closes it, so every tick is a trapped
 * openat once attached; between ticks it sleeps in nanosleep, where the
 * attach interrupts it. Exits 7 when every thread is done. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *out;
static int ticks;

static void *ticker(void *arg)
{
	long t = (long)arg;
	for (int i = 1; i <= ticks; i++) {
		int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd < 0) {
			perror("open");
			exit(1);
		}
		char buf[64];
		int len = snprintf(buf, sizeof buf, "%ld %d\n", t, i);
		if (write(fd, buf, len) != len)
			exit(1);
		close(fd);
		struct timespec ts = {0, 50 * 1000 * 1000};
		while (nanosleep(&ts, &ts) != 0)
			;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	out = argv[1];
	ticks = atoi(argv[2]);
	int n = atoi(argv[3]);
	pthread_t th[64];
	for (long t = 1; t < n && t < 64; t++)
		pthread_create(&th[t], NULL, ticker, (void *)t);
	ticker((void *)0);
	for (long t = 1; t < n && t < 64; t++)
		pthread_join(th[t], NULL);
	return 7;
}
