//! Arbitrary bytes as `procs.bin` (and as `manifest.json`): decoding must
//! fail cleanly or yield metadata that every consumer (the inspect views,
//! the core layout and notes) handles without panicking.
#![no_main]

use isotrace_checkpoint::elfcore;
use isotrace_checkpoint::image::{codec, decode_tree, Host, Image, Kind, Manifest, Section};
use isotrace_checkpoint::inspect::{self, View};
use isotrace_checkpoint::model::ProcessTree;
use libfuzzer_sys::fuzz_target;

/// A manifest listing 1 MiB pages sections for the pids `tree` names, so
/// that mutated metadata reaches the consistency checks and the consumers.
fn manifest(tree: &ProcessTree) -> Manifest {
    let section = |name: &str, size| Section {
        name: name.into(),
        size,
        sha256: None,
        blake3: Some(String::new()),
        held: 0,
    };
    Manifest {
        format: "isotrace-image".into(),
        version: 2,
        kind: Kind::Snapshot,
        created: String::new(),
        host: Host {
            kernel: String::new(),
            arch: String::new(),
            xcr0: String::new(),
        },
        root_pid: 1,
        pids: vec![1],
        memory_method: "stopped".into(),
        limitations: Vec::new(),
        sections: std::iter::once(section("procs.bin", 0))
            .chain(
                tree.processes
                    .iter()
                    .map(|p| section(&p.pages_section, 1 << 20)),
            )
            .collect(),
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = Manifest::parse(data);
    let Ok(tree) = codec::decode::<ProcessTree>("procs.bin", data) else {
        return;
    };
    let manifest = manifest(&tree);
    let Ok(tree) = decode_tree(&manifest, data) else {
        return;
    };
    let image = Image {
        dir: "/nonexistent".into(),
        manifest,
        tree,
        unverified: Vec::new(),
        elsewhere: Default::default(),
    };
    for view in [View::All, View::Ps, View::Fds, View::Mems, View::Sockets] {
        let _ = inspect::json_text(&image, view);
        let _ = inspect::human(&image, view);
    }
    for p in &image.tree.processes {
        let _ = elfcore::loads(p);
        let _ = elfcore::notes::all(p);
    }
});
