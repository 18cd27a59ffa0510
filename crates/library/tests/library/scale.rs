//! A 10,000-node library: listings and search stay correct. Timings are in
//! `examples/scale.rs`, not asserted here.

use super::common::{fixture, put, MODEL};
use freeze_attn_library::{NewNode, NodeId, NodeKind, NodeOrder};
use std::collections::{HashMap, HashSet};

const GROUPS: u64 = 100;
const PER_GROUP: u64 = 99;

#[test]
fn ten_thousand_nodes_list_and_search_correctly() {
    let f = fixture();
    for g in 0..GROUPS {
        let a = put(&f.lib, None, 50, 256, g);
        let b = put(&f.lib, Some(&a), 50, 256, 1_000 + g);
        let mut root =
            NewNode::new(format!("personality {g:03}"), NodeKind::Personality, MODEL).with_state(b.hash.clone(), 100);
        root.pinned = g % 25 == 0;
        let mut parents = vec![f.lib.create_node(&root).unwrap()];
        for k in 0..PER_GROUP {
            let parent = parents[(k / 3) as usize];
            let mut new = NewNode::new(format!("g{g}-n{k}"), NodeKind::Chat, MODEL)
                .under(parent)
                .with_state(b.hash.clone(), 1 + (g * 7 + k) % 100);
            new.transcript = format!(
                r#"[{{"role":"user","content":"message {g}/{k}{}"}}]"#,
                if g == 42 && k == 17 { " NEEDLE" } else { "" }
            );
            if k % 10 == 0 {
                new.tags = vec!["tenth".into()];
            }
            parents.push(f.lib.create_node(&new).unwrap());
        }
    }

    let tree = f.lib.tree(NodeOrder::Name).unwrap();
    assert_eq!(tree.len(), 10_000);
    let mut depth_of: HashMap<NodeId, usize> = HashMap::new();
    for e in &tree {
        match e.node.parent {
            None => assert_eq!(e.depth, 0),
            Some(p) => assert_eq!(
                Some(&(e.depth - 1)),
                depth_of.get(&p),
                "a parent is listed before its children, one level up"
            ),
        }
        depth_of.insert(e.node.id, e.depth);
    }
    let top: Vec<&str> = tree
        .iter()
        .filter(|e| e.depth == 0)
        .map(|e| e.node.name.as_str())
        .take(5)
        .collect();
    assert_eq!(
        top,
        [
            "personality 000",
            "personality 025",
            "personality 050",
            "personality 075",
            "personality 001"
        ],
        "pinned first"
    );
    // Oracle: a node's own bytes are its chain's segments missing from its parent's chain.
    let tips: HashMap<NodeId, _> = tree.iter().map(|e| (e.node.id, e.node.tip.clone())).collect();
    let chain_of = |id: Option<NodeId>| -> HashSet<_> {
        match id.and_then(|id| tips[&id].clone()) {
            Some(tip) => f
                .lib
                .chain(&tip)
                .unwrap()
                .into_iter()
                .map(|s| (s.hash, s.bytes))
                .collect(),
            None => HashSet::new(),
        }
    };
    for e in tree.iter().step_by(37) {
        let own: u64 = chain_of(Some(e.node.id))
            .difference(&chain_of(e.node.parent))
            .map(|(_, b)| b)
            .sum();
        assert_eq!(e.node.own_bytes, own, "own bytes of {}", e.node.name);
    }
    let roots: u64 = tree.iter().filter(|e| e.depth == 0).map(|e| e.node.own_bytes).sum();
    assert_eq!(roots, GROUPS * 512, "roots pay for their whole chain");

    // Search hits carry the same summaries as the tree (own bytes need each parent's tip: from
    // the hits themselves, read one by one, or read all at once when many parents are not hits).
    let by_id: HashMap<NodeId, _> = tree.iter().map(|e| (e.node.id, &e.node)).collect();
    for (query, parents_outside) in [("needle", 1), ("G4", 11), ("message", 100)] {
        let hits = f.lib.search(query, NodeOrder::Name).unwrap();
        let outside: HashSet<_> = {
            let ids: HashSet<_> = hits.iter().map(|h| h.node.id).collect();
            hits.iter()
                .filter_map(|h| h.node.parent)
                .filter(|p| !ids.contains(p))
                .collect()
        };
        assert_eq!(outside.len(), parents_outside, "{query}");
        for h in &hits {
            assert_eq!(&&h.node, &by_id[&h.node.id], "{query}: {}", h.node.name);
        }
    }
    let needle = f.lib.search("needle", NodeOrder::Name).unwrap();
    assert_eq!(needle.len(), 1);
    assert_eq!(needle[0].node.name, "g42-n17");
    assert!(needle[0].in_transcript && !needle[0].in_name);
    assert_eq!(
        f.lib.search("G42-N7", NodeOrder::Name).unwrap().len(),
        11,
        "g42-n7 and g42-n70..79"
    );
    assert_eq!(
        f.lib.nodes_tagged("tenth", NodeOrder::Name).unwrap().len(),
        (GROUPS * 10) as usize
    );
    assert_eq!(f.lib.children(None, NodeOrder::Created).unwrap().len(), GROUPS as usize);
}
