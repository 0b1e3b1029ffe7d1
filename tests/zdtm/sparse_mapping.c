/* A 4 GiB MAP_NORESERVE anonymous mapping with only 8 pages touched, far
 * apart: after the restore those pages hold their data, the mapping has
 * its size, and the untouched pages are still absent (mincore(2)), so
 * the restore neither stored nor touched them. */
#include "zdtm.h"
#include <stdint.h>
#include <sys/mman.h>

#define SIZE (4ULL << 30)
#define PAGE 4096ULL

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	char *m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	zdtm_syscall(m != MAP_FAILED, "mmap");
	for (int i = 0; i < 8; i++)
		snprintf(m + (uint64_t)i * (SIZE / 8) + 123, 32, "page %d", i);
	zdtm_checkpoint_here();
	for (int i = 0; i < 8; i++) {
		char want[32];
		snprintf(want, sizeof want, "page %d", i);
		zdtm_check(strcmp(m + (uint64_t)i * (SIZE / 8) + 123, want) == 0, "touched page %d lost", i);
	}
	/* 1 MiB windows around two touched pages and one never touched. */
	static unsigned char vec[256];
	uint64_t probes[] = {SIZE / 8, SIZE / 2 + PAGE, SIZE - 256 * PAGE};
	for (int p = 0; p < 3; p++) {
		zdtm_syscall(mincore(m + probes[p], 256 * PAGE, vec) == 0, "mincore");
		int resident = 0;
		for (int i = 0; i < 256; i++)
			resident += vec[i] & 1;
		int want = p == 0 ? 1 : 0;
		zdtm_check(resident == want, "window %d: %d resident pages, want %d", p, resident, want);
	}
	FILE *maps = fopen("/proc/self/maps", "r");
	char line[512];
	int found = 0;
	while (fgets(line, sizeof line, maps)) {
		unsigned long a, b;
		if (sscanf(line, "%lx-%lx", &a, &b) == 2 && a <= (unsigned long)m && b >= (unsigned long)m + SIZE)
			found = 1;
	}
	zdtm_check(found, "the 4 GiB mapping is not whole");
	zdtm_pass();
}
