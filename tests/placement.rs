//! The supervisor pins syscall-heavy tracees next to itself; that must stay
//! invisible. A tracee hot enough to be pinned still sees the machine's CPU
//! set (nproc, sched_getaffinity), and so do the children it starts.

mod common;

use common::Case;

#[test]
fn hot_tracees_and_their_children_see_every_cpu() {
    // Several thousand trapped calls in a row make the shell "hot".
    let script = r#"
i=0; while [ $i -lt 4000 ]; do i=$((i+1)); [ -e /etc/passwd ]; done
nproc
python3 -c 'import os; print(sorted(os.sched_getaffinity(0)))'
grep Cpus_allowed_list /proc/self/status
"#;
    let (native, traced) = Case::bash(script).check();
    traced.assert_exit(0);
    assert_eq!(native.stdout_str(), traced.stdout_str());
}

#[test]
fn a_tracee_setting_its_own_affinity_keeps_it() {
    let script = r#"
i=0; while [ $i -lt 4000 ]; do i=$((i+1)); [ -e /etc/passwd ]; done
python3 -c '
import os
os.sched_setaffinity(0, {0})
for _ in range(3000): os.stat("/etc/passwd")
print(sorted(os.sched_getaffinity(0)))
'
"#;
    let (native, traced) = Case::bash(script).check();
    traced.assert_exit(0);
    assert_eq!(native.stdout_str(), traced.stdout_str());
}
