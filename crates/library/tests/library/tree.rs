//! Listings: order, depth-first walk, bytes on disk, dedup across forks.

use super::common::{bytes_in, fixture, node, put};
use freeze_attn_library::{NodeId, NodeOrder};

#[test]
fn pinned_siblings_come_first_then_name_or_creation_order() {
    let f = fixture();
    let b = node(&f.lib, None, "banana", None, 0);
    let a = node(&f.lib, None, "Apple", None, 0);
    let c = node(&f.lib, None, "cherry", None, 0);
    f.lib.set_pinned(c, true).unwrap();
    let ids = |order| -> Vec<NodeId> { f.lib.children(None, order).unwrap().iter().map(|n| n.id).collect() };
    assert_eq!(
        ids(NodeOrder::Name),
        vec![c, a, b],
        "pinned first, then case-insensitive name"
    );
    assert_eq!(ids(NodeOrder::Created), vec![c, b, a], "pinned first, then oldest");
}

#[test]
fn tree_is_depth_first_with_depths() {
    let f = fixture();
    let r1 = node(&f.lib, None, "r1", None, 0);
    let r2 = node(&f.lib, None, "r2", None, 0);
    let k1 = node(&f.lib, Some(r1), "k1", None, 0);
    let g = node(&f.lib, Some(k1), "g", None, 0);
    let k2 = node(&f.lib, Some(r1), "k2", None, 0);
    let k3 = node(&f.lib, Some(r2), "k3", None, 0);
    let walk: Vec<(usize, NodeId)> = f
        .lib
        .tree(NodeOrder::Name)
        .unwrap()
        .iter()
        .map(|e| (e.depth, e.node.id))
        .collect();
    assert_eq!(walk, vec![(0, r1), (1, k1), (2, g), (1, k2), (0, r2), (1, k3)]);
}

#[test]
fn own_bytes_is_what_a_node_adds_to_its_parent() {
    let f = fixture();
    let a = put(&f.lib, None, 10, 1000, 1);
    let b = put(&f.lib, Some(&a), 10, 100, 2);
    let b2 = put(&f.lib, Some(&a), 10, 30, 3);
    let root = node(&f.lib, None, "root", Some(&a), 10);
    let fork1 = node(&f.lib, Some(root), "fork1", Some(&b), 20);
    let fork2 = node(&f.lib, Some(fork1), "sibling branch", Some(&b2), 20);
    let rewind = node(&f.lib, Some(fork1), "rewind", Some(&b), 5);
    let bytes = |id| {
        f.lib
            .tree(NodeOrder::Name)
            .unwrap()
            .into_iter()
            .find(|e| e.node.id == id)
            .unwrap()
            .node
            .own_bytes
    };
    assert_eq!(bytes(root), 1000, "a root pays for its whole chain");
    assert_eq!(bytes(fork1), 100, "a fork pays for its extension only");
    assert_eq!(
        bytes(fork2),
        30,
        "a branch from an earlier point pays from the fork point"
    );
    assert_eq!(bytes(rewind), 0, "a rewind inside the parent's chain costs nothing");
    assert_eq!(
        f.lib.subtree_bytes(fork1).unwrap(),
        130,
        "the subtree's cost on top of root"
    );
    assert_eq!(
        f.lib.subtree_bytes(root).unwrap(),
        1130,
        "each shared segment counted once"
    );
}

#[test]
fn a_hundred_forks_of_one_base_store_the_base_once() {
    const BASE: usize = 64 * 1024;
    const FORK: usize = 1024;
    let f = fixture();
    let root = node(&f.lib, None, "base", None, 0);
    for i in 0..100u64 {
        // Every fork re-puts the whole base chain, as an engine freezing a full state would.
        let b1 = put(&f.lib, None, 100, BASE, 1);
        let b2 = put(&f.lib, Some(&b1), 100, BASE, 2);
        let own = put(&f.lib, Some(&b2), 5, FORK, 100 + i);
        node(&f.lib, Some(root), &format!("fork {i}"), Some(&own), 205);
    }
    let expected = 2 * BASE as u64 + 100 * FORK as u64;
    assert_eq!(
        bytes_in(f.lib.segments_dir()),
        expected,
        "the base chain is stored once, each fork adds only its own segment"
    );
    let forks = f.lib.children(Some(root), NodeOrder::Name).unwrap();
    assert_eq!(forks.len(), 100);
    let charged: u64 = forks.iter().map(|n| n.own_bytes).sum();
    assert_eq!(
        charged,
        100 * (2 * BASE as u64 + FORK as u64),
        "a root-less fork pays for the base itself"
    );
    assert_eq!(
        f.lib.subtree_bytes(root).unwrap(),
        expected,
        "the subtree total counts the base once"
    );
}

#[test]
fn children_of_a_missing_node_is_an_error() {
    let f = fixture();
    assert!(f.lib.children(Some(NodeId(5)), NodeOrder::Name).is_err());
}

#[test]
fn listings_carry_each_nodes_notes() {
    // The app's tree is built from listings; a node's notes must be there after a restart, not
    // only in a single-node lookup.
    let f = fixture();
    let a = node(&f.lib, None, "a", None, 0);
    f.lib.set_notes(a, "met at the harbour").unwrap();
    let again = freeze_attn_library::Library::open(f.lib.root()).unwrap();
    let listed = again.tree(NodeOrder::Name).unwrap();
    assert_eq!(listed[0].node.notes, "met at the harbour");
    let found = again.search("harbour", NodeOrder::Name).unwrap();
    assert_eq!(
        found[0].node.notes, "met at the harbour",
        "search finds notes and returns them"
    );
}
