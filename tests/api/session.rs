//! The live session over a real library: chat, freeze, thaw, fork, stories, documents, and the
//! library guarantees that need the model (dedup, refusing another model's states).

use crate::support::greedy;
use freeze_attn::bench::sample_tokens;
use freeze_attn::fork::ForkPoint;
use freeze_attn::session::Session;
use freeze_attn::Transcript;
use freeze_attn_library::{Library, NewNode, NodeId, NodeKind};

fn session(dir: &std::path::Path) -> Session {
    let model = freeze_attn::open_model("default", freeze_attn::engine::DeviceChoice::Cpu).unwrap();
    Session::new(model, Library::open(dir).unwrap()).unwrap()
}

#[test]
fn chat_freeze_and_thaw_in_a_new_session_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let p = greedy(24);
    let mut a = session(dir.path());
    a.start_live(NodeKind::Chat, Some("You are a helpful assistant."));
    a.chat_send("Hi! I am Ada and I study the planets.", &p, &mut |_| {})
        .unwrap();
    let frozen = a.freeze("ada", NodeKind::Personality).unwrap();
    assert_eq!(frozen.kind, NodeKind::Personality);
    assert!(!a.live().dirty);
    let r2 = a.chat_send("Name one planet.", &p, &mut |_| {}).unwrap();
    assert!(
        r2.prompt_tokens < 20,
        "only the new turn is processed, not {} tokens",
        r2.prompt_tokens
    );
    assert!(a.live().dirty);
    // Another session (as after a restart) thaws the node and asks the same question.
    let mut b = session(dir.path());
    let t = b.thaw(NodeId(frozen.id)).unwrap();
    assert_eq!(
        (t.reused_tokens, t.reprocessed_tokens, t.from_memory),
        (frozen.token_count as usize, 0, false)
    );
    let r2b = b.chat_send("Name one planet.", &p, &mut |_| {}).unwrap();
    assert_eq!(
        r2b.text, r2.text,
        "a thawed personality answers exactly as the live one did"
    );
    // Switching back is served from memory.
    let again = b.thaw(NodeId(frozen.id)).unwrap();
    assert!(again.from_memory);
    // Freezing after continuing writes a child node that holds only the new tokens.
    let child = b.freeze("ada asked", NodeKind::Chat).unwrap();
    assert_eq!(child.parent, Some(frozen.id));
    assert!(child.own_bytes < frozen.own_bytes, "the child stores only its own turn");
}

#[test]
fn fork_at_a_message_keeps_the_conversation_up_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = greedy(16);
    let mut s = session(dir.path());
    s.start_live(NodeKind::Chat, Some("You are terse."));
    s.chat_send("Name a color.", &p, &mut |_| {}).unwrap();
    s.chat_send("Name an animal.", &p, &mut |_| {}).unwrap();
    let node = s.freeze("two turns", NodeKind::Chat).unwrap();
    // Fork after message 2 (the first answer): system, user, assistant.
    let r = s
        .fork(
            NodeId(node.id),
            Some(ForkPoint {
                message: 2,
                char_offset: None,
            }),
            "after the color",
        )
        .unwrap();
    let Transcript::Chat { messages } = &r.live.transcript else {
        panic!("a chat")
    };
    assert_eq!(messages.len(), 3);
    let text = s.model.template().unwrap().render(messages, false).unwrap();
    let scratch = s.model.tokenizer.encode(&text).unwrap();
    assert_eq!(
        r.reused_tokens,
        scratch.len(),
        "the fork holds exactly the tokens of the kept conversation"
    );
    assert_eq!(r.reprocessed_tokens, 0);
    assert_eq!(
        s.node_view(NodeId(r.node)).unwrap().parent,
        None,
        "a fork at an earlier message is a branch beside the longer chat, not its child"
    );
    // It continues with a different question.
    let reply = s.chat_send("Name a fruit.", &p, &mut |_| {}).unwrap();
    assert!(!reply.text.is_empty());
    // Fork inside the assistant's answer, then let the model finish that message.
    let r = s
        .fork(
            NodeId(node.id),
            Some(ForkPoint {
                message: 2,
                char_offset: Some(2),
            }),
            "mid answer",
        )
        .unwrap();
    assert!(r.reused_tokens < scratch.len());
    let cont = s.continue_reply(&p, &mut |_| {}).unwrap();
    let Transcript::Chat { messages } = &cont.live.transcript else {
        panic!()
    };
    assert!(
        messages.last().unwrap().content.len() >= 2 && cont.text.starts_with(&messages.last().unwrap().content[..2])
    );
}

#[test]
fn story_alternatives_become_sibling_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path());
    s.start_live(NodeKind::Story, None);
    let mut params = greedy(12);
    params.sampling.temperature = 1.0;
    params.sampling.seed = 7;
    s.continue_text("The lighthouse keeper opened the door and saw", &params, &mut |_| {})
        .unwrap();
    let mut streamed = vec![String::new(); 3];
    let alts = s
        .story_alternatives(3, &params, &mut |i, t| streamed[i].push_str(t))
        .unwrap();
    assert_eq!(alts.len(), 3);
    for a in &alts {
        assert_eq!(streamed[a.index], a.text, "alternative {} streamed in full", a.index);
    }
    assert!(
        alts[0].text != alts[1].text || alts[1].text != alts[2].text,
        "different seeds give different continuations"
    );
    let nodes = s.keep_alternative(1, "the door", true).unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[0].name, "the door");
    for (n, i) in nodes[1..].iter().zip([0, 2]) {
        let first = alts[i].text.split_whitespace().next().unwrap_or("(empty)");
        assert!(
            n.name.starts_with(&format!("the door · {first}")),
            "a kept sibling is named by how it begins: {} for {:?}",
            n.name,
            alts[i].text
        );
    }
    assert!(
        nodes.iter().all(|n| n.parent == nodes[0].parent),
        "the alternatives are siblings"
    );
    let Transcript::Text { text } = &s.live().transcript else {
        panic!()
    };
    assert!(
        text.ends_with(&alts[1].text),
        "the live story continues with the chosen alternative"
    );
    let tree = freeze_attn::tree::list_tree(&s.library, Some(&s.model)).unwrap();
    assert_eq!(tree.len(), 4, "the beginning and three alternatives");
    for (n, i) in nodes.iter().zip([1, 0, 2]) {
        let own = alts[i].text.split_whitespace().collect::<Vec<_>>().join(" ");
        let shown = tree.iter().find(|t| t.id == n.id).unwrap();
        assert!(
            !own.is_empty() && own.starts_with(&shown.preview),
            "an alternative's preview is its own words, not the story's start: {:?} for {own:?}",
            shown.preview
        );
    }
}

#[test]
fn a_document_answers_questions_and_stays_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path());
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/documents/printing-press.md");
    let mut reports = 0;
    let node = s
        .process_document(&doc, "printing press", &mut |_| reports += 1)
        .unwrap();
    assert!(reports >= 1 && node.token_count > 300);
    let before = s.library.node(NodeId(node.id)).unwrap();
    let mut text = String::new();
    let a = s
        .ask(
            NodeId(node.id),
            "Who invented the movable-type printing press?",
            &greedy(24),
            &mut |e| {
                if let freeze_attn::engine::Event::Text(t) = e {
                    text.push_str(t)
                }
            },
        )
        .unwrap();
    assert!(!a.text.is_empty() && a.text == text);
    assert!(a.text.contains("Gutenberg"), "{}", a.text);
    assert!(
        a.prompt_tokens < 60,
        "the question alone is processed, not the document"
    );
    let after = s.library.node(NodeId(node.id)).unwrap();
    assert_eq!(
        (after.tip, after.token_count),
        (before.tip, before.token_count),
        "asking leaves the document node untouched"
    );
    let live = s.continue_from_answer().unwrap();
    assert!(live.dirty && live.token_count > node.token_count as usize);
    // The question and its answer are kept with the document, across a restart.
    drop(s);
    let s = session(dir.path());
    let history = s.questions(NodeId(node.id)).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].question, "Who invented the movable-type printing press?");
    assert_eq!(
        (history[0].answer.as_str(), history[0].tokens),
        (a.text.as_str(), a.tokens)
    );
    assert_eq!(history[0].finish, a.finish);
}

#[test]
fn freezing_after_forking_a_whole_node_fills_the_fork_instead_of_adding_a_grandchild() {
    let dir = tempfile::tempdir().unwrap();
    let p = greedy(12);
    let mut s = session(dir.path());
    s.start_live(NodeKind::Chat, Some("You are a pirate."));
    s.chat_send("Ahoy! Who are you?", &p, &mut |_| {}).unwrap();
    let chat = s.freeze("pirate", NodeKind::Chat).unwrap();
    assert!(!chat.preview.is_empty(), "a chat's preview is its last reply");
    let fork = s.fork(NodeId(chat.id), None, "pirate, second try").unwrap();
    let fork_id = NodeId(fork.node);
    assert!(s.library.is_empty_branch(fork_id).unwrap());
    assert_eq!(s.empty_branch_base().unwrap(), None, "nothing added yet");
    let reply = s.chat_send("Where is the treasure?", &p, &mut |_| {}).unwrap();
    assert_eq!(s.empty_branch_base().unwrap(), Some(fork_id));
    let filled = s.freeze("treasure question", NodeKind::Chat).unwrap();
    assert_eq!(filled.id, fork_id.0, "the fork itself holds the new turn");
    assert_eq!(filled.parent, Some(chat.id));
    assert_eq!(filled.name, "treasure question");
    assert!(filled.own_bytes > 0 && filled.token_count > chat.token_count);
    let said = reply.text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        !filled.preview.is_empty() && said.starts_with(&filled.preview),
        "the preview is the new reply: {:?} vs {said:?}",
        filled.preview
    );
    let children: Vec<_> = freeze_attn::tree::list_tree(&s.library, None)
        .unwrap()
        .into_iter()
        .filter(|n| n.parent == Some(fork_id.0))
        .collect();
    assert!(children.is_empty(), "no grandchild: {children:?}");
    // The filled fork thaws in another session and continues exactly like this one.
    let next = s.chat_send("And the map?", &p, &mut |_| {}).unwrap();
    let mut b = session(dir.path());
    b.thaw(fork_id).unwrap();
    assert_eq!(b.chat_send("And the map?", &p, &mut |_| {}).unwrap().text, next.text);
    // Freezing on from a filled fork makes a child again.
    let child = s.freeze("map question", NodeKind::Chat).unwrap();
    assert_eq!(child.parent, Some(fork_id.0));
}

#[test]
fn models_opened_from_files_are_listed_to_load_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path());
    s.start_live(NodeKind::Chat, None);
    s.chat_send("Hi", &greedy(4), &mut |_| {}).unwrap();
    s.freeze("hello", NodeKind::Chat).unwrap();
    // A model loaded once from a file that has since gone is not offered.
    s.library
        .put_model(&freeze_attn_library::ModelRecord {
            fingerprint: "ab".repeat(32).as_str().into(),
            display_name: "Gone".into(),
            path: dir.path().join("gone.gguf"),
        })
        .unwrap();
    let opened = freeze_attn::models::opened(&s.library).unwrap();
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0].path, s.model.info.path);
    assert_eq!(opened[0].name, s.model.info.name);
    assert_eq!(opened[0].states, 1);
    assert_eq!(opened[0].bytes, std::fs::metadata(&s.model.info.path).unwrap().len());
}

#[test]
fn forks_share_their_base_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path());
    let m = &s.model;
    let base_tokens = sample_tokens(m, 2048).unwrap();
    let text = m.tokenizer.decode_with_special(&base_tokens).unwrap();
    s.start_live(NodeKind::Story, None);
    // A 2,048-token state, frozen (the text is the sample document; 1 token is generated).
    s.continue_text(&text, &greedy(1), &mut |_| {}).unwrap();
    let base = s.freeze("base", NodeKind::Personality).unwrap();
    // 100 forks, each extended by about 100 tokens (text appended, one token generated).
    let extension = " and then".repeat(50);
    for i in 0..100 {
        s.thaw(NodeId(base.id)).unwrap();
        s.continue_text(&extension, &greedy(1), &mut |_| {}).unwrap();
        s.freeze(&format!("fork {i}"), NodeKind::Personality).unwrap();
    }
    let own: u64 = freeze_attn::tree::list_tree(&s.library, None)
        .unwrap()
        .iter()
        .filter(|n| n.id != base.id)
        .map(|n| n.token_count - base.token_count)
        .sum();
    let total: u64 = std::fs::read_dir(s.library.segments_dir())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let per_token = base.own_bytes as f64 / base.token_count as f64;
    let budget = 1.1 * (base.own_bytes as f64 + own as f64 * per_token);
    eprintln!("100 forks: {total} bytes on disk, budget {budget:.0}");
    assert!(
        (total as f64) <= budget,
        "{total} bytes on disk exceed 1.1× the base plus the forks' own tokens ({budget:.0})"
    );
}

#[test]
fn a_node_of_another_model_is_shown_but_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session(dir.path());
    let other = NewNode::new("alien", NodeKind::Chat, "f".repeat(32));
    let id = s.library.create_node(&other).unwrap();
    let tree = freeze_attn::tree::list_tree(&s.library, Some(&s.model)).unwrap();
    let alien = tree.iter().find(|n| n.id == id.0).unwrap();
    assert!(!alien.compatible);
    assert_eq!(
        alien.model_path, None,
        "a model this library never loaded has no path to offer"
    );
    // Once the library has seen that model loaded from a file, the node offers the file.
    let file = dir.path().join("other-model.gguf");
    std::fs::write(&file, b"weights").unwrap();
    s.library
        .put_model(&freeze_attn_library::ModelRecord {
            fingerprint: "f".repeat(32).into(),
            display_name: "Other".into(),
            path: file.clone(),
        })
        .unwrap();
    let tree = freeze_attn::tree::list_tree(&s.library, Some(&s.model)).unwrap();
    let alien = tree.iter().find(|n| n.id == id.0).unwrap();
    assert_eq!(alien.model_path.as_deref(), file.to_str());
    assert_eq!(alien.model_name, "Other");
    std::fs::remove_file(&file).unwrap();
    let tree = freeze_attn::tree::list_tree(&s.library, Some(&s.model)).unwrap();
    assert_eq!(
        tree.iter().find(|n| n.id == id.0).unwrap().model_path,
        None,
        "a file gone is not offered"
    );
    let e = s.thaw(id).unwrap_err();
    assert_eq!(e.code(), "state_model_mismatch");
    assert!(
        e.to_string().contains("alien") && e.to_string().contains(&s.model.info.name),
        "{e}"
    );
}
