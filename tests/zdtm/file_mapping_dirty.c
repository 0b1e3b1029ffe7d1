/* A MAP_PRIVATE mapping of a file, one page of which the process
 * changed (a private copy) and one not: after the restore the changed
 * page has the process's bytes, the other the file's, and the file on
 * disk was never changed. */
#include "zdtm.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int fd = open(zdtm_path("mapped"), O_RDWR | O_CREAT, 0644);
	zdtm_syscall(fd >= 0, "open");
	static char page[4096];
	memset(page, 'f', sizeof page);
	for (int i = 0; i < 3; i++)
		zdtm_syscall(write(fd, page, sizeof page) == sizeof page, "write");
	char *m = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	zdtm_syscall(m != MAP_FAILED, "mmap");
	close(fd);
	memcpy(m + 4096, "private copy", 12);
	zdtm_checkpoint_here();
	zdtm_check(memcmp(m + 4096, "private copy", 12) == 0, "the changed page");
	zdtm_check(m[0] == 'f' && m[8191 + 4096] == 'f' && m[4096 + 12] == 'f', "the file's pages");
	fd = open(zdtm_path("mapped"), O_RDONLY);
	zdtm_syscall(pread(fd, page, sizeof page, 4096) == sizeof page, "pread");
	zdtm_check(page[0] == 'f', "the file itself changed");
	zdtm_pass();
}
