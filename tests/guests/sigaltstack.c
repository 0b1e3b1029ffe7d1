/* Signal handlers on an alternate stack: a SIGUSR1 handler checks it runs
 * on the altstack, then unbounded recursion overflows the main stack and the
 * SIGSEGV handler (also on the altstack) catches it. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

static char *alt;
static size_t alt_size;
static volatile int usr1_on_alt;

static int on_alt(void)
{
	char here;
	return (uintptr_t)&here >= (uintptr_t)alt && (uintptr_t)&here < (uintptr_t)alt + alt_size;
}

static void on_usr1(int sig)
{
	usr1_on_alt = on_alt();
}

static void on_segv(int sig)
{
	static const char yes[] = "stack overflow caught on altstack\n";
	static const char no[] = "stack overflow caught OFF altstack\n";
	if (on_alt())
		write(1, yes, sizeof yes - 1);
	else
		write(1, no, sizeof no - 1);
	_exit(0);
}

static volatile long depth_limit = 1L << 40;

static int recurse(volatile char *prev)
{
	volatile char buf[4096];
	if (--depth_limit == 0)
		return 0;
	buf[0] = prev ? prev[0] + 1 : 0;
	return recurse(buf) + buf[1];
}

int main(void)
{
	struct rlimit none = { 0, 0 };
	setrlimit(RLIMIT_CORE, &none);
	struct rlimit stack = { 1 << 20, 1 << 20 };
	setrlimit(RLIMIT_STACK, &stack);
	alt_size = 1 << 16;
	alt = malloc(alt_size);
	stack_t ss = { .ss_sp = alt, .ss_size = alt_size, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL) != 0) {
		perror("sigaltstack");
		return 1;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_flags = SA_ONSTACK;
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_segv;
	sigaction(SIGSEGV, &sa, NULL);

	raise(SIGUSR1);
	printf("SIGUSR1 handler ran on altstack: %d\n", usr1_on_alt);
	stack_t cur;
	sigaltstack(NULL, &cur);
	printf("altstack still set after handler: %d\n", cur.ss_sp == alt && !(cur.ss_flags & SS_DISABLE));
	fflush(stdout);
	return recurse(NULL);
}
