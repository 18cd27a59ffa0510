//! Creating and editing nodes.

use super::common::{fixture, node, put, MODEL};
use freeze_attn_library::{LibraryError, NewNode, NodeId, NodeKind, SegmentId};

#[test]
fn a_created_node_reads_back_with_every_field() {
    let f = fixture();
    let seg = put(&f.lib, None, 12, 100, 1);
    let parent = node(&f.lib, None, "Parent", None, 0);
    let mut new = NewNode::new("  Pirate  ", NodeKind::Personality, MODEL)
        .under(parent)
        .with_state(seg.hash.clone(), 12);
    new.notes = "arr".into();
    new.tags = vec!["Fun".into(), "sea".into()];
    new.transcript = r#"[{"role":"user","content":"Ahoy"}]"#.into();
    new.pinned = true;
    let id = f.lib.create_node(&new).unwrap();
    let n = f.lib.node(id).unwrap();
    assert_eq!(n.id, id);
    assert_eq!(n.parent, Some(parent));
    assert_eq!(n.name, "Pirate", "names are trimmed");
    assert_eq!(n.kind, NodeKind::Personality);
    assert_eq!(n.notes, "arr");
    assert_eq!(n.tags, vec!["fun", "sea"], "tags are folded and sorted");
    assert!(n.pinned);
    assert_eq!(n.model_fingerprint.as_str(), MODEL);
    assert_eq!((n.tip, n.token_count), (Some(seg.hash), 12));
    assert_eq!(n.transcript, new.transcript);
    assert!(n.created_at > 0 && n.created_at == n.updated_at);
}

#[test]
fn names_are_unique_among_siblings_ignoring_case() {
    let f = fixture();
    let a = node(&f.lib, None, "Émile", None, 0);
    let err = f
        .lib
        .create_node(&NewNode::new("émile", NodeKind::Chat, MODEL))
        .unwrap_err();
    assert!(matches!(&err, LibraryError::NameTaken { parent: None, .. }), "{err:?}");
    node(&f.lib, Some(a), "Émile", None, 0); // The same name under another parent is fine.
    node(&f.lib, None, "Émile 2", None, 0);
}

/// Recognises the error a case expects.
type IsExpected = fn(&LibraryError) -> bool;

#[test]
fn bad_input_gives_named_errors() {
    let f = fixture();
    let seg = put(&f.lib, None, 10, 10, 1);
    let base = || NewNode::new("n", NodeKind::Story, MODEL);
    let cases: Vec<(NewNode, IsExpected)> = vec![
        (
            NewNode {
                name: " \t".into(),
                ..base()
            },
            |e| matches!(e, LibraryError::InvalidName { .. }),
        ),
        (
            NewNode {
                transcript: "{oops".into(),
                ..base()
            },
            |e| matches!(e, LibraryError::InvalidTranscript(_)),
        ),
        (base().under(NodeId(999)), |e| {
            matches!(e, LibraryError::NodeNotFound(NodeId(999)))
        }),
        (base().with_state(SegmentId::parse(&"ab".repeat(32)).unwrap(), 1), |e| {
            matches!(e, LibraryError::SegmentNotFound(_))
        }),
        (base().with_state(seg.hash.clone(), 11), |e| {
            matches!(
                e,
                LibraryError::TokenCountOutOfRange {
                    token_count: 11,
                    available: 10
                }
            )
        }),
        (
            NewNode {
                token_count: 3,
                ..base()
            },
            |e| matches!(e, LibraryError::TokenCountOutOfRange { .. }),
        ),
        (
            NewNode {
                model_fingerprint: "other".into(),
                ..base().with_state(seg.hash.clone(), 5)
            },
            |e| matches!(e, LibraryError::ModelMismatch { .. }),
        ),
        (
            NewNode {
                tags: vec!["".into()],
                ..base()
            },
            |e| matches!(e, LibraryError::InvalidTag { .. }),
        ),
    ];
    for (new, is_expected) in cases {
        let err = f.lib.create_node(&new).unwrap_err();
        assert!(is_expected(&err), "unexpected error {err:?} for {new:?}");
    }
    assert!(
        f.lib.tree(Default::default()).unwrap().is_empty(),
        "failed creates write nothing"
    );
}

#[test]
fn a_rewind_is_stored_against_the_segment_holding_its_last_token() {
    let f = fixture();
    let a = put(&f.lib, None, 10, 100, 1);
    let b = put(&f.lib, Some(&a), 10, 100, 2);
    let c = put(&f.lib, Some(&b), 10, 100, 3);
    let cases = [(30, &c), (21, &c), (20, &b), (11, &b), (10, &a), (1, &a)];
    for (i, (tokens, expected)) in cases.into_iter().enumerate() {
        let id = node(&f.lib, None, &format!("r{i}"), Some(&c), tokens);
        let n = f.lib.node(id).unwrap();
        assert_eq!(
            n.tip.as_ref(),
            Some(&expected.hash),
            "{tokens} tokens end in the segment starting at {}",
            expected.start
        );
        assert_eq!(n.token_count, tokens);
    }
    let empty = node(&f.lib, None, "zero", Some(&c), 0);
    assert_eq!(f.lib.node(empty).unwrap().tip, None, "an empty state has no tip");
}

#[test]
fn rename_notes_pin_and_tags_edit_one_node() {
    let f = fixture();
    let id = node(&f.lib, None, "Old", None, 0);
    node(&f.lib, None, "Taken", None, 0);
    let created = f.lib.node(id).unwrap().updated_at;
    std::thread::sleep(std::time::Duration::from_millis(3));
    f.lib.rename_node(id, "OLD").unwrap(); // Changing only the case is allowed.
    assert!(matches!(
        f.lib.rename_node(id, "taken"),
        Err(LibraryError::NameTaken { .. })
    ));
    assert!(matches!(
        f.lib.rename_node(NodeId(77), "x"),
        Err(LibraryError::NodeNotFound(NodeId(77)))
    ));
    f.lib.set_notes(id, "some notes").unwrap();
    f.lib.set_pinned(id, true).unwrap();
    assert!(f.lib.add_tag(id, "Blue").unwrap());
    assert!(!f.lib.add_tag(id, "blue ").unwrap(), "a tag is added once");
    assert!(f.lib.add_tag(id, "red").unwrap());
    assert!(f.lib.remove_tag(id, "RED").unwrap());
    assert!(!f.lib.remove_tag(id, "red").unwrap());
    assert!(matches!(
        f.lib.add_tag(NodeId(77), "x"),
        Err(LibraryError::NodeNotFound(_))
    ));
    assert!(matches!(
        f.lib.set_notes(NodeId(77), "x"),
        Err(LibraryError::NodeNotFound(_))
    ));
    let n = f.lib.node(id).unwrap();
    assert_eq!(
        (n.name.as_str(), n.notes.as_str(), n.pinned),
        ("OLD", "some notes", true)
    );
    assert_eq!(n.tags, vec!["blue"]);
    assert!(n.updated_at > created, "edits bump updated_at");
    f.lib.set_pinned(id, false).unwrap();
    assert!(!f.lib.node(id).unwrap().pinned);
}

#[test]
fn move_refuses_cycles_and_taken_names() {
    let f = fixture();
    let a = node(&f.lib, None, "a", None, 0);
    let b = node(&f.lib, Some(a), "b", None, 0);
    let c = node(&f.lib, Some(b), "c", None, 0);
    let d = node(&f.lib, None, "c", None, 0);
    assert!(
        matches!(f.lib.move_node(a, Some(c)), Err(LibraryError::MoveCycle { node, new_parent }) if node == a && new_parent == c)
    );
    assert!(
        matches!(f.lib.move_node(a, Some(a)), Err(LibraryError::MoveCycle { .. })),
        "not under itself"
    );
    assert!(
        matches!(f.lib.move_node(d, Some(b)), Err(LibraryError::NameTaken { .. })),
        "b already has a child c"
    );
    assert!(matches!(
        f.lib.move_node(d, Some(NodeId(404))),
        Err(LibraryError::NodeNotFound(NodeId(404)))
    ));
    assert!(
        matches!(
            f.lib.move_node(c, None),
            Err(LibraryError::NameTaken { parent: None, .. })
        ),
        "top level has a c"
    );
    f.lib.move_node(c, Some(a)).unwrap();
    assert_eq!(f.lib.node(c).unwrap().parent, Some(a));
    f.lib.move_node(b, None).unwrap();
    assert_eq!(f.lib.node(b).unwrap().parent, None);
}

/// Questions asked of a document come back oldest first, after the library is opened again;
/// at most MAX_QUESTIONS are kept (the oldest go first); they go with their node.
#[test]
fn questions_asked_of_a_node_are_kept_in_order_and_bounded() {
    use freeze_attn_library::{DeleteMode, Library, Question, MAX_QUESTIONS};
    let f = fixture();
    let doc = node(&f.lib, None, "Doc", None, 0);
    let other = node(&f.lib, None, "Other", None, 0);
    let q = |i: usize| Question {
        asked_at_ms: 1_000 + i as i64,
        question: format!("Question {i}?"),
        answer: format!("Answer {i}."),
        tokens: i as u64,
        finish: "stop_token".into(),
    };
    f.lib.add_question(doc, &q(0)).unwrap();
    f.lib.add_question(doc, &q(1)).unwrap();
    f.lib.add_question(other, &q(7)).unwrap();
    let again = Library::open(f.lib.root()).unwrap();
    assert_eq!(again.questions(doc).unwrap(), vec![q(0), q(1)]);
    assert_eq!(again.questions(other).unwrap(), vec![q(7)]);
    for i in 2..MAX_QUESTIONS + 5 {
        f.lib.add_question(doc, &q(i)).unwrap();
    }
    let kept = f.lib.questions(doc).unwrap();
    assert_eq!(kept.len(), MAX_QUESTIONS);
    assert_eq!(kept.first(), Some(&q(5)), "the oldest went first");
    assert_eq!(kept.last(), Some(&q(MAX_QUESTIONS + 4)));
    assert!(matches!(
        f.lib.add_question(NodeId(999_999), &q(0)),
        Err(LibraryError::NodeNotFound(_))
    ));
    f.lib.delete_node(doc, DeleteMode::Subtree).unwrap();
    assert!(f.lib.questions(doc).is_err(), "a deleted node has no questions");
    assert_eq!(f.lib.questions(other).unwrap().len(), 1);
}

#[test]
fn a_preview_is_kept_as_one_bounded_line() {
    let f = fixture();
    let mut new = NewNode::new("p", NodeKind::Chat, MODEL);
    new.preview = format!("  Ahoy,\n\tmatey!\u{7}  {}", "long ".repeat(100));
    let id = f.lib.create_node(&new).unwrap();
    let preview = f.lib.summary(id).unwrap().preview;
    assert!(preview.starts_with("Ahoy, matey! long long"), "{preview:?}");
    assert_eq!(preview.chars().count(), 160);
    assert!(!preview.ends_with(' ') && !preview.contains('\u{7}'));
    let plain = f.lib.create_node(&NewNode::new("q", NodeKind::Chat, MODEL)).unwrap();
    assert_eq!(f.lib.summary(plain).unwrap().preview, "");
}

#[test]
fn an_empty_branch_is_filled_in_place_and_only_while_empty() {
    let f = fixture();
    let s1 = put(&f.lib, None, 10, 10, 1);
    let s2 = put(&f.lib, Some(&s1), 5, 10, 2);
    let other = put(&f.lib, None, 20, 10, 3);
    let root = node(&f.lib, None, "chat", Some(&s1), 10);
    let branch = node(&f.lib, Some(root), "chat (fork)", Some(&s1), 10);
    let sibling = node(&f.lib, Some(root), "taken", Some(&s1), 10);
    assert!(f.lib.is_empty_branch(branch).unwrap());
    assert!(
        !f.lib.is_empty_branch(root).unwrap(),
        "a top-level node is not a branch"
    );
    let fill = |name: &str, tip: &freeze_attn_library::SegmentMeta, tokens: u64| freeze_attn_library::BranchFill {
        name: name.into(),
        kind: NodeKind::Personality,
        tip: Some(tip.hash.clone()),
        token_count: tokens,
        transcript: "[]".into(),
        preview: "the new words".into(),
    };
    let refused = |r: Result<(), LibraryError>| matches!(r, Err(LibraryError::NotAnEmptyBranch { .. }));
    assert!(
        refused(f.lib.fill_branch(branch, &fill("x", &other, 20))),
        "not a continuation"
    );
    assert!(matches!(
        f.lib.fill_branch(branch, &fill("Taken", &s2, 15)),
        Err(LibraryError::NameTaken { .. })
    ));
    f.lib.fill_branch(branch, &fill("the pirate's reply", &s2, 15)).unwrap();
    let n = f.lib.node(branch).unwrap();
    assert_eq!(
        (n.name.as_str(), n.token_count, n.parent),
        ("the pirate's reply", 15, Some(root))
    );
    assert_eq!(n.tip, Some(s2.hash.clone()));
    assert_eq!(n.kind, NodeKind::Personality);
    assert_eq!(f.lib.summary(branch).unwrap().preview, "the new words");
    assert!(!f.lib.is_empty_branch(branch).unwrap());
    assert!(
        refused(f.lib.fill_branch(branch, &fill("again", &s2, 15))),
        "filled once"
    );
    node(&f.lib, Some(sibling), "child", Some(&s1), 10);
    assert!(
        refused(f.lib.fill_branch(sibling, &fill("y", &s2, 15))),
        "it has children"
    );
}
