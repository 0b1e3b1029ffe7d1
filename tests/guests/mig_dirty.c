/* A writer that dirties memory at a set rate, for pre-copy tests and
 * benches (issue #6).
 *
 * argv: OUT PIDFILE MIB PAGES_PER_SEC [remap]
 * Maps MIB MiB of anonymous memory and fills every page: its first word
 * is the page's generation, every other word a hash of (page, generation);
 * gen[] (a separate array) holds what each page's generation must be.
 * Every 10 ms it rewrites PAGES_PER_SEC/100 pages (round robin, a new
 * generation each) and checks a slice of all pages against gen[]; every
 * 100 ms it writes "ok N" (or "BAD N page P") to OUT through one fd. A
 * stale or torn page after a migration is therefore caught.
 * With "remap", a separate 1 MiB mapping is also unmapped and mapped again
 * at the same address (MAP_FIXED) every 200 ms, refilled with a new
 * generation and checked whole every tick: a mapping replaced in place. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "pidfile.h"

#define PAGE 4096
#define WORDS (PAGE / 8)

static uint64_t mix(uint64_t p, uint64_t g, uint64_t w)
{
	uint64_t x = p * 0x9e3779b97f4a7c15ull ^ g * 0xbf58476d1ce4e5b9ull ^ w;
	x ^= x >> 31;
	return x * 0x94d049bb133111ebull;
}

static void fill(uint64_t *page, uint64_t p, uint64_t g)
{
	page[0] = g;
	for (int w = 1; w < WORDS; w++)
		page[w] = mix(p, g, w);
}

static int ok(const uint64_t *page, uint64_t p, uint64_t g)
{
	if (page[0] != g)
		return 0;
	for (int w = 1; w < WORDS; w += 61)
		if (page[w] != mix(p, g, w))
			return 0;
	return page[WORDS - 1] == mix(p, g, WORDS - 1);
}

int main(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	size_t pages = (size_t)strtoul(argv[3], NULL, 10) * 256;
	size_t rate = strtoul(argv[4], NULL, 10) / 100;
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	uint64_t *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t *gen = calloc(pages, sizeof *gen);
	if (fd < 0 || mem == MAP_FAILED || !gen)
		return 3;
	for (size_t p = 0; p < pages; p++)
		fill(mem + p * WORDS, p, 0);

	if (write_pid_file(argv[2]) != 0)
		return 4;

	int remap = argc > 5 && argv[5][0] == 'r';
	uint64_t *extra = mmap(NULL, 256 * PAGE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t xgen = 1;
	if (extra == MAP_FAILED)
		return 3;
	for (size_t p = 0; p < 256; p++)
		fill(extra + p * WORDS, p + pages, xgen);
	size_t next = 0, check = 0, slice = pages / 50 + 1;
	unsigned long line = 0;
	for (unsigned long tick = 1;; tick++) {
		for (size_t i = 0; i < rate; i++, next = (next + 1) % pages)
			fill(mem + next * WORDS, next, ++gen[next]);
		long bad = -1;
		if (remap && tick % 20 == 0) {
			munmap(extra, 256 * PAGE);
			if (mmap(extra, 256 * PAGE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != extra)
				return 6;
			xgen++;
			for (size_t p = 0; p < 256; p++)
				fill(extra + p * WORDS, p + pages, xgen);
		}
		for (size_t p = 0; p < 256; p++)
			if (bad < 0 && !ok(extra + p * WORDS, p + pages, xgen))
				bad = (long)(p + pages);
		for (size_t i = 0; i < slice; i++, check = (check + 1) % pages)
			if (bad < 0 && !ok(mem + check * WORDS, check, gen[check]))
				bad = (long)check;
		if (tick % 10 == 0 || bad >= 0) {
			char buf[128];
			int n = bad < 0 ? snprintf(buf, sizeof buf, "ok %lu\n", ++line)
					: snprintf(buf, sizeof buf, "BAD %lu page %ld\n", ++line, bad);
			if (write(fd, buf, n) != n)
				return 5;
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}
