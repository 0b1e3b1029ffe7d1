/* A 64-bit process can still enter the i386 syscall table with int $0x80,
 * where the numbers mean different calls. Natively this works (with
 * CONFIG_IA32_EMULATION); under isotrace it must fail with ENOSYS. */
#include <stdio.h>
#include <unistd.h>

static long int80(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory", "r8", "r9", "r10", "r11");
	return ret;
}

int main(void)
{
	long pid = int80(20, 0, 0, 0); /* i386 getpid */
	if (pid == getpid())
		printf("int80 getpid: works\n");
	else
		printf("int80 getpid: %ld\n", pid);
	/* i386 write(1, msg, len): 4 */
	static char msg[] = "int80 write leaked\n";
	long w = int80(4, 1, (long)(unsigned long)msg, sizeof msg - 1);
	printf("int80 write: %ld\n", w < 0 ? w : 0);
	return 0;
}
