/* Dies of SIGSEGV: status 139 natively and under isotrace. */
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>

int main(void)
{
	/* No core file in the test's working directory. */
	struct rlimit none = { 0, 0 };
	setrlimit(RLIMIT_CORE, &none);
	printf("about to crash\n");
	fflush(stdout);
	volatile uintptr_t addr = 16;
	*(volatile int *)addr = 1;
	return 0;
}
