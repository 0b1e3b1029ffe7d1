//! bash doing what shells do: pipelines, subshells, command substitution,
//! traps and job control without a terminal.

mod common;

use common::Case;

#[test]
fn pipelines_subshells_and_substitution() {
    let (_, traced) = Case::bash(
        r#"
set -o pipefail
seq 1 2000 | (while read x; do echo $((x * x)); done) | sort -n | tail -3
echo "$(echo nested $(echo deep $(printf '%s' inner)))"
(cd / && pwd)
pwd | sed 's|.*/||'
{ echo a; echo b; echo c; } | wc -l
x=$( (exit 4) ); echo "subshell status $?"
false | true; echo "pipefail status $?"
cat <<EOT | tr a-z A-Z
here $((1 + 2))
EOT
exec 3> fd3.txt; echo to fd3 >&3; exec 3>&-; cat fd3.txt
"#,
    )
    .compare_files()
    .check();
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "3992004\n3996001\n4000000\nnested deep inner\n/\nw\n3\n\
         subshell status 4\npipefail status 1\nHERE 3\nto fd3\n"
    );
}

#[test]
fn trap_exit() {
    let (_, traced) = Case::bash("trap 'echo bye $?' EXIT; (exit 3); echo after; false").check();
    traced.assert_exit(1);
    assert_eq!(traced.stdout_str(), "after\nbye 1\n");
}

/// `kill $$` sends SIGTERM to the shell itself; the trap runs once the kill
/// builtin returns.
#[test]
fn trap_term_with_kill_self() {
    let (_, traced) =
        Case::bash("trap 'echo got TERM; exit 9' TERM; echo before; kill $$; echo not reached")
            .check();
    traced.assert_exit(9);
    assert_eq!(traced.stdout_str(), "before\ngot TERM\n");
}

#[test]
fn background_jobs_and_wait() {
    let (_, traced) = Case::bash(
        r#"
for i in 1 2 3 4 5; do
  (sleep 0.0$i; echo "job $i" > "out.$i"; exit $i) &
done
wait
cat out.*
(exit 7) & p=$!
wait $p; echo "status of \$!: $?"
sleep 0.01 & sleep 0.02 & wait -n; echo "wait -n: $?"
wait
jobs -l | wc -l
"#,
    )
    .compare_files()
    .check();
    traced.assert_exit(0);
    assert_eq!(
        traced.stdout_str(),
        "job 1\njob 2\njob 3\njob 4\njob 5\nstatus of $!: 7\nwait -n: 0\n0\n"
    );
}

/// A writer into a closed pipe dies of SIGPIPE (the shell reports 141), it
/// does not see EPIPE: SIGPIPE must not be ignored in the tracee.
#[test]
fn sigpipe_kills_pipe_writer() {
    let (_, traced) = Case::bash("set -o pipefail; yes | head -n 1; echo status=$?").check();
    traced.assert_exit(0);
    assert_eq!(traced.stdout_str(), "y\nstatus=141\n");
}
