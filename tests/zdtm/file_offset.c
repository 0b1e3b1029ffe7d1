/* A regular file open O_RDWR|O_APPEND at one offset and O_RDONLY at
 * another: both offsets and the flags (O_APPEND) survive, and reads and
 * writes go on from where they were. */
#include "zdtm.h"

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int w = open(zdtm_path("data"), O_RDWR | O_CREAT | O_APPEND, 0644);
	zdtm_syscall(w >= 0, "open data");
	zdtm_syscall(write(w, "0123456789abcdef", 16) == 16, "write");
	int r = open(zdtm_path("data"), O_RDONLY);
	zdtm_syscall(r >= 0, "open data read-only");
	zdtm_syscall(lseek(r, 5, SEEK_SET) == 5, "lseek");
	zdtm_syscall(lseek(w, 3, SEEK_SET) == 3, "lseek");
	zdtm_checkpoint_here();
	zdtm_check(lseek(r, 0, SEEK_CUR) == 5, "reader offset %ld", (long)lseek(r, 0, SEEK_CUR));
	zdtm_check(lseek(w, 0, SEEK_CUR) == 3, "writer offset %ld", (long)lseek(w, 0, SEEK_CUR));
	int fl = fcntl(w, F_GETFL);
	zdtm_check((fl & O_APPEND) && (fl & O_ACCMODE) == O_RDWR, "writer flags %#o", fl);
	zdtm_check((fcntl(r, F_GETFL) & O_ACCMODE) == O_RDONLY, "reader flags");
	char buf[8] = {0};
	zdtm_syscall(read(r, buf, 4) == 4, "read");
	zdtm_check(memcmp(buf, "5678", 4) == 0, "read %.4s", buf);
	zdtm_syscall(write(w, "XY", 2) == 2, "append");
	zdtm_check(lseek(w, 0, SEEK_CUR) == 18, "append did not go to the end");
	zdtm_pass();
}
