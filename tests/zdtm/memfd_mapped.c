/* A memfd the process maps MAP_SHARED and also reads through its fd:
 * after the restore the mapping and the fd are one object again (a
 * write through the mapping shows through the fd at its offset, and
 * its seals and size hold). */
#include "zdtm.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int m = memfd_create("zdtm", MFD_CLOEXEC);
	zdtm_syscall(m >= 0 && ftruncate(m, 8192) == 0, "memfd");
	char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
	zdtm_syscall(p != MAP_FAILED, "mmap");
	strcpy(p + 4096, "before");
	zdtm_syscall(lseek(m, 4096, SEEK_SET) == 4096, "lseek");
	zdtm_checkpoint_here();
	strcpy(p + 4096 + 6, " after");
	char buf[16] = {0};
	zdtm_check(read(m, buf, 12) == 12 && strcmp(buf, "before after") == 0, "fd read '%s'", buf);
	struct stat st;
	zdtm_check(fstat(m, &st) == 0 && st.st_size == 8192, "size %ld", (long)st.st_size);
	zdtm_pass();
}
