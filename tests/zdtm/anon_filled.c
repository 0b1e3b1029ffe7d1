/* Private anonymous memory as a restore fills it (through a userfaultfd
 * of the new process, restore/uffd.rs): 24 MiB where every page but each
 * seventh holds bytes of its own, a read-only region with data, and a
 * stack-like MAP_GROWSDOWN mapping. After the restore every byte is
 * checked; the never-touched pages are still absent (mincore(2)) and read
 * as zeroes; nothing of the userfaultfd is left (no fd of that kind, no
 * range still registered: no "um" flag in /proc/self/smaps); and writes
 * anywhere, holes included, go through at once. */
#include "zdtm.h"
#include <dirent.h>
#include <stdint.h>
#include <sys/mman.h>

#define PAGE 4096UL
#define PAGES (24UL << 8) /* 24 MiB */
#define RO_PAGES 64UL
#define DOWN_PAGES 16UL

static int hole(unsigned long i) { return i % 7 == 3; }

/* Bytes of page `i` of region `r`: a xorshift stream seeded by both. */
static void pattern(uint64_t *w, unsigned long r, unsigned long i)
{
	uint64_t x = (r << 40) ^ (i * 0x9e3779b97f4a7c15ULL) ^ 0x1234567;
	for (unsigned long k = 0; k < PAGE / 8; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[k] = x;
	}
}

static void check_pages(const char *name, char *m, unsigned long r, unsigned long n, int holes)
{
	static uint64_t want[PAGE / 8];
	static unsigned char vec[PAGES];
	zdtm_syscall(mincore(m, n * PAGE, vec) == 0, "mincore");
	for (unsigned long i = 0; i < n; i++) {
		if (holes && hole(i)) {
			zdtm_check(!(vec[i] & 1), "%s: never-touched page %lu is resident", name, i);
			for (unsigned long k = 0; k < PAGE; k++)
				zdtm_check(m[i * PAGE + k] == 0, "%s: hole page %lu byte %lu is %d", name, i, k, m[i * PAGE + k]);
			continue;
		}
		pattern(want, r, i);
		zdtm_check(memcmp(m + i * PAGE, want, PAGE) == 0, "%s: page %lu differs", name, i);
	}
}

static void fill(char *m, unsigned long r, unsigned long n, int holes)
{
	for (unsigned long i = 0; i < n; i++)
		if (!(holes && hole(i)))
			pattern((uint64_t *)(m + i * PAGE), r, i);
}

static void no_uffd_left(void)
{
	DIR *d = opendir("/proc/self/fd");
	zdtm_syscall(d != NULL, "opendir /proc/self/fd");
	struct dirent *e;
	while ((e = readdir(d))) {
		char path[300], link[256];
		snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
		ssize_t n = readlink(path, link, sizeof link - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		zdtm_check(!strstr(link, "userfaultfd"), "fd %s is %s", e->d_name, link);
	}
	closedir(d);
	FILE *f = fopen("/proc/self/smaps", "r");
	zdtm_syscall(f != NULL, "fopen smaps");
	char line[512];
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "VmFlags:", 8))
			zdtm_check(!strstr(line, " um") && !strstr(line, " uw"), "a range is still registered: %s", line);
	fclose(f);
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int rw = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;
	char *m = mmap(NULL, PAGES * PAGE, rw, flags, -1, 0);
	char *ro = mmap(NULL, RO_PAGES * PAGE, rw, flags, -1, 0);
	char *down = mmap(NULL, DOWN_PAGES * PAGE, rw, flags | MAP_GROWSDOWN, -1, 0);
	zdtm_syscall(m != MAP_FAILED && ro != MAP_FAILED && down != MAP_FAILED, "mmap");
	fill(m, 1, PAGES, 1);
	fill(ro, 2, RO_PAGES, 0);
	fill(down, 3, DOWN_PAGES, 0);
	zdtm_syscall(mprotect(ro, RO_PAGES * PAGE, PROT_READ) == 0, "mprotect");
	zdtm_checkpoint_here();
	/* First: a hole read while a range is still registered would wait
	 * for a fault nobody serves. */
	no_uffd_left();
	check_pages("main", m, 1, PAGES, 1);
	check_pages("read-only", ro, 2, RO_PAGES, 0);
	check_pages("growsdown", down, 3, DOWN_PAGES, 0);
	/* A write to a hole and to a filled page: they must not wait on a
	 * userfaultfd nobody reads. */
	m[3 * PAGE] = 7;
	m[4 * PAGE + 5] ^= 1;
	zdtm_check(m[3 * PAGE] == 7, "write to a hole lost");
	zdtm_pass();
}
