/* The source compiled by the "20 x gcc -O2 -c" workload. */
#include <stdio.h>
#include <string.h>

static int count_words(const char *s)
{
	int n = 0, in = 0;
	for (; *s; s++) {
		int sp = (*s == ' ');
		n += !sp && !in;
		in = !sp;
	}
	return n;
}

int main(int argc, char **argv)
{
	for (int i = 0; i < argc; i++)
		printf("%s: %d words, %zu bytes\n", argv[i], count_words(argv[i]), strlen(argv[i]));
	return 0;
}
