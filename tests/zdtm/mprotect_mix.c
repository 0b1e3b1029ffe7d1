/* One anonymous region split by mprotect into read-only, read-write and
 * read-execute parts, each with data: after the restore every part has
 * its protection (in /proc/self/maps) and its data. */
#include "zdtm.h"
#include <sys/mman.h>

static const char *perms_of(void *addr)
{
	static char perms[8];
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	perms[0] = 0;
	while (f && fgets(line, sizeof line, f)) {
		unsigned long a, b;
		char p[8];
		if (sscanf(line, "%lx-%lx %7s", &a, &b, p) == 3 && a <= (unsigned long)addr &&
		    (unsigned long)addr < b)
			strcpy(perms, p);
	}
	if (f)
		fclose(f);
	return perms;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	char *m = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	zdtm_syscall(m != MAP_FAILED, "mmap");
	strcpy(m, "read only");
	strcpy(m + 4096, "read write");
	/* x86-64: ret */
	m[8192] = (char)0xc3;
	zdtm_syscall(mprotect(m, 4096, PROT_READ) == 0, "mprotect");
	zdtm_syscall(mprotect(m + 8192, 4096, PROT_READ | PROT_EXEC) == 0, "mprotect");
	zdtm_checkpoint_here();
	zdtm_check(strcmp(perms_of(m), "r--p") == 0, "first page '%s'", perms_of(m));
	zdtm_check(strcmp(perms_of(m + 4096), "rw-p") == 0, "second page '%s'", perms_of(m + 4096));
	zdtm_check(strcmp(perms_of(m + 8192), "r-xp") == 0, "third page '%s'", perms_of(m + 8192));
	zdtm_check(strcmp(m, "read only") == 0 && strcmp(m + 4096, "read write") == 0, "data");
	((void (*)(void))(m + 8192))();
	zdtm_pass();
}
