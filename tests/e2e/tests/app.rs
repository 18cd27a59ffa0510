//! The real app, end to end, on the default model: a chat is frozen and forked, two nodes are
//! switched between, story alternatives are generated and kept, a document is processed and
//! asked a question. Each step asserts on what the real model and the real library did, and
//! screenshots of the main screens go to docs/screenshots/.
//!
//! Run through `scripts/e2e` (builds the app, starts Xvfb; needs tauri-driver and WebKitWebDriver).

use freeze_attn_e2e::{env_path, repo_root, tid, Driver, Session};
use freeze_attn_library::{Library, NodeKind, NodeOrder};

fn nodes(lib_dir: &std::path::Path) -> Vec<freeze_attn_library::NodeSummary> {
    Library::open(lib_dir)
        .unwrap()
        .tree(NodeOrder::Created)
        .unwrap()
        .into_iter()
        .map(|e| e.node)
        .collect()
}

#[test]
fn the_real_app_end_to_end() {
    let app = env_path("FREEZE_ATTN_APP", "the built app (scripts/e2e sets it)");
    let home = env_path("FREEZE_ATTN_HOME", "a scratch data folder (scripts/e2e sets it)");
    let lib_dir = home.join("library");
    let shots = repo_root().join("docs/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    // A stand-in for the Hugging Face Hub (the real one is out of reach here) serving the default
    // model's file under another name, slowly enough to watch the progress bar; the app finds it
    // through HF_ENDPOINT, which it inherits from tauri-driver.
    let models_dir = env_path("FREEZE_ATTN_MODELS", "the models folder (scripts/e2e sets it)");
    let default_file = models_dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let hub_repo = models_dir.join("hub").join("e2e-test");
    let staging = models_dir.join(".downloads").join("models--e2e-test--SmolLM2-GGUF");
    let _ = std::fs::remove_dir_all(&hub_repo);
    let _ = std::fs::remove_dir_all(&staging);
    let hub = freeze_attn_testhub::start_hub(
        [(
            "e2e-test/SmolLM2-GGUF".to_string(),
            freeze_attn_testhub::HubRepo {
                gated: false,
                files: vec![(
                    "SmolLM2-135M-Instruct-Q4_1.gguf".to_string(),
                    freeze_attn_testhub::file(std::fs::read(&default_file).unwrap(), true),
                )],
            },
        )]
        .into_iter()
        .collect(),
    );
    hub.slow_ms.store(40, std::sync::atomic::Ordering::SeqCst);
    std::env::set_var("HF_ENDPOINT", hub.endpoint());
    std::env::set_var("HF_HOME", home.join("hf"));
    std::env::remove_var("HF_TOKEN");
    let driver = Driver::start(4444).unwrap();
    let s = Session::new(&driver, &app).unwrap();
    let result = (|| -> freeze_attn_e2e::Result<()> {
        // The model loads (the status bar names it as its file does, with its weight type).
        s.until("the model to load", 180, || {
            Ok(s.text(&tid("status-model"))? == "SmolLM2-135M-Instruct")
        })?;
        assert_eq!(s.text(&tid("status-quant"))?, "Q4_1");
        s.screenshot(&shots.join("01-start.png"))?;

        // Chat, then freeze it as a personality.
        let reply = s.chat("Hi! My name is Ada and I love the sea. Please greet me.", 1)?;
        assert!(reply.len() > 5, "the model replied: {reply:?}");
        s.screenshot(&shots.join("02-chat.png"))?;
        s.freeze_as("Ada", Some("personality"))?;
        s.until("the frozen node in the library", 60, || Ok(nodes(&lib_dir).len() == 1))?;
        let ada = nodes(&lib_dir)[0].clone();
        assert_eq!((ada.name.as_str(), ada.kind), ("Ada", NodeKind::Personality));
        assert!(ada.token_count > 20, "the node holds the conversation's tokens");
        s.wait(&tid(&format!("tree-node-{}", ada.id)), 30)?;

        // Fork it: a child with the same tokens, nothing written.
        s.click(&tid(&format!("tree-node-{}", ada.id)))?;
        s.until("the thaw report", 60, || {
            Ok(s.text(&tid("status-report")).unwrap_or_default().contains("full reuse"))
        })?;
        s.click(&tid("fork-open"))?;
        s.type_into(&tid("fork-name"), "Ada at sea")?;
        s.click(&tid("fork-submit"))?;
        s.until("the fork", 60, || Ok(nodes(&lib_dir).len() == 2))?;
        let fork = nodes(&lib_dir).into_iter().find(|n| n.name == "Ada at sea").unwrap();
        assert_eq!(
            (fork.parent, fork.token_count, fork.own_bytes),
            (Some(ada.id), ada.token_count, 0),
            "a fork shares its parent's state"
        );

        // Continue the fork and freeze it: the empty fork itself takes the new turn and the name
        // given now (no child of a 0-byte copy), so the two nodes differ.
        s.chat("What do I love?", 3)?;
        s.click(&tid("freeze-open"))?;
        assert!(s.text(&tid("freeze-dialog"))?.contains("fill the branch"));
        s.type_into(&tid("freeze-name"), "Ada asked")?;
        s.click(&tid("freeze-submit"))?;
        s.until("the fork filled", 60, || {
            Ok(nodes(&lib_dir).iter().any(|n| n.name == "Ada asked"))
        })?;
        assert_eq!(nodes(&lib_dir).len(), 2, "the fork was filled, not given a child");
        let asked = nodes(&lib_dir).into_iter().find(|n| n.name == "Ada asked").unwrap();
        assert_eq!((asked.id, asked.parent), (fork.id, Some(ada.id)));
        assert!(!asked.preview.is_empty(), "the node's preview is its last reply");
        assert!(asked.token_count > ada.token_count);

        // One-click switching: each thaw reuses the saved prefix fully; switching back is from memory.
        s.click(&tid(&format!("tree-node-{}", ada.id)))?;
        s.until("Ada thawed", 60, || {
            Ok(s.text(&tid("status-report"))
                .unwrap_or_default()
                .contains(&format!("{}", ada.token_count)))
        })?;
        s.click(&tid(&format!("tree-node-{}", asked.id)))?;
        s.until("the other node thawed", 60, || {
            let r = s.text(&tid("status-report")).unwrap_or_default();
            Ok(r.contains("full reuse") && r.contains("from memory"))
        })?;
        s.screenshot(&shots.join("03-library.png"))?;

        // Regenerate the last reply: a branch that ends before it, answered again; the old reply
        // stays in "Ada asked", and the tree shows both.
        let count = nodes(&lib_dir).len();
        s.click(&tid("regenerate-3"))?;
        s.until("the regenerated reply", 300, || {
            Ok(nodes(&lib_dir).len() == count + 1
                && s.exists(&tid("message-3"))?
                && !s.exists(&tid("message-streaming"))?
                && s.enabled(&tid("continue-3"))?)
        })?;
        let regen = nodes(&lib_dir)
            .into_iter()
            .find(|n| n.name == "Ada asked · regenerated")
            .expect("a branch named after the regenerated node");
        assert!(
            regen.token_count < asked.token_count && regen.token_count > ada.token_count,
            "the branch holds the conversation up to the question: {} tokens",
            regen.token_count
        );
        assert!(!s.text(&tid("message-3"))?.trim().is_empty(), "a new reply");
        let kept = nodes(&lib_dir).into_iter().find(|n| n.id == asked.id).unwrap();
        assert_eq!(kept.token_count, asked.token_count, "the regenerated node is unchanged");
        // The message actions, as a user pointing at the reply sees them, at the smaller size.
        s.resize(1024, 700)?;
        s.hover(&tid("message-3"))?;
        s.screenshot(&shots.join("10-message-actions-1024.png"))?;
        s.resize(1280, 800)?;
        s.click(&tid("freeze-open"))?;
        s.type_into(&tid("freeze-name"), "Ada asked again")?;
        s.click(&tid("freeze-submit"))?;
        s.until("the new reply frozen", 60, || Ok(nodes(&lib_dir).len() == count + 2))?;

        // Story mode: three alternatives side by side, one kept.
        s.click(&tid("view-story"))?;
        if s.exists(&tid("story-new"))? {
            s.click(&tid("story-new"))?;
        } else {
            s.click(&tid("new-story"))?;
            if s.exists(&tid("new-live-submit"))? {
                s.click(&tid("new-live-submit"))?;
            }
        }
        s.type_into(&tid("story-draft"), "The lighthouse keeper opened the door and saw")?;
        s.type_into(&tid("alt-count"), "3")?;
        s.click(&tid("alt-generate"))?;
        s.wait(&tid("alt-2"), 300)?;
        s.until("three alternatives", 600, || {
            Ok(s.enabled(&tid("alt-keep-2"))? && !s.text(&tid("alt-2"))?.trim().is_empty())
        })?;
        s.screenshot(&shots.join("04-story.png"))?;
        let before = nodes(&lib_dir).len();
        if s.exists(&tid("alt-keep-name"))? {
            s.type_into(&tid("alt-keep-name"), "The door")?;
        }
        s.click(&tid("alt-keep-1"))?;
        s.until("the kept alternative", 60, || Ok(nodes(&lib_dir).len() >= before + 2))?;
        assert!(
            nodes(&lib_dir).iter().any(|n| n.kind == NodeKind::Story),
            "story nodes are in the library"
        );

        // Document mode: process a small document, ask it a question.
        s.click(&tid("view-document"))?;
        let doc = repo_root().join("assets/documents/printing-press.md");
        s.type_into(&tid("doc-path"), doc.to_str().unwrap())?;
        s.type_into(&tid("doc-name"), "Printing press")?;
        s.click(&tid("doc-process"))?;
        s.until("the document node", 600, || {
            Ok(nodes(&lib_dir).iter().any(|n| n.kind == NodeKind::Document))
        })?;
        let docnode = nodes(&lib_dir)
            .into_iter()
            .find(|n| n.kind == NodeKind::Document)
            .unwrap();
        assert!(docnode.token_count > 300);
        s.type_into(&tid("doc-question"), "Who invented the movable-type printing press?")?;
        s.click(&tid("doc-ask"))?;
        s.wait(&tid("qa-0"), 120)?;
        s.until("the answer", 300, || {
            Ok(s.enabled(&tid("doc-ask")).unwrap_or(false) || s.exists(&tid("qa-continue"))?)
        })?;
        let answer = s.text(&tid("qa-0"))?;
        assert!(
            answer.contains("Gutenberg"),
            "the answer comes from the document's state: {answer:?}"
        );
        let after = nodes(&lib_dir).into_iter().find(|n| n.id == docnode.id).unwrap();
        assert_eq!(
            after.token_count, docnode.token_count,
            "asking leaves the document untouched"
        );
        s.screenshot(&shots.join("05-document.png"))?;

        // The graph of Ada's tree: clicking a node there thaws it.
        s.click(&tid(&format!("tree-node-{}", ada.id)))?;
        s.click(&tid("view-graph"))?;
        s.wait(&tid(&format!("graph-node-{}", ada.id)), 30)?;
        s.click(&tid(&format!("graph-node-{}", asked.id)))?;
        s.until("a thaw from the graph", 60, || {
            Ok(s.text(&tid("status-report"))
                .unwrap_or_default()
                .starts_with("thawed Ada asked in"))
        })?;
        // The map shows each node's text; the keyboard walks the tree (left: the parent) with the
        // path from the root highlighted, and Enter thaws.
        assert!(!s.text(&tid(&format!("graph-preview-{}", asked.id)))?.is_empty());
        s.press(&tid("graph-svg"), "ArrowLeft")?;
        s.until("the parent selected on the map", 10, || {
            s.has_class(&tid(&format!("graph-node-{}", ada.id)), "selected")
        })?;
        assert!(s.has_class(&tid(&format!("graph-node-{}", ada.id)), "on-path")?);
        assert!(!s.has_class(&tid(&format!("graph-node-{}", asked.id)), "on-path")?);
        s.press(&tid("graph-svg"), "Enter")?;
        s.until("Ada thawed from the keyboard", 60, || {
            Ok(s.text(&tid("status-report"))
                .unwrap_or_default()
                .starts_with("thawed Ada in"))
        })?;
        // Right: back along the branch last walked, and Enter thaws it again (from memory).
        s.press(&tid("graph-svg"), "ArrowRight")?;
        s.until("the child selected on the map", 10, || {
            s.has_class(&tid(&format!("graph-node-{}", asked.id)), "selected")
        })?;
        s.press(&tid("graph-svg"), "Enter")?;
        s.until("the branch thawed again from the keyboard", 60, || {
            let r = s.text(&tid("status-report")).unwrap_or_default();
            Ok(r.starts_with("thawed Ada asked in") && r.contains("from memory"))
        })?;
        s.screenshot(&shots.join("06-graph.png"))?;
        s.resize(1024, 700)?;
        s.screenshot(&shots.join("06-graph-1024.png"))?;
        s.resize(1280, 800)?;

        // Unfrozen turns are never lost silently: opening another node asks first, and "keep as
        // a draft" freezes them before the other node is thawed.
        s.click(&tid("view-chat"))?;
        s.type_into(&tid("composer-input"), "One more thing.")?;
        s.click(&tid("composer-send"))?;
        s.until("a reply not yet frozen", 300, || {
            Ok(!s.exists(&tid("message-streaming"))? && !s.exists(&tid("message-pending"))?)
        })?;
        let before = nodes(&lib_dir).len();
        s.click(&tid(&format!("tree-node-{}", ada.id)))?;
        s.wait(&tid("unfrozen-dialog"), 30)?;
        s.screenshot(&shots.join("07-unfrozen.png"))?;
        s.click(&tid("unfrozen-keep"))?;
        s.until("the draft node and the thaw", 60, || {
            Ok(nodes(&lib_dir).len() == before + 1
                && s.text(&tid("status-report"))
                    .unwrap_or_default()
                    .contains(&format!("{}", ada.token_count)))
        })?;
        let draft = nodes(&lib_dir)
            .into_iter()
            .find(|n| n.name.starts_with("draft "))
            .expect("a draft node");
        assert_eq!(
            draft.parent,
            Some(asked.id),
            "the draft continues the node it grew from"
        );

        // The document's question, asked before other nodes were thawed, is shown again when
        // the document is opened again (kept in the library, not only in the window).
        s.click(&tid(&format!("tree-node-{}", docnode.id)))?;
        s.until("the document thawed with its questions", 60, || {
            Ok(s.exists(&tid("qa-0"))? && s.text(&tid("qa-0"))?.contains("Gutenberg"))
        })?;
        s.click(&tid(&format!("tree-node-{}", ada.id)))?;
        s.until("Ada thawed again", 60, || {
            Ok(s.text(&tid("status-report"))
                .unwrap_or_default()
                .contains(&format!("{}", ada.token_count)))
        })?;

        // Other tools share the app's library: serve it over the OpenAI API on loopback; a real
        // HTTP client's request resumes from Ada's state instead of processing it again.
        s.click(&tid("inspector-model"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        s.type_into(&tid("serve-port"), &port.to_string())?;
        s.click(&tid("serve-toggle"))?;
        s.wait(&tid("serve-url"), 30)?;
        let url = s.text(&tid("serve-url"))?;
        assert_eq!(url, format!("http://127.0.0.1:{port}/v1"));
        s.screenshot(&shots.join("08-serve.png"))?;
        let answer: serde_json::Value = ureq::post(&format!("{url}/chat/completions"))
            .send_json(serde_json::json!({
                "messages": [{ "role": "user", "content": "What is my name?" }],
                "state": "Ada",
                "max_tokens": 16,
                "temperature": 0,
            }))
            .map_err(|e| e.to_string())?
            .into_json()
            .map_err(|e| e.to_string())?;
        // Resumed from Ada, or from a branch of Ada that shares even more of the prompt (the
        // next turn's opening tokens): either way, none of Ada's tokens are processed again.
        assert!(answer["resumed_from"].is_i64(), "{answer}");
        let cached = answer["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0);
        assert!(cached + 1 >= ada.token_count, "Ada's state is resumed: {answer}");
        let text = answer["choices"][0]["message"]["content"].as_str().unwrap_or("");
        assert!(!text.trim().is_empty(), "the model answered: {answer}");
        s.click(&tid("serve-toggle"))?;
        s.until("serving to stop", 30, || Ok(!s.exists(&tid("serve-url"))?))?;
        assert!(
            ureq::get(&format!("{url}/models")).call().is_err(),
            "the port is closed once serving is off"
        );

        // A model from the Hub: downloaded through the Models section with a moving progress
        // bar, loaded with one click, and the default model opened again after it.
        s.wait(&tid("models-section"), 30)?;
        // The notice about serving sits over the top of the panel: dismissed, as a person would.
        while s.exists(&tid("toast-dismiss"))? {
            s.click(&tid("toast-dismiss"))?;
        }
        s.type_into(&tid("pull-name"), "e2e-test/SmolLM2-GGUF:Q4_1")?;
        s.click(&tid("pull-start"))?;
        let bar = |s: &Session| -> freeze_attn_e2e::Result<f64> {
            Ok(s.run_js_args(
                "const b = document.querySelector('[data-testid=\"pull-bar\"]'); return b ? b.value : -1;",
                serde_json::json!([]),
            )?
            .as_f64()
            .unwrap_or(-1.0))
        };
        s.until("the download's progress bar to move", 120, || Ok(bar(&s)? > 0.0))?;
        let first = bar(&s)?;
        assert!(s.text(&tid("pull-bytes"))?.contains("MB of"), "bytes shown");
        s.screenshot(&shots.join("09-models.png"))?;
        s.until("the progress bar to advance", 120, || {
            Ok(bar(&s)? > first || !s.exists(&tid("pull-bar"))?)
        })?;
        s.until("the download to finish", 600, || s.exists(&tid("model-load")))?;
        assert!(s.text(&tid("installed-model"))?.contains("e2e-test/SmolLM2-GGUF:Q4_1"));
        s.click(&tid("model-load"))?;
        s.until("the downloaded model to load", 180, || s.exists(&tid("model-loaded")))?;
        assert!(
            s.text(&tid("model-file"))?.contains("hub/e2e-test/SmolLM2-GGUF/"),
            "the loaded model is the download"
        );
        // The default model, opened from its file at the start, is offered to load again.
        assert!(s.text(&tid("opened-models"))?.contains("SmolLM2-135M-Instruct"));
        assert!(s.exists(&tid("opened-load"))?);
        s.type_into(&tid("model-path"), default_file.to_str().unwrap())?;
        s.click(&tid("model-open"))?;
        s.until("the default model again", 180, || s.exists(&tid("model-load")))?;
        assert_eq!(s.text(&tid("model-file"))?, default_file.display().to_string());
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&hub_repo);
    let _ = std::fs::remove_dir_all(&staging);
    if result.is_err() {
        let _ = s.screenshot(&std::env::temp_dir().join("freeze-attn-e2e-failure.png"));
    }
    s.close();
    drop(driver);
    result.unwrap();
}
