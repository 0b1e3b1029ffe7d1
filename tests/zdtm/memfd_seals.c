/* Memfd seals (memfd_create(2), fcntl(2) F_ADD_SEALS):
 *   - "sealed": not mapped, holds "sealed data", sealed against writing,
 *     shrinking, growing and further sealing;
 *   - "mapped": mapped shared and writable, sealed against shrinking and
 *     growing only (a write seal cannot coexist with that mapping);
 *   - "open": made with MFD_ALLOW_SEALING, no seals yet;
 *   - "plain": made without it, so sealed with F_SEAL_SEAL from birth.
 * After the restore each has the same seals, its contents, and the
 * seals act: writes and resizes fail with EPERM where sealed, "open"
 * can still be sealed, "plain" cannot. */
#include "zdtm.h"
#include <sys/mman.h>

static int make(const char *name, unsigned flags)
{
	int fd = memfd_create(name, flags);
	zdtm_syscall(fd >= 0, "memfd_create %s", name);
	return fd;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int sealed = make("sealed", MFD_ALLOW_SEALING);
	zdtm_syscall(write(sealed, "sealed data", 11) == 11, "write");
	int want_sealed = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	zdtm_syscall(fcntl(sealed, F_ADD_SEALS, want_sealed) == 0, "seal");

	int mapped = make("mapped", MFD_ALLOW_SEALING);
	zdtm_syscall(ftruncate(mapped, 4096) == 0, "ftruncate");
	char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mapped, 0);
	zdtm_syscall(m != MAP_FAILED, "mmap");
	strcpy(m, "through the mapping");
	int want_mapped = F_SEAL_SHRINK | F_SEAL_GROW;
	zdtm_syscall(fcntl(mapped, F_ADD_SEALS, want_mapped) == 0, "seal mapped");

	int open_ = make("open", MFD_ALLOW_SEALING);
	int plain = make("plain", 0);
	zdtm_check(fcntl(plain, F_GET_SEALS) == F_SEAL_SEAL, "plain starts with F_SEAL_SEAL");

	zdtm_checkpoint_here();

	int got = fcntl(sealed, F_GET_SEALS);
	zdtm_check(got == want_sealed, "sealed: seals %#x, want %#x", got, want_sealed);
	char buf[32] = {0};
	zdtm_check(pread(sealed, buf, sizeof buf, 0) == 11 && strcmp(buf, "sealed data") == 0, "sealed reads '%s'",
		   buf);
	errno = 0;
	zdtm_check(pwrite(sealed, "x", 1, 0) < 0 && errno == EPERM, "a write to the sealed memfd");
	errno = 0;
	zdtm_check(ftruncate(sealed, 0) < 0 && errno == EPERM, "a shrink of the sealed memfd");

	got = fcntl(mapped, F_GET_SEALS);
	zdtm_check(got == want_mapped, "mapped: seals %#x, want %#x", got, want_mapped);
	zdtm_check(strcmp(m, "through the mapping") == 0, "the mapping reads '%s'", m);
	strcpy(m, "still shared");
	memset(buf, 0, sizeof buf);
	zdtm_check(pread(mapped, buf, 12, 0) == 12 && strcmp(buf, "still shared") == 0, "mapped fd reads '%s'", buf);
	errno = 0;
	zdtm_check(ftruncate(mapped, 8192) < 0 && errno == EPERM, "a growth of the mapped memfd");

	got = fcntl(open_, F_GET_SEALS);
	zdtm_check(got == 0, "open: seals %#x", got);
	zdtm_syscall(fcntl(open_, F_ADD_SEALS, F_SEAL_GROW) == 0, "sealing the open memfd");
	got = fcntl(plain, F_GET_SEALS);
	zdtm_check(got == F_SEAL_SEAL, "plain: seals %#x", got);
	errno = 0;
	zdtm_check(fcntl(plain, F_ADD_SEALS, F_SEAL_GROW) < 0 && errno == EPERM, "sealing the plain memfd");
	zdtm_pass();
}
