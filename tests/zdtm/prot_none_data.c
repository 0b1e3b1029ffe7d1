/* Data written to a page that was then made PROT_NONE (a sandbox or GC
 * hiding a heap page): after the restore, mprotect back to read-write
 * shows the same data. */
#include "zdtm.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	char *m = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	zdtm_syscall(m != MAP_FAILED, "mmap");
	strcpy(m, "hidden page one");
	strcpy(m + 4096, "hidden page two");
	zdtm_syscall(mprotect(m, 2 * 4096, PROT_NONE) == 0, "mprotect");
	zdtm_checkpoint_here();
	zdtm_syscall(mprotect(m, 2 * 4096, PROT_READ) == 0, "mprotect");
	zdtm_check(strcmp(m, "hidden page one") == 0 && strcmp(m + 4096, "hidden page two") == 0,
		   "the hidden pages hold '%.16s' and '%.16s'", m, m + 4096);
	zdtm_pass();
}
