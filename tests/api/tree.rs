//! The tree's maintenance operations on real states: `verify`, `gc` and `recover` when the
//! catalogue is lost.

use crate::support::{continue_greedy, greedy, model};
use freeze_attn::session::Session;
use freeze_attn::{tree, Library, NodeId, NodeKind};

#[test]
fn a_lost_catalogue_is_recovered_from_its_segment_files_and_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let m = model();
    let lib = Library::open(dir.path()).unwrap();
    let mut s = Session::new(
        freeze_attn::open_model("default", freeze_attn::engine::DeviceChoice::Cpu).unwrap(),
        lib,
    )
    .unwrap();
    s.start_live(NodeKind::Chat, Some("You are terse."));
    s.chat_send("Hello! I collect old maps.", &greedy(12), &mut |_| {})
        .unwrap();
    s.freeze("maps", NodeKind::Chat).unwrap();
    s.chat_send("Which one is oldest?", &greedy(12), &mut |_| {}).unwrap();
    let tip = s.freeze("maps 2", NodeKind::Chat).unwrap();
    let question = m.tokenizer.encode(" And the rarest?").unwrap();
    let mut before = freeze_attn::thaw::thaw(&s.library, &s.model, NodeId(tip.id))
        .unwrap()
        .state;
    let expected = continue_greedy(&mut before, &question, 16);
    drop(s);

    // The catalogue is lost; a new, empty one is made on the next open.
    for name in ["library.sqlite3", "library.sqlite3-wal", "library.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.path().join(name));
    }
    let lib = Library::open(dir.path()).unwrap();
    // Everything on disk is older than the new catalogue by at least this.
    let report = tree::verify(&lib).unwrap();
    assert!(!report.is_ok(), "verify must not say ok over a lost catalogue");
    let e = tree::gc(&lib, true).unwrap_err();
    assert_eq!(e.code(), "library_unhealthy", "{e}");
    assert_eq!(lib.uncatalogued_files().unwrap().len(), 2, "gc deleted nothing");

    let r = tree::recover(&lib).unwrap();
    assert_eq!((r.segments, r.nodes.len(), r.skipped.len()), (2, 1, 0), "{r:?}");
    assert!(tree::verify(&lib).unwrap().is_ok(), "whole again");
    let recovered = NodeId(r.nodes[0]);
    let mut after = freeze_attn::thaw::thaw(&lib, m, recovered).unwrap().state;
    assert_eq!(after.tokens(), before.tokens().get(..after.len()).unwrap());
    assert_eq!(
        continue_greedy(&mut after, &question, 16),
        expected,
        "the recovered state continues exactly like the original"
    );
    assert_eq!(
        tree::recover(&lib).unwrap().segments,
        0,
        "a second recover finds nothing"
    );
}

/// Rewrites a bundle's manifest (and the header's hash of it) with `edit`.
fn with_manifest(bundle: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let len = u64::from_le_bytes(bundle[12..20].try_into().unwrap()) as usize;
    let mut manifest: serde_json::Value = serde_json::from_slice(&bundle[52..52 + len]).unwrap();
    edit(&mut manifest);
    let json = serde_json::to_vec(&manifest).unwrap();
    let mut out = bundle[..12].to_vec();
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(&json).as_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bundle[52 + len..]);
    out
}

#[test]
fn a_bundle_manifest_is_checked_against_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    let m = model();
    let mut s = Session::new(
        freeze_attn::open_model("default", freeze_attn::engine::DeviceChoice::Cpu).unwrap(),
        Library::open(dir.path().join("a")).unwrap(),
    )
    .unwrap();
    s.start_live(NodeKind::Story, None);
    s.continue_text("The tide came in slowly", &greedy(4), &mut |_| {})
        .unwrap();
    let n = s.freeze("tide", NodeKind::Story).unwrap();
    let file = dir.path().join("tide.fabundle");
    freeze_attn::export::export_node(&s.library, NodeId(n.id), &file).unwrap();
    let good = std::fs::read(&file).unwrap();
    let other = Library::open(dir.path().join("b")).unwrap();
    type Lie = fn(&mut serde_json::Value);
    let lies: [(&str, Lie); 3] = [
        ("dtype", |v| v["segments"][0]["dtype"] = "q8".into()),
        ("token count", |v| {
            v["segments"][0]["token_count"] = 3.into();
            v["node"]["token_count"] = 3.into();
        }),
        ("model", |v| {
            v["segments"][0]["model_fingerprint"] = "0123456789abcdef0123456789abcdef".into();
        }),
    ];
    for (field, lie) in lies {
        let forged = dir.path().join("forged.fabundle");
        std::fs::write(&forged, with_manifest(&good, lie)).unwrap();
        let e = freeze_attn::export::import_bundle(&other, m, &forged, None, None).unwrap_err();
        assert!(e.to_string().contains(field), "a manifest lying about the {field}: {e}");
        assert!(
            tree::list_tree(&other, None).unwrap().is_empty(),
            "nothing was imported"
        );
    }
    let id = freeze_attn::export::import_bundle(&other, m, &file, None, None).unwrap();
    assert_eq!(
        tree::show(&other, id, None).unwrap().view.token_count,
        n.token_count,
        "the control imports"
    );
}

#[test]
fn a_bundle_whose_segment_claims_ten_million_layers_is_refused_at_once() {
    // The segment's own header lies (its manifest entry is made to match, checksums and all):
    // the count must be checked against what the file holds before anything is allocated.
    let dir = tempfile::tempdir().unwrap();
    let m = model();
    let mut s = Session::new(
        freeze_attn::open_model("default", freeze_attn::engine::DeviceChoice::Cpu).unwrap(),
        Library::open(dir.path().join("a")).unwrap(),
    )
    .unwrap();
    s.start_live(NodeKind::Story, None);
    s.continue_text("Waves", &greedy(2), &mut |_| {}).unwrap();
    let n = s.freeze("waves", NodeKind::Story).unwrap();
    let file = dir.path().join("waves.bundle");
    freeze_attn::export::export_node(&s.library, NodeId(n.id), &file).unwrap();
    let good = std::fs::read(&file).unwrap();
    let len = u64::from_le_bytes(good[12..20].try_into().unwrap()) as usize;
    let segment = dir.path().join("seg");
    std::fs::write(&segment, &good[52 + len..]).unwrap();
    crate::support::edit_header(&segment, |meta| {
        meta.insert("kv_shape".into(), "10000000,3,64".into());
    });
    let hostile = std::fs::read(&segment).unwrap();
    let mut forged = with_manifest(&good, |v| {
        v["segments"][0]["bytes"] = (hostile.len() as u64).into();
        v["segments"][0]["blake3"] = blake3::hash(&hostile).to_hex().to_string().into();
    });
    let mlen = u64::from_le_bytes(forged[12..20].try_into().unwrap()) as usize;
    forged.truncate(52 + mlen);
    forged.extend_from_slice(&hostile);
    let path = dir.path().join("hostile.bundle");
    std::fs::write(&path, &forged).unwrap();
    let other = Library::open(dir.path().join("b")).unwrap();
    let t0 = std::time::Instant::now();
    let e = freeze_attn::export::import_bundle(&other, m, &path, None, None).unwrap_err();
    assert_eq!(e.code(), "state_corrupted", "{e}");
    assert!(e.to_string().contains("10000000-layer"), "{e}");
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "refused without working through the claimed layers (was 36 s): {:?}",
        t0.elapsed()
    );
    assert!(
        tree::list_tree(&other, None).unwrap().is_empty(),
        "nothing was imported"
    );
}

#[test]
fn an_exported_cache_node_imports_as_a_visible_node() {
    use freeze_attn::engine::{CancelToken, Message};
    use freeze_attn::session::complete::{CompletionInput, CompletionRequest};
    let dir = tempfile::tempdir().unwrap();
    let m = model();
    let mut s = Session::new(
        freeze_attn::open_model("default", freeze_attn::engine::DeviceChoice::Cpu).unwrap(),
        Library::open(dir.path().join("a")).unwrap(),
    )
    .unwrap();
    let req = CompletionRequest {
        input: CompletionInput::Chat(vec![Message::user("Hello there.")]),
        tools: None,
        max_tokens: Some(3),
        params: greedy(3),
        n: 1,
        state: None,
        freeze: None,
        cache: true,
        echo: false,
    };
    let cached = s
        .complete(&req, &CancelToken::new(), &mut |_, _| {})
        .unwrap()
        .cached_as
        .unwrap();
    let file = dir.path().join("cache.bundle");
    freeze_attn::export::export_node(&s.library, cached, &file).unwrap();
    let other = Library::open(dir.path().join("b")).unwrap();
    let id = freeze_attn::export::import_bundle(&other, m, &file, None, Some("kept")).unwrap();
    let listed = tree::list_tree(&other, None).unwrap();
    assert_eq!(listed.len(), 1, "an imported state is shown");
    assert_eq!((listed[0].id, listed[0].kind), (id.0, NodeKind::Chat));
}
