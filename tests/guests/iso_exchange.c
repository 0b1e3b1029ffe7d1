/* renameat2(RENAME_EXCHANGE) on what argv[1] holds (prepared by the test:
 * file "a" with "A", directories "d1" holding "x" and "d2" holding "y"),
 * then a listing: each case prints "CASE ok|ERRNO", then every name with
 * its contents (files) or entries (directories), sorted. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void swap(const char *what, const char *x, const char *y, unsigned flags)
{
	if (renameat2(AT_FDCWD, x, AT_FDCWD, y, flags) == 0)
		printf("%s ok\n", what);
	else
		printf("%s %s\n", what, strerror(errno));
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void show(const char *path, int depth)
{
	struct stat st;
	if (lstat(path, &st) != 0) {
		printf("%*s%s missing\n", depth * 2, "", path);
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		char buf[64] = {0};
		int fd = open(path, O_RDONLY);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
		if (fd >= 0)
			close(fd);
		printf("%*s%s = %.*s\n", depth * 2, "", path, n > 0 ? (int)n : 0, buf);
		return;
	}
	printf("%*s%s/\n", depth * 2, "", path);
	DIR *d = opendir(path);
	char *names[64];
	int k = 0;
	struct dirent *e;
	while (d && (e = readdir(d)) && k < 64)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			names[k++] = strdup(e->d_name);
	if (d)
		closedir(d);
	qsort(names, k, sizeof *names, cmp);
	for (int i = 0; i < k; i++) {
		char p[4096];
		snprintf(p, sizeof p, "%s/%s", path, names[i]);
		show(p, depth + 1);
		free(names[i]);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2 || chdir(argv[1]) != 0)
		return 2;
	swap("file-dir", "a", "d1", RENAME_EXCHANGE);
	swap("dir-dir", "a", "d2", RENAME_EXCHANGE);
	swap("missing", "a", "nope", RENAME_EXCHANGE);
	swap("noreplace-too", "a", "d1", RENAME_EXCHANGE | RENAME_NOREPLACE);
	/* A new file in one directory, then swap it back. */
	close(open("d2/new", O_CREAT | O_WRONLY, 0644));
	swap("back", "d2", "d1", RENAME_EXCHANGE);
	show(".", 0);
	return 0;
}
