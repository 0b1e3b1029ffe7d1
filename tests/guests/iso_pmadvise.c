/* The scratch region's pages discarded by the tracee itself: Linux 6.13+
 * lets process_madvise(2) apply any advice to the caller's own mm, and
 * MADV_DONTNEED on the private region zero-fills it. The supervisor, which
 * skips rewriting a slot that still holds the same path, must forget what
 * the slots held. argv[1]: a file to stat; prints the process_madvise
 * result (0: it was refused or did nothing) and how many of the ten stats
 * (five before, five after) succeeded. */
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct stat st;
	int ok = 0;
	if (argc != 2)
		return 2;
	for (int i = 0; i < 5; i++)
		ok += stat(argv[1], &st) == 0;
	long pfd = syscall(SYS_pidfd_open, getpid(), 0);
	struct iovec iov = { (void *)0x10000, 0x200000 };
	long r = syscall(SYS_process_madvise, pfd, &iov, 1, MADV_DONTNEED, 0);
	printf("discarded %s\n", r > 0 ? "yes" : "no");
	for (int i = 0; i < 5; i++)
		ok += stat(argv[1], &st) == 0;
	printf("ok %d/10\n", ok);
	return 0;
}
