//! The CLI as other tools script it: flags, `--json` output, exit codes and one-line errors.

use std::path::Path;
use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_freeze-attn"))
        .args(args)
        .output()
        .expect("run freeze-attn")
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// A failure: non-zero exit, one `freeze-attn: error:` line naming the problem, no panic.
fn fails_with(args: &[&str], needle: &str) {
    fails_with_status(args, needle, None);
}

/// [`fails_with`], and the exit status is `status` (README, "Exit codes").
fn fails_with_status(args: &[&str], needle: &str, status: Option<i32>) {
    let o = cli(args);
    if let Some(s) = status {
        assert_eq!(o.status.code(), Some(s), "{args:?}: exit status");
    }
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("freeze-attn: error:")).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one error line, got {err}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: {:?} does not mention {needle:?}",
        lines[0]
    );
}

#[test]
fn generate_json_contract() {
    let v = json(&cli(&[
        "generate",
        "--model",
        "default",
        "--prompt",
        "The capital of France is",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--json",
    ]));
    for k in ["prompt_tokens", "tokens", "text", "timings"] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    for k in ["load_ms", "prefill_ms", "decode_ms", "prefill_tok_s", "decode_tok_s"] {
        assert!(v["timings"][k].as_f64().is_some(), "missing timings.{k}: {v}");
    }
    assert_eq!(v["tokens"].as_array().unwrap().len(), 8);
    assert!(v["text"].as_str().unwrap().contains("Paris"), "{v}");
    let chat = json(&cli(&[
        "generate",
        "--chat",
        "--system",
        "You are a helpful assistant.",
        "--prompt",
        "What is the capital of France?",
        "--max-tokens",
        "12",
        "--temperature",
        "0",
        "--json",
    ]));
    assert!(chat["text"].as_str().unwrap().contains("Paris"), "{chat}");
    // The chat prompt is the template's rendering: it starts with <|im_start|> (id 1).
    assert_eq!(chat["prompt_tokens"][0], 1);

    // --json-object: the reply is one JSON object, and it ends there.
    let obj = json(&cli(&[
        "generate",
        "--chat",
        "--prompt",
        "Give me a JSON object describing a book, with the keys title, author and year.",
        "--max-tokens",
        "120",
        "--temperature",
        "0",
        "--json-object",
        "--json",
    ]));
    assert_eq!(obj["finish"], "stop_token", "{obj}");
    let reply: serde_json::Value = serde_json::from_str(obj["text"].as_str().unwrap()).unwrap();
    assert!(reply.is_object() && reply.get("title").is_some(), "{reply}");

    // --json-schema FILE: the reply is what the schema allows; a schema that cannot be followed
    // is one error line naming the keyword.
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("book.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"title": {"type": "string", "maxLength": 40},
            "year": {"type": "integer", "minimum": 1000, "maximum": 2100}, "genre": {"enum": ["novel", "poetry", "essay"]}},
            "required": ["title", "year", "genre"]}"#,
    )
    .unwrap();
    let obj = json(&cli(&[
        "generate",
        "--chat",
        "--prompt",
        "Describe a famous book.",
        "--max-tokens",
        "120",
        "--temperature",
        "0",
        "--json-schema",
        schema.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(obj["finish"], "stop_token", "{obj}");
    let reply: serde_json::Value = serde_json::from_str(obj["text"].as_str().unwrap()).unwrap();
    let keys: Vec<&String> = reply.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["title", "year", "genre"], "{reply}");
    assert!((1000..=2100).contains(&reply["year"].as_i64().unwrap()), "{reply}");
    assert!(["novel", "poetry", "essay"].contains(&reply["genre"].as_str().unwrap()));
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"d": {"type": "integer", "multipleOf": 7}}}"#,
    )
    .unwrap();
    fails_with(
        &["generate", "--prompt", "x", "--json-schema", schema.to_str().unwrap()],
        "`multipleOf` is not supported in response_format schemas (at #/properties/d)",
    );
}

/// `FREEZE_ATTN_KERNELS=generic` runs the GPU's code path (candle's ops) on the CPU, and the
/// JSON says which kernels ran; a value that is not a choice is one clear error line.
#[test]
fn the_generic_kernels_are_chosen_and_reported() {
    let run = |kernels: &str| {
        Command::new(env!("CARGO_BIN_EXE_freeze-attn"))
            .env("FREEZE_ATTN_KERNELS", kernels)
            .args(["generate", "--prompt", "The capital of France is", "--max-tokens", "6"])
            .args(["--temperature", "0", "--json"])
            .output()
            .expect("run freeze-attn")
    };
    let ours = json(&run("auto"));
    let generic = json(&run("generic"));
    assert_eq!(generic["kernels"], "generic", "{generic}");
    assert_ne!(ours["kernels"], "generic", "{ours}");
    assert_eq!(ours["device"], "cpu");
    assert!(generic["text"].as_str().unwrap().contains("Paris"), "{generic}");
    let bad = run("fast");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && !err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("freeze-attn: error:")).collect();
    assert!(
        lines.len() == 1 && lines[0].contains("FREEZE_ATTN_KERNELS") && lines[0].contains("generic"),
        "{err}"
    );
}

#[test]
fn prefix_then_generate_in_another_process_equals_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/documents/printing-press.md");
    let state = dir.path().join("doc.state");
    let p = json(&cli(&[
        "prefix",
        "--text-file",
        doc.to_str().unwrap(),
        "--out",
        state.to_str().unwrap(),
        "--json",
    ]));
    let n = p["tokens"].as_u64().unwrap() as usize;
    assert!(n > 300 && state.exists());
    let q = "\n\nIn short, the movable-type printing press was invented by";
    let thawed = json(&cli(&[
        "generate",
        "--state",
        state.to_str().unwrap(),
        "--prompt",
        q,
        "--max-tokens",
        "16",
        "--temperature",
        "0",
        "--json",
    ]));
    assert_eq!(
        thawed["reused_tokens"].as_u64(),
        Some(n as u64),
        "the whole prefix is reused"
    );
    assert!(thawed["timings"]["resume_ms"].as_f64().is_some());
    // One uninterrupted run over the same token sequence, in this process.
    let model = freeze_attn::open_model("default", freeze_attn::engine::DeviceChoice::Cpu).unwrap();
    let loaded = freeze_attn::load_state(&model, &state).unwrap();
    let mut seq = loaded.state.tokens().to_vec();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    seq.extend(ids(&thawed["prompt_tokens"]));
    let params = freeze_attn::engine::GenerateParams {
        max_tokens: 16,
        ..freeze_attn::engine::GenerateParams::greedy(0)
    };
    let mut live = model.model.new_state();
    let last = seq.pop().unwrap();
    model.model.prefill(&seq, &mut live, 512, &mut |_| true).unwrap();
    let g = freeze_attn::engine::generate(
        &model.model,
        &model.tokenizer,
        &mut live,
        &[last],
        &params,
        &Default::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        ids(&thawed["tokens"]),
        g.tokens,
        "the thawed state in another process continues like one uninterrupted run"
    );
    assert!(
        thawed["text"].as_str().unwrap().contains("Gutenberg"),
        "{}",
        thawed["text"]
    );

    // --save-state writes only the new tokens, as a child of the prefix.
    let child = dir.path().join("child.state");
    let c = json(&cli(&[
        "generate",
        "--state",
        state.to_str().unwrap(),
        "--chat",
        "--prompt",
        "Summarize it.",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--save-state",
        child.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(c["saved"]["parent"], p["id"]);
    assert_eq!(c["saved"]["start"].as_u64(), Some(n as u64));
    let again = json(&cli(&[
        "generate",
        "--state",
        child.to_str().unwrap(),
        "--prompt",
        " More:",
        "--max-tokens",
        "4",
        "--temperature",
        "0",
        "--json",
    ]));
    assert!(again["reused_tokens"].as_u64().unwrap() > n as u64);
}

#[test]
fn bench_resume_reports_both_sides() {
    let v = json(&cli(&[
        "bench-resume",
        "--prefix-tokens",
        "200",
        "--gen-tokens",
        "4",
        "--json",
    ]));
    for k in [
        "uncached_first_token_ms",
        "cached_first_token_ms",
        "first_token_speedup",
        "load_ms",
        "plain_read_gb_s",
        "state_bytes",
        "bytes_per_token",
    ] {
        assert!(v[k].as_f64().is_some(), "missing {k}: {v}");
    }
    assert_eq!(
        v["identical"], true,
        "cached and uncached runs must produce the same tokens"
    );
    assert_eq!(v["largest_logit_diff"], 0.0, "an f16 state resumes exactly: {v}");
}

#[test]
fn bad_input_gets_one_clear_error_line() {
    let dir = tempfile::tempdir().unwrap();
    fails_with(
        &["generate", "--model", "/nonexistent/m.gguf", "--prompt", "x", "--json"],
        "/nonexistent/m.gguf",
    );
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "not a model").unwrap();
    fails_with_status(
        &["generate", "--model", txt.to_str().unwrap(), "--prompt", "x"],
        "not a GGUF",
        Some(6),
    );
    let long = dir.path().join("long.txt");
    std::fs::write(&long, "word ".repeat(9000)).unwrap();
    fails_with(
        &["generate", "--prompt-file", long.to_str().unwrap(), "--max-tokens", "4"],
        "do not fit the model's context of 8192",
    );
    fails_with(&["generate", "--prompt", "x", "--device", "tpu"], "device `tpu`");
    fails_with(&["generate", "--prompt", "x", "--top-p", "0"], "top-p");
    let bogus = dir.path().join("bogus.state");
    std::fs::write(&bogus, vec![7u8; 100]).unwrap();
    fails_with_status(
        &["generate", "--state", bogus.to_str().unwrap(), "--prompt", "x"],
        "bogus.state",
        Some(5),
    );
    let home = dir.path().join("home");
    let mut states = Command::new(env!("CARGO_BIN_EXE_freeze-attn"));
    let o = states
        .args(["states", "show", "no-such-node"])
        .env("FREEZE_ATTN_HOME", &home)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "a missing node exits with 3");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no node is named `no-such-node`"));
    fails_with(
        &["prefix", "--text-file", "/nonexistent.txt", "--out", "/tmp/x.state"],
        "/nonexistent.txt",
    );
}

/// `RUST_LOG` turns on spans at the API boundary and in the engine (operation, tokens, time);
/// without it, stderr carries no log lines.
#[test]
fn rust_log_traces_operations_and_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "The lighthouse keeper kept a log of every ship that passed.").unwrap();
    let state = dir.path().join("t.state");
    let run = |args: &[&str], log: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_freeze-attn"));
        c.args(args).env_remove("RUST_LOG");
        if let Some(l) = log {
            c.env("RUST_LOG", l);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let quiet = run(
        &[
            "prefix",
            "--text-file",
            text.to_str().unwrap(),
            "--out",
            state.to_str().unwrap(),
        ],
        None,
    );
    assert!(!quiet.contains("save_state"), "no logs without RUST_LOG: {quiet}");
    let gen = [
        "generate",
        "--state",
        state.to_str().unwrap(),
        "--prompt",
        " Then",
        "--max-tokens",
        "2",
        "--temperature",
        "0",
    ];
    let logged = run(&gen, Some("freeze_attn=info,freeze_attn_engine=debug"));
    let line = logged
        .lines()
        .find(|l| l.contains("load_state{") && l.contains(" freeze_attn::state: close"))
        .unwrap_or_else(|| panic!("a closed load_state span: {logged}"));
    assert!(
        line.contains("tokens=") && line.contains("t.state") && line.contains("time.busy"),
        "the span names the file, the tokens and the time: {line}"
    );
    assert!(logged.contains("engine.load_chain"), "engine spans at debug: {logged}");
    assert!(logged.contains("engine.generate"), "{logged}");
    let quiet = run(&gen, None);
    assert!(!quiet.contains("load_state"), "no logs without RUST_LOG: {quiet}");
}

/// `generate --state X --save-state X` would write the new state over the parent it continues
/// from; it is refused, and X still loads.
#[test]
fn a_state_is_never_saved_over_its_own_parent() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "The harbour master counted the boats at dawn.").unwrap();
    let x = dir.path().join("x.state");
    let xs = x.to_str().unwrap();
    json(&cli(&[
        "prefix",
        "--text-file",
        text.to_str().unwrap(),
        "--out",
        xs,
        "--json",
    ]));
    let before = std::fs::read(&x).unwrap();
    fn grow<'a>(from: &'a str, to: &'a str) -> Vec<&'a str> {
        let mut v = vec!["generate", "--state", from, "--prompt", " Then", "--max-tokens", "2"];
        v.extend(["--temperature", "0", "--save-state", to]);
        v
    }
    fails_with(&grow(xs, xs), "--save-state");
    assert_eq!(std::fs::read(&x).unwrap(), before, "x is untouched");
    // Through a child: y continues x; saving y's continuation over x is refused too.
    let y = dir.path().join("y.state");
    let ys = y.to_str().unwrap();
    json(&cli(&[&grow(xs, ys)[..], &["--json"]].concat()));
    fails_with(&grow(ys, xs), "continues from");
    assert_eq!(std::fs::read(&x).unwrap(), before, "x is untouched");
    json(&cli(&[
        &grow(ys, dir.path().join("z.state").to_str().unwrap())[..],
        &["--json"],
    ]
    .concat()));
}

/// Runs the CLI, killing it after `secs`: `None` if it hung.
fn cli_within(args: &[&str], secs: u64) -> Option<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_freeze-attn"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A FIFO (or any non-regular file) named as an input is refused at once, never opened: opening
/// one for reading blocks until a writer appears.
#[test]
fn a_fifo_given_as_an_input_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let f = fifo.to_str().unwrap();
    for args in [
        vec!["generate", "--prompt-file", f, "--max-tokens", "1"],
        vec!["generate", "--state", f, "--prompt", "x", "--max-tokens", "1"],
        vec!["prefix", "--text-file", f, "--out", "/tmp/never.state"],
        vec!["states", "import", f],
    ] {
        let o = cli_within(&args, 60).unwrap_or_else(|| panic!("{args:?} hung on a FIFO"));
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("not a regular file"), "{args:?}: {err}");
    }
}

#[test]
fn a_node_exports_as_markdown_to_stdout_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let lib = freeze_attn_library::Library::open(home.join("library")).unwrap();
    let transcript = r#"{"mode":"chat","messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]}"#;
    let mut node = freeze_attn_library::NewNode::new("Ada", freeze_attn_library::NodeKind::Chat, "m");
    node.transcript = transcript.into();
    lib.create_node(&node).unwrap();
    drop(lib);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_freeze-attn"))
            .args(args)
            .env("FREEZE_ATTN_HOME", &home)
            .output()
            .unwrap()
    };
    let o = run(&["states", "markdown", "Ada"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected = "# Ada\n\n**System prompt**\n\n> Be kind.\n\n**You**\n\nHi\n\n**Model**\n\nHello!\n\n";
    assert_eq!(String::from_utf8_lossy(&o.stdout), expected);
    let file = dir.path().join("ada.md");
    let o = run(&["states", "markdown", "Ada", "--out", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), expected);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file is left");
    let o = run(&["states", "markdown", "Ada", "--out", "/nonexistent-dir/ada.md"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/nonexistent-dir/ada.md") && err.lines().count() == 1,
        "{err}"
    );
}
