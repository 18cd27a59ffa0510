//! `Library` handles: several at once on one folder, as the app and the CLI do.

use super::common::{content_check, fixture, node, put, MODEL};
use freeze_attn_library::{Library, NewNode, NodeKind, NodeOrder};
use std::sync::Arc;
use std::thread;

#[test]
fn two_handles_write_concurrently_and_see_each_other() {
    let f = fixture();
    let root = node(&f.lib, None, "shared root", None, 0);
    let other = Arc::new(Library::open(f.lib.root()).unwrap());
    let first = Arc::new(f.lib);
    let workers: Vec<_> = [first.clone(), other.clone()]
        .into_iter()
        .enumerate()
        .map(|(w, lib)| {
            thread::spawn(move || {
                for i in 0..60u64 {
                    let seg = put(&lib, None, 4, 256, w as u64 * 1000 + i);
                    let new = NewNode::new(format!("w{w}-{i}"), NodeKind::Chat, MODEL)
                        .under(root)
                        .with_state(seg.hash, 4);
                    lib.create_node(&new)
                        .expect("a write must wait for the other handle, not fail");
                    lib.tree(NodeOrder::Name).expect("reads run alongside writes");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    for lib in [&first, &other] {
        assert_eq!(
            lib.children(Some(root), NodeOrder::Name).unwrap().len(),
            120,
            "each handle sees every node"
        );
    }
    assert!(first.verify(content_check).unwrap().is_ok());
}

#[test]
fn gc_with_its_default_grace_never_breaks_a_concurrent_writer() {
    let f = fixture();
    let gc_lib = Library::open(f.lib.root()).unwrap();
    let writer = thread::spawn(move || {
        for i in 0..40u64 {
            let seg = put(&f.lib, None, 2, 128, 50_000 + i);
            // Between the put and the create another process may run gc: the grace period
            // keeps the just-put segment.
            node(&f.lib, None, &format!("n{i}"), Some(&seg), 2);
        }
        f
    });
    while !writer.is_finished() {
        gc_lib.gc().unwrap();
        // SQLite's busy handler polls: a gc loop with no pause could starve the writer
        // past the busy timeout. Real gcs are occasional.
        thread::sleep(std::time::Duration::from_millis(2));
    }
    let f = writer.join().unwrap();
    let report = f.lib.verify(content_check).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.nodes_checked, 40);
}
