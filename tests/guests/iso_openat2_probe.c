/* Escape probes through openat2(2): each path in argv[1..] is opened with
 * every RESOLVE_* combination below (dirfd "/" for BENEATH and IN_ROOT,
 * AT_FDCWD otherwise) and read. Prints "PATH FLAGS: first line" when it
 * opened, "PATH FLAGS: ERRNO" when not. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		unsigned long long resolve;
	} modes[] = {
		{"none", 0},
		{"nomagic", RESOLVE_NO_MAGICLINKS},
		{"nosym", RESOLVE_NO_SYMLINKS},
		{"beneath", RESOLVE_BENEATH},
		{"inroot", RESOLVE_IN_ROOT},
	};
	int root = open("/", O_PATH | O_DIRECTORY);
	for (int i = 1; i < argc; i++) {
		for (unsigned m = 0; m < sizeof modes / sizeof *modes; m++) {
			struct open_how how = {.flags = O_RDONLY, .resolve = modes[m].resolve};
			int at = modes[m].resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) ? root : AT_FDCWD;
			const char *p = argv[i];
			if (at == root)
				while (*p == '/')
					p++;
			long fd = syscall(SYS_openat2, at, p, &how, sizeof how);
			if (fd < 0) {
				printf("%s %s: %s\n", argv[i], modes[m].name, strerrorname_np(errno));
				continue;
			}
			char buf[256] = {0};
			ssize_t n = read(fd, buf, sizeof buf - 1);
			close(fd);
			if (n < 0)
				snprintf(buf, sizeof buf, "(unreadable)");
			buf[strcspn(buf, "\n")] = 0;
			printf("%s %s: %s\n", argv[i], modes[m].name, buf);
		}
	}
	return 0;
}
