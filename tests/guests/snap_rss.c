/* A process of a chosen resident size that measures its own pauses, for
 * the snapshot benchmark (benches/snapshot.sh) and tests.
 *
 * argv[1]: a directory; argv[2]: MiB to allocate and touch (a known byte
 * pattern: page N's first byte is N & 0xff); argv[3], optional: "seccomp"
 * installs an allow-everything seccomp filter first; "fault" makes the
 * stamper also mmap, touch and munmap 64 KiB and touch one page never
 * touched before (of a 256 MiB reserve) at every stamp, so that it waits
 * whenever the process's mmap lock is held or a new page's fault is slow.
 *
 * It also maps two 64 KiB regions filled with 0xdf and 0xbf, the first
 * MADV_DONTFORK and the second MADV_WIPEONFORK, and writes their
 * addresses to DIR/regions as "dontfork=0x.. wipeonfork=0x..".
 *
 * A stamper thread reads CLOCK_MONOTONIC every 100 us and keeps the
 * largest gap between two reads: a snapshot that stops the process shows
 * up as a gap. The main thread writes DIR/pid once the memory is touched
 * and the stamper runs,
 * then polls DIR every 2 ms:
 *   DIR/reset  -> forget the largest gap so far (the file is removed);
 *   DIR/report -> write the largest gap in microseconds to DIR/gap (via
 *                 rename) and remove DIR/report;
 *   DIR/exit   -> exit 0. */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>
#include "put.h"

static volatile int64_t max_gap_ns;
static volatile int reset_gap;
static volatile int stamping;
static int faulting;
static unsigned char *reserve;
static size_t reserve_at;

#define RESERVE ((size_t)256 << 20)

/* One stamp's worth of memory-management work ("fault"). */
static void fault_some(void)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned char *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		exit(8);
	for (size_t i = 0; i < 65536; i += page)
		p[i] = 1;
	munmap(p, 65536);
	if (reserve_at < RESERVE) {
		reserve[reserve_at] = 1;
		reserve_at += page;
	}
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *stamper(void *arg)
{
	(void)arg;
	int64_t last = now_ns();
	stamping = 1;
	for (;;) {
		struct timespec d = {0, 100000};
		nanosleep(&d, NULL);
		if (faulting)
			fault_some();
		int64_t t = now_ns();
		if (reset_gap) {
			reset_gap = 0;
			max_gap_ns = 0;
		} else if (t - last > max_gap_ns) {
			max_gap_ns = t - last;
		}
		last = t;
	}
	return NULL;
}

static int take(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return unlink(path) == 0;
}

static void allow_all_filter(void)
{
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = {1, &allow};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		exit(6);
}

static void *region(int advice, int fill)
{
	void *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED || madvise(p, 65536, advice))
		exit(7);
	memset(p, fill, 65536);
	return p;
}

int main(int argc, char **argv)
{
	pthread_t th;
	char text[128];
	if (argc < 3)
		return 2;
	if (argc > 3 && strcmp(argv[3], "seccomp") == 0)
		allow_all_filter();
	if (argc > 3 && strcmp(argv[3], "fault") == 0) {
		faulting = 1;
		reserve = mmap(NULL, RESERVE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (reserve == MAP_FAILED)
			return 8;
	}
	void *dontfork = region(MADV_DONTFORK, 0xdf), *wipe = region(MADV_WIPEONFORK, 0xbf);
	snprintf(text, sizeof text, "dontfork=%p wipeonfork=%p\n", dontfork, wipe);
	put(argv[1], "regions", text);
	size_t len = (size_t)atol(argv[2]) << 20;
	long page = sysconf(_SC_PAGESIZE);
	unsigned char *mem = malloc(len ? len : 1);
	if (!mem)
		return 4;
	for (size_t i = 0; i < len; i += page)
		memset(mem + i, (int)((i / page) & 0xff), page);
	pthread_create(&th, NULL, stamper, NULL);
	/* DIR/pid means both threads run (the stamper has set itself up). */
	while (!stamping)
		usleep(1000);
	snprintf(text, sizeof text, "%d\n", getpid());
	put(argv[1], "pid", text);
	for (;;) {
		struct timespec d = {0, 2000000};
		nanosleep(&d, NULL);
		if (take(argv[1], "reset"))
			reset_gap = 1;
		if (take(argv[1], "report")) {
			snprintf(text, sizeof text, "%lld\n", (long long)(max_gap_ns / 1000));
			put(argv[1], "gap", text);
		}
		if (take(argv[1], "exit"))
			return mem[page] == 1 ? 0 : 5;
	}
}
