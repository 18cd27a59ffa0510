//! Search over names, tags, notes and transcripts.

use super::common::{fixture, MODEL};
use freeze_attn_library::{NewNode, NodeKind, NodeOrder};

#[test]
fn search_matches_each_field_case_insensitively_and_says_where() {
    let f = fixture();
    let mut by_name = NewNode::new("Captain Émile", NodeKind::Personality, MODEL);
    by_name.pinned = true;
    let by_name = f.lib.create_node(&by_name).unwrap();
    let mut by_tag = NewNode::new("two", NodeKind::Story, MODEL);
    by_tag.tags = vec!["ÉMILE-fans".into()];
    let by_tag = f.lib.create_node(&by_tag).unwrap();
    let mut by_notes = NewNode::new("three", NodeKind::Document, MODEL);
    by_notes.notes = "mentions emile without accent".into();
    f.lib.create_node(&by_notes).unwrap();
    let mut by_transcript = NewNode::new("four", NodeKind::Chat, MODEL);
    by_transcript.transcript = r#"[{"role":"user","content":"Bonjour ÉMILE"}]"#.into();
    let by_transcript = f.lib.create_node(&by_transcript).unwrap();
    f.lib
        .create_node(&NewNode::new("unrelated", NodeKind::Chat, MODEL))
        .unwrap();

    let hits = f.lib.search("émile", NodeOrder::Name).unwrap();
    let found: Vec<_> = hits
        .iter()
        .map(|h| (h.node.id, h.in_name, h.in_tags, h.in_notes, h.in_transcript))
        .collect();
    assert_eq!(
        found,
        vec![
            (by_name, true, false, false, false),
            (by_transcript, false, false, false, true),
            (by_tag, false, true, false, false),
        ],
        "pinned first, then by name; 'emile' without the accent is a different word"
    );
    assert_eq!(
        f.lib.search("  CAPTAIN ", NodeOrder::Name).unwrap().len(),
        1,
        "the query is trimmed and folded"
    );
    assert!(
        f.lib.search("   ", NodeOrder::Name).unwrap().is_empty(),
        "a blank query matches nothing"
    );
    assert_eq!(
        f.lib.search("role", NodeOrder::Name).unwrap().len(),
        1,
        "transcripts match as JSON text"
    );
}

#[test]
fn nodes_tagged_matches_whole_tags() {
    let f = fixture();
    let mut a = NewNode::new("a", NodeKind::Chat, MODEL);
    a.tags = vec!["Sci-Fi".into()];
    let a = f.lib.create_node(&a).unwrap();
    let mut b = NewNode::new("b", NodeKind::Chat, MODEL);
    b.tags = vec!["sci".into()];
    f.lib.create_node(&b).unwrap();
    let ids: Vec<_> = f
        .lib
        .nodes_tagged("SCI-FI", NodeOrder::Name)
        .unwrap()
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, vec![a]);
    assert_eq!(
        f.lib.nodes_tagged("sci-fi", NodeOrder::Name).unwrap()[0].tags,
        vec!["sci-fi"]
    );
}

#[test]
fn hits_come_in_the_same_order_as_listings() {
    let f = fixture();
    for (name, pinned) in [
        ("delta", false),
        ("Alpha", false),
        ("charlie", true),
        ("bravo", false),
        ("Écho", false),
    ] {
        let mut n = NewNode::new(name, NodeKind::Story, MODEL);
        n.pinned = pinned;
        n.notes = "shared word: lantern".into();
        f.lib.create_node(&n).unwrap();
    }
    for order in [NodeOrder::Name, NodeOrder::Created] {
        let listed: Vec<_> = f.lib.children(None, order).unwrap();
        let hits: Vec<_> = f.lib.search("LANTERN", order).unwrap();
        assert_eq!(
            hits.iter().map(|h| &h.node).collect::<Vec<_>>(),
            listed.iter().collect::<Vec<_>>(),
            "{order:?}: search sorts its hits like SQL sorts a listing, summaries included"
        );
        assert!(hits
            .iter()
            .all(|h| h.in_notes && !h.in_name && !h.in_tags && !h.in_transcript));
    }
    let names: Vec<_> = f
        .lib
        .search("lantern", NodeOrder::Name)
        .unwrap()
        .into_iter()
        .map(|h| h.node.name)
        .collect();
    assert_eq!(
        names,
        ["charlie", "Alpha", "bravo", "delta", "Écho"],
        "pinned first, then folded names"
    );
}
