/* dup(2) and fcntl(F_DUPFD_CLOEXEC) copies of one open file share its
 * offset and status flags; FD_CLOEXEC stays per fd. All of that holds
 * after the restore. */
#include "zdtm.h"

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int a = open(zdtm_path("data"), O_RDWR | O_CREAT, 0644);
	zdtm_syscall(a >= 0, "open");
	zdtm_syscall(write(a, "abcdefghij", 10) == 10, "write");
	zdtm_syscall(lseek(a, 2, SEEK_SET) == 2, "lseek");
	int b = dup(a);
	int c = fcntl(a, F_DUPFD_CLOEXEC, 40);
	zdtm_syscall(b >= 0 && c == 40, "dup");
	zdtm_checkpoint_here();
	char x;
	zdtm_syscall(read(a, &x, 1) == 1 && x == 'c', "read through a");
	zdtm_check(lseek(b, 0, SEEK_CUR) == 3, "b's offset is %ld, not a's 3", (long)lseek(b, 0, SEEK_CUR));
	zdtm_check(lseek(c, 0, SEEK_CUR) == 3, "c's offset is %ld, not a's 3", (long)lseek(c, 0, SEEK_CUR));
	zdtm_syscall(fcntl(b, F_SETFL, O_APPEND) == 0, "F_SETFL");
	zdtm_check(fcntl(a, F_GETFL) & O_APPEND, "O_APPEND set through b is not seen through a");
	zdtm_check(fcntl(c, F_GETFD) == FD_CLOEXEC, "c lost FD_CLOEXEC");
	zdtm_check(fcntl(a, F_GETFD) == 0 && fcntl(b, F_GETFD) == 0, "a or b gained FD_CLOEXEC");
	zdtm_pass();
}
