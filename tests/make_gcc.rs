//! A real toolchain: make -j2 driving gcc (cc1, as, collect2, ld, many
//! processes and temp files), then the built binary; every output file must
//! be byte-identical to the native build.

mod common;

use std::path::Path;

use common::{write_file, Case};

fn make_project(dir: &Path) {
    write_file(
        dir,
        "util.h",
        "int square(int);\nint cube(int);\nconst char *name(void);\n",
    );
    write_file(
        dir,
        "square.c",
        "#include \"util.h\"\nint square(int x) { return x * x; }\n",
    );
    write_file(
        dir,
        "cube.c",
        "#include \"util.h\"\nint cube(int x) { return x * square(x); }\n",
    );
    write_file(
        dir,
        "name.c",
        "#include \"util.h\"\nconst char *name(void) { return \"isotrace-make\"; }\n",
    );
    write_file(
        dir,
        "main.c",
        r#"#include <stdio.h>
#include "util.h"
int main(void)
{
	long sum = 0;
	for (int i = 0; i < 100; i++)
		sum += square(i) + cube(i);
	printf("%s: %ld\n", name(), sum);
	return 0;
}
"#,
    );
    write_file(
        dir,
        "Makefile",
        "CFLAGS = -O2 -Wall\n\
         OBJS = main.o square.o cube.o name.o\n\
         prog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n\
         %.o: %.c util.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\
         clean:\n\trm -f prog $(OBJS)\n",
    );
}

#[test]
fn make_j2_and_run() {
    // -s: with -j2 the order of echoed recipes is not deterministic.
    let (_, traced) = Case::sh("make -s -j2 && ./prog && make -q; echo up-to-date=$?")
        .setup(make_project)
        .compare_files()
        .check();
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "isotrace-make: 24830850\nup-to-date=0\n"
    );
}

#[test]
fn gcc_compile_and_run() {
    let (_, traced) = Case::sh("gcc -O2 -o hello hello.c && ./hello world")
        .setup(|dir: &Path| {
            write_file(
                dir,
                "hello.c",
                "#include <stdio.h>\nint main(int c, char **v) { printf(\"hello %s %d\\n\", v[1], c); return 3; }\n",
            )
        })
        .compare_files()
        .check();
    traced.assert_exit(3);
    assert_eq!(traced.stdout_str(), "hello world 2\n");
}
