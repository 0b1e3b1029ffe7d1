/* A guest for post-copy (issue #6): it keeps doing, every tick, what a
 * post-copy restore must survive while pages are still missing.
 *
 * argv: OUT PIDFILE MIB [nofork]
 * Maps MIB MiB of anonymous memory and fills every page: every word is a
 * hash of (page, generation, word); gen[] (malloc'd, itself migrated)
 * holds each page's generation. Every 10 ms tick it:
 *  - checks every word of the next 256 pages (a sweep over the whole
 *    buffer, counted in "sweeps");
 *  - rewrites one page below the top 2 MiB;
 *  - read(2)s a new version of one page of the top 6..2 MiB from a pipe
 *    straight into the buffer (a kernel-mode fault when that page is
 *    still missing: it must be served, not fail with EFAULT);
 *  - on one 16-page chunk of the top 2 MiB, in turn: madvise(MADV_
 *    DONTNEED) (must read zero after), mremap away and back (contents
 *    must move with it), munmap + mmap MAP_FIXED (must read zero after);
 *    each is refilled with a new generation;
 *  - every 8 ticks forks a child that checks the top 6 MiB and the
 *    chunks, writes one page and checks it, and exits 0, or 1 on a bad
 *    page; the parent waits for it (not with "nofork": a checkpoint
 *    that catches a child restores it under a new pid, and the parent's
 *    waitpid of the old one fails).
 * Every tick it writes "ok N sweeps S forks F" (or "BAD ..." and exits) to
 * OUT through one fd. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "pidfile.h"

#define PAGE 4096
#define WORDS (PAGE / 8)
#define TOP 512		/* pages of the chunk area (2 MiB) */
#define CHUNK 16	/* pages per chunk */
#define PIPE_AREA 1024	/* pages below the chunk area read through a pipe */

static uint64_t *mem, *gen;
static size_t pages;
static int out;

static uint64_t mix(uint64_t p, uint64_t g, uint64_t w)
{
	uint64_t x = p * 0x9e3779b97f4a7c15ull ^ g * 0xbf58476d1ce4e5b9ull ^ w;
	x ^= x >> 31;
	return x * 0x94d049bb133111ebull;
}

static void fill(uint64_t *page, uint64_t p, uint64_t g)
{
	for (int w = 0; w < WORDS; w++)
		page[w] = mix(p, g, w);
}

static int ok(const uint64_t *page, uint64_t p, uint64_t g)
{
	for (int w = 0; w < WORDS; w++)
		if (page[w] != mix(p, g, w))
			return 0;
	return 1;
}

static int zero(const uint64_t *page)
{
	for (int w = 0; w < WORDS; w++)
		if (page[w])
			return 0;
	return 1;
}

static void bad(unsigned long tick, const char *what, size_t p)
{
	char line[160];
	int n = snprintf(line, sizeof line, "BAD %lu %s page %zu errno %d\n",
			 tick, what, p, errno);
	write(out, line, n);
	_exit(1);
}

static uint64_t *at(size_t p)
{
	return mem + p * WORDS;
}

static void refill(size_t first, size_t n)
{
	for (size_t p = first; p < first + n; p++)
		fill(at(p), p, ++gen[p]);
}

/* One chunk of the top area, by turns. */
static void chunk_op(unsigned long tick)
{
	size_t c = tick % (TOP / CHUNK), first = pages - TOP + c * CHUNK;
	size_t len = CHUNK * PAGE;
	uint64_t *base = at(first);
	switch (tick % 3) {
	case 0:
		if (madvise(base, len, MADV_DONTNEED))
			bad(tick, "madvise", first);
		for (size_t i = 0; i < CHUNK; i++)
			if (!zero(at(first + i)))
				bad(tick, "not zero after MADV_DONTNEED", first + i);
		break;
	case 1: {
		/* A same-size mremap without MREMAP_FIXED stays in place. */
		void *hole = mmap(NULL, len, PROT_NONE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint64_t *away = mremap(base, len, len,
					MREMAP_MAYMOVE | MREMAP_FIXED, hole);
		if (hole == MAP_FAILED || away != hole)
			bad(tick, "mremap", first);
		for (size_t i = 0; i < CHUNK; i++)
			if (!ok(away + i * WORDS, first + i, gen[first + i]))
				bad(tick, "moved by mremap", first + i);
		if (mremap(away, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, base) != base)
			bad(tick, "mremap back", first);
		for (size_t i = 0; i < CHUNK; i++)
			if (!ok(at(first + i), first + i, gen[first + i]))
				bad(tick, "moved back by mremap", first + i);
		return;
	}
	default:
		if (munmap(base, len) ||
		    mmap(base, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != base)
			bad(tick, "munmap+mmap", first);
		for (size_t i = 0; i < CHUNK; i++)
			if (!zero(at(first + i)))
				bad(tick, "not zero after munmap+mmap", first + i);
	}
	refill(first, CHUNK);
}

static void child(unsigned long tick)
{
	size_t from = pages - TOP - PIPE_AREA - 512;
	for (size_t p = from; p < pages; p++)
		if (!ok(at(p), p, gen[p]))
			bad(tick, "in a forked child", p);
	size_t p = pages - 1 - tick % TOP;
	fill(at(p), p, gen[p] + 1000);
	if (!ok(at(p), p, gen[p] + 1000))
		bad(tick, "written in a forked child", p);
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	int forking = !(argc > 4 && !strcmp(argv[4], "nofork"));
	pages = (size_t)strtoul(argv[3], NULL, 10) * 256;
	if (pages < 4 * (TOP + PIPE_AREA))
		return 2;
	out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gen = calloc(pages, sizeof *gen);
	int pfd[2];
	if (out < 0 || mem == MAP_FAILED || !gen || pipe(pfd))
		return 3;
	refill(0, pages);

	if (write_pid_file(argv[2]) != 0)
		return 4;

	static uint64_t piped[WORDS];
	size_t check = 0;
	unsigned long sweeps = 0, forks = 0;
	for (unsigned long tick = 1;; tick++) {
		for (int i = 0; i < 256; i++) {
			if (!ok(at(check), check, gen[check]))
				bad(tick, "sweep", check);
			if (++check == pages) {
				check = 0;
				sweeps++;
			}
		}
		size_t q = (tick * 7919) % (pages - TOP);
		refill(q, 1);

		size_t r = pages - TOP - 1 - (tick * 31) % PIPE_AREA;
		fill(piped, r, gen[r] + 1);
		if (write(pfd[1], piped, PAGE) != PAGE)
			bad(tick, "pipe write", r);
		if (read(pfd[0], at(r), PAGE) != PAGE)
			bad(tick, "pipe read into the buffer", r);
		gen[r]++;
		if (!ok(at(r), r, gen[r]))
			bad(tick, "read from the pipe", r);

		chunk_op(tick);

		if (forking && tick % 8 == 0) {
			pid_t pid = fork();
			if (pid < 0)
				bad(tick, "fork", 0);
			if (pid == 0)
				child(tick);
			int status;
			if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
			    WEXITSTATUS(status) != 0)
				bad(tick, "the forked child failed", 0);
			forks++;
		}
		char line[96];
		int n = snprintf(line, sizeof line, "ok %lu sweeps %lu forks %lu\n",
				 tick, sweeps, forks);
		if (write(out, line, n) != n)
			return 5;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}
