/* execve(2) failures must come back to the caller as the kernel's errno. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void try(const char *path)
{
	char *argv[] = { (char *)path, NULL };
	char *envp[] = { NULL };
	int ret = execve(path, argv, envp);
	printf("execve(%s) = %d errno=%s\n", path, ret, strerrorname_np(errno));
}

int main(void)
{
	/* Mode 0644: no execute bit at all, so EACCES even for root. */
	int fd = open("noexec.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	write(fd, "#!/bin/sh\n", 10);
	close(fd);
	try("/nonexistent/isotrace-missing");
	try("./noexec.txt");
	try("/");               /* a directory: EACCES */
	try("/etc/hostname/x"); /* a file used as a directory: ENOTDIR */
	printf("still running\n");
	return 0;
}
