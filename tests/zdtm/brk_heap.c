/* The heap grown with sbrk(2) by 1 MiB and filled, plus malloc'd blocks
 * of many sizes: after the restore the break is where it was, the data
 * is intact, and the heap can grow and be freed further. */
#include "zdtm.h"
#include <stdint.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	char *blocks[64];
	for (int i = 0; i < 64; i++) {
		blocks[i] = malloc(16 << (i % 12));
		zdtm_syscall(blocks[i] != NULL, "malloc");
		memset(blocks[i], i, 16 << (i % 12));
	}
	char *base = sbrk(1 << 20);
	zdtm_syscall(base != (void *)-1, "sbrk");
	for (int i = 0; i < (1 << 20); i++)
		base[i] = (char)(i * 13);
	void *end = sbrk(0);
	zdtm_checkpoint_here();
	zdtm_check(sbrk(0) == end, "the break moved from %p to %p", end, sbrk(0));
	for (int i = 0; i < (1 << 20); i++)
		zdtm_check(base[i] == (char)(i * 13), "sbrk byte %d", i);
	for (int i = 0; i < 64; i++) {
		for (int j = 0; j < (16 << (i % 12)); j++)
			zdtm_check(blocks[i][j] == (char)i, "malloc block %d byte %d", i, j);
		free(blocks[i]);
	}
	zdtm_syscall(sbrk(4096) != (void *)-1, "sbrk after the restore");
	zdtm_pass();
}
