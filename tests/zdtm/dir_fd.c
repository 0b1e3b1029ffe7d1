/* An open directory: openat(2) relative to it and getdents through it
 * work after the restore; so does the cwd, a subdirectory. */
#include "zdtm.h"
#include <dirent.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	zdtm_syscall(mkdir(zdtm_path("sub"), 0755) == 0, "mkdir");
	zdtm_syscall(mkdir(zdtm_path("cwd"), 0755) == 0, "mkdir");
	int d = open(zdtm_path("sub"), O_RDONLY | O_DIRECTORY);
	zdtm_syscall(d >= 0, "open dir");
	int f = openat(d, "one", O_WRONLY | O_CREAT, 0644);
	zdtm_syscall(f >= 0, "openat");
	close(f);
	zdtm_syscall(chdir(zdtm_path("cwd")) == 0, "chdir");
	char want[4096];
	zdtm_syscall(getcwd(want, sizeof want) != NULL, "getcwd");
	zdtm_checkpoint_here();
	char cwd[4096];
	zdtm_syscall(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
	zdtm_check(strcmp(cwd, want) == 0, "cwd %s, not %s", cwd, want);
	struct stat st;
	zdtm_syscall(fstatat(d, "one", &st, 0) == 0, "fstatat through the dir fd");
	zdtm_check(fcntl(d, F_GETFL) & O_DIRECTORY, "not O_DIRECTORY");
	DIR *dir = fdopendir(dup(d));
	zdtm_syscall(dir != NULL, "fdopendir");
	int found = 0;
	for (struct dirent *e; (e = readdir(dir));)
		found += strcmp(e->d_name, "one") == 0;
	zdtm_check(found == 1, "readdir found 'one' %d times", found);
	zdtm_pass();
}
