/* A file unlinked while open (O_RDWR, offset 1000) holding 64 KiB: after
 * the restore the fd reads the same bytes, is at the same offset, has
 * no name (st_nlink 0, "(deleted)" in /proc) and takes writes; nothing
 * was left at the old path. */
#include "zdtm.h"

#define N 65536

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int fd = open(zdtm_path("gone"), O_RDWR | O_CREAT, 0640);
	zdtm_syscall(fd >= 0, "open");
	static unsigned char data[N];
	for (int i = 0; i < N; i++)
		data[i] = (unsigned char)(i ^ (i >> 8));
	zdtm_syscall(write(fd, data, N) == N, "write");
	zdtm_syscall(unlink(zdtm_path("gone")) == 0, "unlink");
	zdtm_syscall(lseek(fd, 1000, SEEK_SET) == 1000, "lseek");
	zdtm_checkpoint_here();
	zdtm_check(lseek(fd, 0, SEEK_CUR) == 1000, "offset %ld", (long)lseek(fd, 0, SEEK_CUR));
	static unsigned char got[N];
	zdtm_syscall(pread(fd, got, N, 0) == N, "pread");
	zdtm_check(memcmp(got, data, N) == 0, "the contents differ");
	struct stat st;
	zdtm_syscall(fstat(fd, &st) == 0, "fstat");
	zdtm_check(st.st_nlink == 0 && st.st_size == N, "nlink %lu size %ld", (unsigned long)st.st_nlink,
		   (long)st.st_size);
	zdtm_check((st.st_mode & 0777) == 0640, "mode %o", st.st_mode & 0777);
	zdtm_check(access(zdtm_path("gone"), F_OK) != 0, "the old path exists again");
	zdtm_check((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR, "not O_RDWR");
	zdtm_syscall(write(fd, "more", 4) == 4, "write");
	zdtm_pass();
}
