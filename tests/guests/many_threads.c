/* N threads each doing open/fstat/stat/read/close of a file, joined; the
 * main thread prints a deterministic total. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>

#define ROUNDS 20
static const char *path = "/etc/hostname";

static void *worker(void *arg)
{
	long bytes = 0;
	for (int i = 0; i < ROUNDS; i++) {
		struct stat st;
		if (stat(path, &st) != 0)
			return (void *)-1L;
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return (void *)-1L;
		if (fstat(fd, &st) != 0)
			return (void *)-1L;
		char buf[4096];
		ssize_t n;
		while ((n = read(fd, buf, sizeof buf)) > 0)
			bytes += n;
		close(fd);
	}
	return (void *)bytes;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 256;
	pthread_t *t = calloc(n, sizeof *t);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (int i = 0; i < n; i++)
		if (pthread_create(&t[i], &attr, worker, NULL) != 0) {
			perror("pthread_create");
			return 1;
		}
	long total = 0, failed = 0;
	for (int i = 0; i < n; i++) {
		void *ret;
		pthread_join(t[i], &ret);
		if ((long)ret < 0)
			failed++;
		else
			total += (long)ret;
	}
	struct stat st;
	stat(path, &st);
	printf("threads=%d failed=%ld total=%ld expected=%ld\n", n, failed, total,
	       (long)n * ROUNDS * st.st_size);
	return failed != 0;
}
