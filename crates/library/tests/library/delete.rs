//! Deleting nodes: reparenting children or removing a subtree, and the bytes that frees.

use super::common::{fixture, node, put};
use freeze_attn_library::{DeleteMode, LibraryError, NodeId, NodeOrder};

/// root(a:1000) -> mid(+b:100) -> leaf(+c:10); mid -> leaf2 (rewind into a: no own bytes)
struct Tree {
    f: super::common::Fixture,
    root: NodeId,
    mid: NodeId,
    leaf: NodeId,
    leaf2: NodeId,
}

fn tree() -> Tree {
    let f = fixture();
    let a = put(&f.lib, None, 10, 1000, 1);
    let b = put(&f.lib, Some(&a), 10, 100, 2);
    let c = put(&f.lib, Some(&b), 10, 10, 3);
    let root = node(&f.lib, None, "root", Some(&a), 10);
    let mid = node(&f.lib, Some(root), "mid", Some(&b), 20);
    let leaf = node(&f.lib, Some(mid), "leaf", Some(&c), 30);
    let leaf2 = node(&f.lib, Some(mid), "leaf2", Some(&c), 5);
    Tree {
        f,
        root,
        mid,
        leaf,
        leaf2,
    }
}

#[test]
fn reparent_moves_children_up_and_frees_only_the_nodes_own_segments() {
    let t = tree();
    let preview = t.f.lib.preview_delete(t.mid, DeleteMode::Reparent).unwrap();
    let done = t.f.lib.delete_node(t.mid, DeleteMode::Reparent).unwrap();
    assert_eq!(preview, done, "the preview predicts the delete");
    assert_eq!(done.deleted, vec![t.mid]);
    assert_eq!(done.reparented, vec![t.leaf, t.leaf2]);
    assert_eq!(done.freed_bytes, 0, "segment b is still used by leaf's chain");
    assert!(matches!(t.f.lib.node(t.mid), Err(LibraryError::NodeNotFound(id)) if id == t.mid));
    let kids: Vec<NodeId> =
        t.f.lib
            .children(Some(t.root), NodeOrder::Name)
            .unwrap()
            .iter()
            .map(|n| n.id)
            .collect();
    assert_eq!(kids, vec![t.leaf, t.leaf2]);
}

#[test]
fn subtree_delete_removes_descendants_and_reports_freed_bytes() {
    let t = tree();
    let done = t.f.lib.delete_node(t.mid, DeleteMode::Subtree).unwrap();
    assert_eq!(done.deleted, vec![t.mid, t.leaf, t.leaf2]);
    assert_eq!(
        done.freed_bytes, 110,
        "b and c are used by no remaining node; a is the root's"
    );
    assert!(t.f.lib.children(Some(t.root), NodeOrder::Name).unwrap().is_empty());
    let all = t.f.lib.delete_node(t.root, DeleteMode::Subtree).unwrap();
    assert_eq!(
        all.freed_bytes, 1000,
        "deleting bytes already unreferenced is not counted twice"
    );
    assert!(t.f.lib.tree(NodeOrder::Name).unwrap().is_empty());
}

#[test]
fn reparent_refuses_a_name_clash_and_deletes_nothing() {
    let t = tree();
    node(&t.f.lib, Some(t.root), "leaf", None, 0);
    let err = t.f.lib.delete_node(t.mid, DeleteMode::Reparent).unwrap_err();
    assert!(
        matches!(&err, LibraryError::NameTaken { name, parent } if name == "leaf" && *parent == Some(t.root)),
        "{err:?}"
    );
    assert!(t.f.lib.node(t.mid).is_ok(), "a refused delete changes nothing");
    assert!(matches!(
        t.f.lib.delete_node(NodeId(999), DeleteMode::Subtree),
        Err(LibraryError::NodeNotFound(_))
    ));
}

#[test]
fn a_child_may_take_its_deleted_parents_name() {
    let f = fixture();
    let top = node(&f.lib, None, "same", None, 0);
    let kid = node(&f.lib, Some(top), "same", None, 0);
    f.lib.delete_node(top, DeleteMode::Reparent).unwrap();
    assert_eq!(
        f.lib.node(kid).unwrap().parent,
        None,
        "the child moved to the top level"
    );
}

#[test]
fn delete_frees_tags_with_the_node() {
    let t = tree();
    t.f.lib.add_tag(t.leaf, "gone").unwrap();
    t.f.lib.delete_node(t.leaf, DeleteMode::Subtree).unwrap();
    assert!(t.f.lib.nodes_tagged("gone", NodeOrder::Name).unwrap().is_empty());
}
