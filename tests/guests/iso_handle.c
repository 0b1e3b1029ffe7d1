/* File handles bypass path lookup entirely (open_by_handle_at(2) needs only
 * a mount fd and an inode number), so under isolation they must be refused:
 * name_to_handle_at fails and open_by_handle_at gets EPERM, even with a
 * genuine handle or a hand-made one for the root directory's inode. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void report(const char *what, int ret)
{
	printf("%s: ret=%s errno=%s\n", what, ret < 0 ? "-1" : "ok",
	       ret < 0 ? strerrorname_np(errno) : "none");
}

int main(int argc, char **argv)
{
	const char *target = argc > 1 ? argv[1] : "/etc/hostname";
	struct file_handle *fh = malloc(sizeof *fh + MAX_HANDLE_SZ);
	int mount_id;
	fh->handle_bytes = MAX_HANDLE_SZ;
	errno = 0;
	int ret = name_to_handle_at(AT_FDCWD, target, fh, &mount_id, 0);
	report("name_to_handle_at", ret);
	if (ret < 0) {
		/* FILEID_INO32_GEN for inode 2 (an ext4 root) generation 0. */
		unsigned int ino_gen[2] = {2, 0};
		fh->handle_bytes = sizeof ino_gen;
		fh->handle_type = 1;
		memcpy(fh->f_handle, ino_gen, sizeof ino_gen);
	}
	int mount_fd = open("/", O_RDONLY | O_DIRECTORY);
	errno = 0;
	int fd = open_by_handle_at(mount_fd, fh, O_RDONLY);
	report("open_by_handle_at", fd);
	return 0;
}
