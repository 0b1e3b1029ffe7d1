/* openat2(2) and its RESOLVE_* flags, one line per case: "CASE ok" or
 * "CASE ERRNO-NAME". Run in a directory (argv[1]) it prepares itself:
 * f (a file), sub/ (a directory), dlink -> sub, flink -> f,
 * up -> .. (a symlink leaving the directory). The output is the same
 * natively and under isotrace for every case printed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int dir;

static const char *name(int e)
{
	switch (e) {
	case ELOOP: return "ELOOP";
	case EXDEV: return "EXDEV";
	case EINVAL: return "EINVAL";
	case E2BIG: return "E2BIG";
	case ENOENT: return "ENOENT";
	case EEXIST: return "EEXIST";
	case ENOSYS: return "ENOSYS";
	default: return strerror(e);
	}
}

static void run(const char *what, int at, const char *path, __u64 flags,
		__u64 mode, __u64 resolve, size_t size)
{
	struct {
		struct open_how how;
		char pad[8];
	} h;
	memset(&h, 0, sizeof h);
	h.how.flags = flags;
	h.how.mode = mode;
	h.how.resolve = resolve;
	long fd = syscall(SYS_openat2, at, path, &h, size);
	if (fd < 0) {
		printf("%s %s\n", what, name(errno));
		return;
	}
	printf("%s ok\n", what);
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc != 2 || chdir(argv[1]) != 0)
		return 2;
	close(open("f", O_CREAT | O_WRONLY, 0644));
	mkdir("sub", 0755);
	symlink("sub", "dlink");
	symlink("f", "flink");
	symlink("..", "up");
	dir = open(".", O_PATH | O_DIRECTORY);
	size_t s = sizeof(struct open_how);
	run("plain", AT_FDCWD, "f", O_RDONLY, 0, 0, s);
	run("create", dir, "sub/new", O_CREAT | O_EXCL | O_WRONLY, 0600, 0, s);
	run("create-again", dir, "sub/new", O_CREAT | O_EXCL | O_WRONLY, 0600, 0, s);
	run("nosym-dir", dir, "dlink/new", O_RDONLY, 0, RESOLVE_NO_SYMLINKS, s);
	run("nosym-final", dir, "flink", O_RDONLY, 0, RESOLVE_NO_SYMLINKS, s);
	run("nosym-opath", dir, "flink", O_PATH | O_NOFOLLOW, 0, RESOLVE_NO_SYMLINKS, s);
	run("nosym-plain", dir, "sub/new", O_RDONLY, 0, RESOLVE_NO_SYMLINKS, s);
	run("beneath-in", dir, "sub/../f", O_RDONLY, 0, RESOLVE_BENEATH, s);
	run("beneath-dotdot", dir, "../x", O_RDONLY, 0, RESOLVE_BENEATH, s);
	run("beneath-abs", dir, "/etc/passwd", O_RDONLY, 0, RESOLVE_BENEATH, s);
	run("beneath-link-out", dir, "up/x", O_RDONLY, 0, RESOLVE_BENEATH, s);
	run("beneath-link-in", dir, "dlink/new", O_RDONLY, 0, RESOLVE_BENEATH, s);
	run("nomagic", AT_FDCWD, "/proc/self/cwd/f", O_RDONLY, 0, RESOLVE_NO_MAGICLINKS, s);
	run("magic-ok", AT_FDCWD, "/proc/self/cwd/f", O_RDONLY, 0, 0, s);
	run("cached", dir, "f", O_RDONLY, 0, RESOLVE_CACHED, s);
	run("short", dir, "f", O_RDONLY, 0, 0, 16);
	run("bad-resolve", dir, "f", O_RDONLY, 0, 0x100, s);
	run("mode-no-creat", dir, "f", O_RDONLY, 0644, 0, s);
	run("bigger-zero", dir, "f", O_RDONLY, 0, 0, s + 8);
	return 0;
}
