/* A PROT_NONE guard page between two writable regions, and a large
 * PROT_NONE reservation (as allocators keep): after the restore the
 * guard is still there (touching it faults, SIGSEGV with si_addr on it)
 * and the reservation is still PROT_NONE in /proc/self/maps, while the
 * data around the guard is intact. */
#include "zdtm.h"
#include <setjmp.h>
#include <sys/mman.h>

static sigjmp_buf jb;
static void *fault_addr;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	fault_addr = si->si_addr;
	siglongjmp(jb, 1);
}

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
	strcpy(m, "below");
	strcpy(m + 8192, "above");
	zdtm_syscall(mprotect(m + 4096, 4096, PROT_NONE) == 0, "mprotect");
	char *res = mmap(NULL, 64 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	zdtm_syscall(res != MAP_FAILED, "mmap reservation");
	zdtm_checkpoint_here();
	zdtm_check(strcmp(m, "below") == 0 && strcmp(m + 8192, "above") == 0, "data around the guard");
	zdtm_check(strcmp(perms_of(m + 4096), "---p") == 0, "guard page is '%s'", perms_of(m + 4096));
	zdtm_check(strcmp(perms_of(res + (32 << 20)), "---p") == 0, "reservation is '%s'",
		   perms_of(res + (32 << 20)));
	struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO};
	sigaction(SIGSEGV, &sa, NULL);
	if (sigsetjmp(jb, 1) == 0) {
		*(volatile char *)(m + 4096 + 10) = 1;
		zdtm_fail("writing the guard page did not fault");
	}
	zdtm_check(fault_addr == m + 4096 + 10, "fault at %p, not %p", fault_addr, (void *)(m + 4096 + 10));
	/* The reservation can be made usable, as an allocator would. */
	zdtm_syscall(mprotect(res, 4096, PROT_READ | PROT_WRITE) == 0, "mprotect the reservation");
	res[0] = 1;
	zdtm_pass();
}
