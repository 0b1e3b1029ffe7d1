/* Built static: its very first rewritten path syscall is a rename (an
 * exclusive call of the namespace gate), which also makes the supervisor
 * map the scratch region by an injected syscall before the rename is
 * issued again. argv[1]: a directory holding "a" (no chdir: that would be
 * rewritten first). Prints the rename's result. */
#include <stdio.h>

int main(int argc, char **argv)
{
	char a[4096], b[4096];
	if (argc != 2)
		return 2;
	snprintf(a, sizeof a, "%s/a", argv[1]);
	snprintf(b, sizeof b, "%s/b", argv[1]);
	int r = rename(a, b);
	printf("rename %d\n", r);
	return r == 0 ? 0 : 1;
}
