/* A process whose memory changes all the time in a known order, for the
 * consistency of snapshots taken while it runs (tests/snapshot_uffd.rs).
 *
 * argv[1]: a directory; argv[2]: N, pages in the region; argv[3],
 * optional, what a second thread does meanwhile:
 *   "dontneed": madvise(MADV_DONTNEED)s and refills a 1 MiB region
 *               (mapped before the main one, so above it) every 200 us;
 *   "munmap":   munmaps and maps again that region every 200 us;
 *   "fork":     forks a child that writes the main region and exits,
 *               every 2 ms;
 *   "thp":      (no thread) the main region is 2 MiB-aligned and
 *               MADV_HUGEPAGE (transparent huge pages where enabled);
 *   "uffd":     (no thread) registers that region with a userfaultfd of
 *               its own (missing mode, user-mode faults only), as a
 *               process using userfaultfd itself would.
 *
 * A writer thread rewrites the N pages in order with a generation number:
 * page i gets g (in its first and last 8 bytes) for i = 0..N-1, then g+1
 * on every page, and so on. At any instant the pages hold g on a prefix
 * and g-1 on the rest: a consistent image of the region has at most one
 * place where the generation drops, by exactly one.
 *
 * With "exec" (no thread), DIR/exec makes it exec sleep(1) for 30 s.
 *
 * DIR/region gets "addr=0x.. pages=N" and DIR/pid the pid once the first
 * pass is done. DIR/exit stops the writer; the process then checks the
 * region itself (one boundary), prints "gen G" and exits 0 (1 if torn). */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIDE (1 << 20)

static uint64_t *region;
static size_t pages, words;
static volatile int stop, first_pass;
static unsigned char *side;

static void *writer(void *arg)
{
	(void)arg;
	for (uint64_t g = 1; !stop; g++) {
		for (size_t i = 0; i < pages; i++) {
			region[i * words] = g;
			region[i * words + words - 1] = g;
		}
		first_pass = 1;
	}
	return NULL;
}

static void pause_us(long us)
{
	struct timespec d = {0, us * 1000};
	nanosleep(&d, NULL);
}

static void own_userfaultfd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg = {
		.range = {(unsigned long)side, SIDE},
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (fd < 0 || ioctl(fd, UFFDIO_API, &api) || ioctl(fd, UFFDIO_REGISTER, &reg))
		exit(9);
}

static void *churn(void *arg)
{
	const char *mode = arg;
	while (!stop) {
		if (strcmp(mode, "dontneed") == 0) {
			madvise(side, SIDE, MADV_DONTNEED);
			memset(side, 0x5a, SIDE);
			pause_us(200);
		} else if (strcmp(mode, "munmap") == 0) {
			munmap(side, SIDE);
			side = mmap(side, SIDE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (side == MAP_FAILED)
				exit(8);
			memset(side, 0x5a, SIDE);
			pause_us(200);
		} else if (strcmp(mode, "fork") == 0) {
			pid_t child = fork();
			if (child == 0) {
				for (size_t i = 0; i < pages; i++)
					region[i * words + 1] = 0xc0ffee;
				_exit(0);
			}
			if (child > 0)
				waitpid(child, NULL, 0);
			pause_us(2000);
		}
	}
	return NULL;
}

/* Places where the generation drops going up the region: 0 or 1 for a
 * consistent region (and each by exactly one). */
static int boundaries(void)
{
	int n = 0;
	for (size_t i = 1; i < pages; i++) {
		uint64_t a = region[(i - 1) * words], b = region[i * words];
		if (region[i * words + words - 1] != b || a < b || a - b > 1)
			return 99;
		n += a != b;
	}
	return n;
}

int main(int argc, char **argv)
{
	char path[4096], text[128];
	pthread_t w, c;
	if (argc < 3)
		return 2;
	pages = (size_t)atol(argv[2]);
	long page = sysconf(_SC_PAGESIZE);
	words = page / sizeof(uint64_t);
	const char *mode = argc > 3 ? argv[3] : "";
	side = mmap(NULL, SIDE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	size_t huge = 2 << 20, extra = strcmp(mode, "thp") == 0 ? huge : 0;
	region = mmap(NULL, pages * page + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (side == MAP_FAILED || region == MAP_FAILED)
		return 3;
	if (extra) {
		region = (uint64_t *)(((uintptr_t)region + huge - 1) & ~(uintptr_t)(huge - 1));
		madvise(region, pages * page, MADV_HUGEPAGE);
	}
	memset(side, 0x5a, SIDE);
	pthread_create(&w, NULL, writer, NULL);
	while (!first_pass)
		usleep(1000);
	int churning = strcmp(mode, "dontneed") == 0 || strcmp(mode, "munmap") == 0 ||
		       strcmp(mode, "fork") == 0;
	if (strcmp(mode, "uffd") == 0)
		own_userfaultfd();
	if (churning)
		pthread_create(&c, NULL, churn, (void *)mode);
	snprintf(path, sizeof path, "%s/region", argv[1]);
	FILE *f = fopen(path, "w");
	if (!f)
		return 4;
	fprintf(f, "addr=%p pages=%zu\n", (void *)region, pages);
	fclose(f);
	snprintf(path, sizeof path, "%s/pid.tmp", argv[1]);
	f = fopen(path, "w");
	if (!f)
		return 4;
	fprintf(f, "%d\n", getpid());
	fclose(f);
	snprintf(text, sizeof text, "%s/pid", argv[1]);
	rename(path, text);
	char exec_path[4096];
	snprintf(exec_path, sizeof exec_path, "%s/exec", argv[1]);
	snprintf(path, sizeof path, "%s/exit", argv[1]);
	while (access(path, F_OK) != 0) {
		if (access(exec_path, F_OK) == 0)
			execlp("sleep", "sleep", "30", (char *)NULL);
		usleep(2000);
	}
	stop = 1;
	pthread_join(w, NULL);
	if (churning)
		pthread_join(c, NULL);
	int n = boundaries();
	printf("gen %llu boundaries %d\n", (unsigned long long)region[0], n);
	return n <= 1 ? 0 : 1;
}
