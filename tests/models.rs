//! `freeze-attn models` against a stand-in for the Hugging Face Hub: a real HTTP server on the
//! loopback that answers the hub's endpoints (model info, `resolve/{revision}/{file}` with a
//! redirect to a file server, ETag, `x-linked-etag` SHA-256 and `x-repo-commit` headers, range
//! requests, 401 for a gated repository, 404) over real files: the default model and a small
//! one made here. The CLI runs as a user runs it, with `HF_ENDPOINT` pointing at the stand-in.

use freeze_attn_testhub::{file, sha256_hex, start_hub, Hub, HubRepo, GOOD_TOKEN};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The default model's bytes (fetched into the shared models folder by `fetch-model`).
fn default_model() -> (PathBuf, Vec<u8>) {
    let o = Command::new(env!("CARGO_BIN_EXE_freeze-attn"))
        .arg("fetch-model")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    let b = std::fs::read(&p).unwrap();
    (p, b)
}

/// A hub with `test/SmolLM2-GGUF` (the default model as Q4_1, and a second, small GGUF named
/// Q8_0), a gated `test/Gated-GGUF`, and `test/Folder` (a safetensors-shaped repository).
fn standard_hub() -> (Arc<Hub>, Vec<u8>) {
    let (_, model) = default_model();
    let small: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut repos = HashMap::new();
    repos.insert(
        "test/SmolLM2-GGUF".to_string(),
        HubRepo {
            gated: false,
            files: vec![
                ("SmolLM2-135M-Instruct-Q4_1.gguf".to_string(), file(model.clone(), true)),
                ("SmolLM2-135M-Instruct-Q8_0.gguf".to_string(), file(small.clone(), true)),
                ("README.md".to_string(), file(b"# SmolLM2".to_vec(), false)),
            ],
        },
    );
    repos.insert(
        "test/Gated-GGUF".to_string(),
        HubRepo {
            gated: true,
            files: vec![("gated-Q4_0.gguf".to_string(), file(small.clone(), true))],
        },
    );
    repos.insert(
        "test/Folder".to_string(),
        HubRepo {
            gated: false,
            files: vec![
                (
                    "config.json".to_string(),
                    file(
                        br#"{"model_type":"llama","torch_dtype":"bfloat16","max_position_embeddings":131072}"#.to_vec(),
                        false,
                    ),
                ),
                ("tokenizer.json".to_string(), file(b"{}".to_vec(), false)),
                ("model.safetensors".to_string(), file(small, true)),
                ("README.md".to_string(), file(b"# Folder".to_vec(), false)),
            ],
        },
    );
    repos.insert(
        "bartowski/Llama-3.2-1B-Instruct-GGUF".to_string(),
        HubRepo {
            gated: false,
            files: vec![(
                "Llama-3.2-1B-Instruct-Q4_K_M.gguf".to_string(),
                file(b"GGUF, but only in name".to_vec(), true),
            )],
        },
    );
    (start_hub(repos), model)
}

struct Env {
    hub: Arc<Hub>,
    models: tempfile::TempDir,
    home: tempfile::TempDir,
    /// `FREEZE_ATTN_CATALOGUE`: a catalogue of one's own instead of the shipped one.
    catalogue: Option<PathBuf>,
}

impl Env {
    fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            models: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            catalogue: None,
        }
    }

    /// The same, with a catalogue of one's own written from `json`.
    fn with_catalogue(hub: Arc<Hub>, json: &str) -> Self {
        let mut env = Self::new(hub);
        let path = env.home.path().join("catalogue.json");
        std::fs::write(&path, json).unwrap();
        env.catalogue = Some(path);
        env
    }

    fn command(&self, args: &[&str], token: Option<&str>) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_freeze-attn"));
        c.args(args)
            .env("FREEZE_ATTN_MODELS", self.models.path())
            .env("FREEZE_ATTN_HOME", self.home.path())
            .env("HF_HOME", self.home.path().join("hf"))
            .env(
                "HF_ENDPOINT",
                format!("http://127.0.0.1:{}", self.hub.port.load(Ordering::SeqCst)),
            )
            .env_remove("HF_TOKEN")
            .env_remove("FREEZE_ATTN_CATALOGUE");
        if let Some(path) = &self.catalogue {
            c.env("FREEZE_ATTN_CATALOGUE", path);
        }
        if let Some(t) = token {
            c.env("HF_TOKEN", t);
        }
        c
    }

    fn run(&self, args: &[&str], token: Option<&str>) -> Output {
        self.command(args, token).output().unwrap()
    }

    fn ok_json(&self, args: &[&str]) -> serde_json::Value {
        let o = self.run(args, None);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// Fails with one `freeze-attn: error:` line containing every needle.
    fn fails(&self, args: &[&str], token: Option<&str>, needles: &[&str]) -> String {
        let o = self.run(args, token);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(!err.contains("panicked"), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("freeze-attn: error:")).collect();
        assert_eq!(lines.len(), 1, "one error line: {err}");
        for n in needles {
            assert!(lines[0].contains(n), "{:?} lacks {n:?}", lines[0]);
        }
        lines[0].to_string()
    }

    fn installed_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.models.path().join("hub"), &mut out);
        out
    }

    fn partial_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.models.path().join(".downloads"), &mut out);
        out.retain(|p| p.to_string_lossy().ends_with(".part"));
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn pull_by_quant_list_use_and_remove() {
    let (hub, model) = standard_hub();
    let env = Env::new(hub);
    let e = env.fails(
        &["models", "pull", "test/SmolLM2-GGUF"],
        None,
        &["2 GGUF files", "Q4_1", "Q8_0"],
    );
    assert!(e.contains("test/SmolLM2-GGUF:"), "{e}");
    env.fails(
        &["models", "pull", "test/SmolLM2-GGUF:Q5_K_M"],
        None,
        &["no file or weight type `Q5_K_M`", "Q4_1, Q8_0"],
    );

    let m = env.ok_json(&["models", "pull", "test/SmolLM2-GGUF:q4_1", "--json"]);
    assert_eq!(m["name"], "test/SmolLM2-GGUF:Q4_1", "{m}");
    assert_eq!(m["weight_type"], "Q4_1");
    assert_eq!(m["architecture"], "llama");
    assert_eq!(m["context_length"], 8192);
    assert_eq!(m["bytes"], model.len() as u64);
    let path = PathBuf::from(m["path"].as_str().unwrap());
    assert_eq!(
        sha256_hex(&std::fs::read(&path).unwrap()),
        m["sha256"][0]["sha256"].as_str().unwrap()
    );
    assert_eq!(
        m["sha256"][0]["sha256"].as_str().unwrap(),
        sha256_hex(&model),
        "the hub's SHA-256 is recorded"
    );
    assert!(
        env.partial_files().is_empty(),
        "no partial download left: {:?}",
        env.partial_files()
    );

    // Pulling it again downloads nothing: it is installed from the hub's current revision.
    env.hub.range_starts.lock().unwrap().clear();
    let again = env.ok_json(&["models", "pull", "test/SmolLM2-GGUF:Q4_1", "--json"]);
    assert_eq!(again["path"], m["path"]);
    assert!(
        env.hub.range_starts.lock().unwrap().is_empty(),
        "no file requested again"
    );

    let list = env.ok_json(&["models", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "test/SmolLM2-GGUF:Q4_1");

    // The installed model is named like any other by every command; its output is the default
    // model's (same file).
    let gen = |model: &str| {
        env.ok_json(&[
            "generate",
            "--model",
            model,
            "--prompt",
            "The capital of France is",
            "--max-tokens",
            "6",
            "--temperature",
            "0",
            "--json",
        ])["text"]
            .clone()
    };
    assert_eq!(gen("test/SmolLM2-GGUF:Q4_1"), gen(path.to_str().unwrap()));
    let info = env.ok_json(&["models", "info", "test/SmolLM2-GGUF", "--json"]);
    assert_eq!(info["path"], m["path"]);

    let o = env.run(&["models", "rm", "test/SmolLM2-GGUF:Q4_1"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(env.installed_files().is_empty(), "{:?}", env.installed_files());
    env.fails(
        &[
            "generate",
            "--model",
            "test/SmolLM2-GGUF:Q4_1",
            "--prompt",
            "x",
            "--max-tokens",
            "1",
        ],
        None,
        &["not installed", "freeze-attn models pull test/SmolLM2-GGUF:Q4_1"],
    );
}

#[test]
fn a_weight_type_the_engine_cannot_load_is_refused_before_downloading() {
    // A repository laid out like bartowski's: i-quants beside K-quants, Q8_0 and f16.
    let (_, model) = default_model();
    let small = || file(vec![7u8; 100_000], true);
    let mut repos = HashMap::new();
    repos.insert(
        "test/Many-GGUF".to_string(),
        HubRepo {
            gated: false,
            files: vec![
                ("Many-IQ2_M.gguf".to_string(), small()),
                ("Many-IQ4_XS.gguf".to_string(), small()),
                ("Many-Q4_K_M.gguf".to_string(), file(model, true)),
                ("Many-Q8_0.gguf".to_string(), small()),
                ("Many-f16.gguf".to_string(), small()),
            ],
        },
    );
    repos.insert(
        "test/Only-IQ-GGUF".to_string(),
        HubRepo {
            gated: false,
            files: vec![("Only-IQ3_XS.gguf".to_string(), small())],
        },
    );
    let env = Env::new(start_hub(repos));
    let nothing_fetched = |env: &Env| {
        assert!(env.hub.range_starts.lock().unwrap().is_empty(), "a file was requested");
        assert!(env.installed_files().is_empty(), "{:?}", env.installed_files());
        assert!(env.partial_files().is_empty(), "{:?}", env.partial_files());
    };
    // Asked for by weight type or by file name: refused, the loadable types offered instead.
    for asked in [
        "test/Many-GGUF:IQ4_XS",
        "test/Many-GGUF:iq4_xs",
        "test/Many-GGUF:Many-IQ4_XS.gguf",
    ] {
        let e = env.fails(
            &["models", "pull", asked],
            None,
            &[
                "`Many-IQ4_XS.gguf` is IQ4_XS, a weight type this version cannot load",
                "Q4_K",
                "choose one of Q4_K_M, Q8_0, f16",
            ],
        );
        assert!(!e.contains("IQ2_M,"), "only loadable types are offered: {e}");
        nothing_fetched(&env);
    }
    // A repository's only file, of such a type.
    env.fails(
        &["models", "pull", "test/Only-IQ-GGUF"],
        None,
        &[
            "`Only-IQ3_XS.gguf` is IQ3_XS",
            "the repository has no other weight type",
        ],
    );
    nothing_fetched(&env);
    // No type named: the example is one that loads (Q4_K_M), every type is listed.
    env.fails(
        &["models", "pull", "test/Many-GGUF"],
        None,
        &[
            "5 GGUF files",
            "e.g. test/Many-GGUF:Q4_K_M",
            "available: Q4_K_M, Q8_0, f16, IQ2_M, IQ4_XS",
        ],
    );
    nothing_fetched(&env);
    // A loadable type still installs.
    let m = env.ok_json(&["models", "pull", "test/Many-GGUF:Q4_K_M", "--json"]);
    assert_eq!(m["weight_type"], "Q4_1", "the default model's bytes: {m}");
}

#[test]
fn an_interrupted_download_resumes_and_a_corrupted_one_is_refused() {
    let (hub, model) = standard_hub();
    let env = Env::new(hub.clone());
    // The connection drops in the middle of the chunk at 40 MB: the pull fails, nothing is
    // installed, the part (with the chunks finished before) stays.
    hub.cut_at.store(40_000_000, Ordering::SeqCst);
    env.fails(
        &["models", "pull", "test/SmolLM2-GGUF:Q4_1"],
        None,
        &["test/SmolLM2-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf"],
    );
    assert!(env.installed_files().is_empty(), "{:?}", env.installed_files());
    assert_eq!(env.partial_files().len(), 1, "the partial download is kept");
    hub.range_starts.lock().unwrap().clear();
    let m = env.ok_json(&["models", "pull", "test/SmolLM2-GGUF:Q4_1", "--json"]);
    let starts = hub.range_starts.lock().unwrap().clone();
    assert!(
        starts
            .iter()
            .filter(|&&s| s > 0)
            .min()
            .is_some_and(|&s| s >= 20_000_000)
            && !starts.contains(&0),
        "the second pull asked only for what was missing: {starts:?}"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(m["path"].as_str().unwrap()).unwrap()),
        sha256_hex(&model)
    );

    // Bytes changed on the way: refused against the hub's SHA-256, nothing installed or kept.
    let env = Env::new(hub.clone());
    hub.corrupt.store(true, Ordering::SeqCst);
    let e = env.fails(
        &["models", "pull", "test/SmolLM2-GGUF:Q8_0"],
        None,
        &["SHA-256", "nothing was installed"],
    );
    hub.corrupt.store(false, Ordering::SeqCst);
    assert!(env.installed_files().is_empty(), "{e}: {:?}", env.installed_files());
    let leftovers: Vec<PathBuf> = {
        let mut v = Vec::new();
        walk(&env.models.path().join(".downloads"), &mut v);
        v.retain(|p| p.to_string_lossy().contains("blobs"));
        v
    };
    assert!(
        leftovers.iter().all(|p| p.to_string_lossy().ends_with(".lock")),
        "{leftovers:?}"
    );
    env.ok_json(&["models", "pull", "test/SmolLM2-GGUF:Q8_0", "--json"]);
}

/// A disk that fills up: the download's partial file is `/dev/full`, which the kernel answers
/// with ENOSPC on every write, as a full disk does. The pull names the full disk in one line,
/// nothing is installed in the models folder, and the model is not listed.
#[test]
fn a_full_disk_is_named_and_nothing_is_installed() {
    let (hub, model) = standard_hub();
    let env = Env::new(hub);
    let blobs = env.models.path().join(".downloads/models--test--SmolLM2-GGUF/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let part = blobs.join(format!("{}.sync.part", sha256_hex(&model)));
    std::os::unix::fs::symlink("/dev/full", &part).unwrap();
    env.fails(
        &["models", "pull", "test/SmolLM2-GGUF:Q4_1"],
        None,
        &["disk is full", "nothing was installed"],
    );
    assert!(env.installed_files().is_empty(), "{:?}", env.installed_files());
    let listed = env.ok_json(&["models", "list", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
}

#[test]
fn gated_missing_and_folder_repositories() {
    let (hub, _) = standard_hub();
    let env = Env::new(hub);
    env.fails(
        &["models", "pull", "test/Gated-GGUF"],
        None,
        &["HF_TOKEN", "test/Gated-GGUF"],
    );
    env.fails(
        &["models", "pull", "test/Gated-GGUF"],
        Some("hf_wrong"),
        &["refused the token in HF_TOKEN"],
    );
    let o = env.run(&["models", "pull", "test/Gated-GGUF", "--json"], Some(GOOD_TOKEN));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    env.fails(
        &["models", "pull", "test/Nothing-Here:Q4_K_M"],
        None,
        &["test/Nothing-Here", "not found on the Hub"],
    );
    env.fails(
        &["models", "pull", "../etc:Q4"],
        None,
        &["not a Hugging Face model name"],
    );
    env.fails(
        &["models", "pull", "test/SmolLM2-GGUF:../../x"],
        None,
        &["not a Hugging Face model name"],
    );

    // A safetensors repository installs as a folder: config, tokenizer and weights, not the README.
    let m = env.ok_json(&["models", "pull", "test/Folder", "--json"]);
    assert_eq!(m["name"], "test/Folder");
    assert_eq!(m["format"], "safetensors");
    assert_eq!(m["architecture"], "llama");
    assert_eq!(m["context_length"], 131072);
    let files: Vec<&str> = m["sha256"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["config.json", "tokenizer.json", "model.safetensors"], "{m}");
    let list = env.ok_json(&["models", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

#[test]
fn file_names_from_the_hub_or_a_manifest_never_leave_the_models_folder() {
    let small: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut repos = HashMap::new();
    repos.insert(
        "test/Evil".to_string(),
        HubRepo {
            gated: false,
            files: vec![
                ("../../escape-Q4_0.gguf".to_string(), file(small.clone(), true)),
                ("fine-Q4_0.gguf".to_string(), file(small, true)),
            ],
        },
    );
    let env = Env::new(start_hub(repos));
    // The hub lists two GGUF files; the one named outside the repository is not one of them.
    let m = env.ok_json(&["models", "pull", "test/Evil", "--json"]);
    assert_eq!(m["file"], "fine-Q4_0.gguf", "{m}");
    let mut all = Vec::new();
    walk(env.models.path(), &mut all);
    assert!(
        !all.iter().any(|p| p.to_string_lossy().contains("escape")),
        "nothing written for the escaping name"
    );
    // A manifest edited to name a file outside the folder: rm leaves that file alone.
    let folder = env.models.path().join("hub/test/Evil");
    // Where `hub/test/Evil/../../victim-Q4_0.gguf` points.
    let victim = env.models.path().join("hub/victim-Q4_0.gguf");
    std::fs::write(&victim, b"keep me").unwrap();
    let manifest = std::fs::read_to_string(folder.join("manifest.json")).unwrap();
    std::fs::write(
        folder.join("manifest.json"),
        manifest.replace("fine-Q4_0.gguf", "../../victim-Q4_0.gguf"),
    )
    .unwrap();
    let o = env.run(&["models", "rm", "test/Evil"], None);
    assert!(!o.status.success(), "nothing valid left to remove");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
}

#[test]
fn the_catalogue_estimates_memory_and_knows_what_is_installed() {
    let (hub, _) = standard_hub();
    let env = Env::new(hub);
    let cat = |mem: &str| -> serde_json::Value {
        let o = env
            .command(&["models", "catalogue", "--context", "8192", "--json"], None)
            .env("FREEZE_ATTN_MEMORY_BYTES", mem)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let entry = |v: &serde_json::Value, name: &str| -> serde_json::Value {
        v.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {v}"))
    };
    let v = cat("4000000000");
    for name in [
        "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M",
        "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M",
    ] {
        assert_eq!(entry(&v, name)["recommended"], true, "{name}");
    }
    let one = entry(&v, "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M");
    // 16 layers x K and V x 8 KV heads x 64 x 2 bytes x 8,192 tokens.
    assert_eq!(one["kv_bytes"], 16u64 * 2 * 8 * 64 * 2 * 8192);
    assert_eq!(one["fits"], true);
    assert_eq!(one["installed"], false);
    let eight = entry(&v, "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M");
    assert_eq!(eight["kv_bytes"], 32u64 * 2 * 8 * 128 * 2 * 8192);
    assert_eq!(
        eight["fits"], false,
        "4.9 GB of weights and 1 GB of K/V do not fit in 4 GB: {eight}"
    );
    assert_eq!(
        entry(&cat("64000000000"), "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M")["fits"],
        true
    );
    // A 6 GB machine: the 8B model fits as Q3_K_M (4.0 GB of weights), not as Q4_K_M.
    let six = cat("6000000000");
    assert_eq!(
        entry(&six, "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q3_K_M")["fits"],
        true
    );
    assert_eq!(
        entry(&six, "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M")["fits"],
        false
    );
    // Without a GPU (this CPU build) there is no GPU estimate; with one, each file is held
    // against its memory too (here an 8 GB card, as FREEZE_ATTN_GPU_MEMORY_BYTES plans for).
    assert_eq!(eight["gpu_memory_bytes"], serde_json::Value::Null);
    assert_eq!(eight["fits_gpu"], serde_json::Value::Null);
    let o = env
        .command(&["models", "catalogue", "--context", "8192", "--json"], None)
        .env("FREEZE_ATTN_MEMORY_BYTES", "64000000000")
        .env("FREEZE_ATTN_GPU_MEMORY_BYTES", "8000000000")
        .output()
        .unwrap();
    let with_gpu: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let on_gpu = |name: &str| entry(&with_gpu, name)["fits_gpu"].clone();
    assert_eq!(on_gpu("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M"), true);
    assert_eq!(
        on_gpu("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q8_0"),
        false,
        "8.5 GB of weights"
    );
    let text = env
        .command(&["models", "catalogue", "--context", "8192"], None)
        .env("FREEZE_ATTN_GPU_MEMORY_BYTES", "8000000000")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("too large for the GPU's 8.0 GB"), "{text}");
    // The catalogue lists each file's size and SHA-256 (the Hub's, never made up here: each
    // is checked to have 64 hexadecimal digits, and the 1B Q4_K_M's is the one published).
    for e in v.as_array().unwrap() {
        let sha = e["sha256"].as_str().unwrap();
        assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()), "{e}");
        assert!(e["bytes"].as_u64().unwrap() > 500_000_000, "{e}");
    }
    assert_eq!(
        one["sha256"],
        "6f85a640a97cf2bf5b8e764087b1e83da0fdb51d7c9fab7d0fece9385611df83"
    );
    assert_eq!(one["bytes"], 807_694_464u64);
    // The stand-in hub serves another file under a catalogue name: refused, by its size, before
    // it is downloaded, and nothing is installed.
    env.fails(
        &["models", "pull", "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"],
        None,
        &[
            "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
            "is 22 bytes, not the 807694464 this version's catalogue lists",
            "--trust-hub",
        ],
    );
    assert!(env.installed_files().is_empty(), "{:?}", env.installed_files());
    assert_eq!(
        entry(&cat("4000000000"), "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")["installed"],
        false
    );
    // Taken from the Hub on the user's word, it then shows as installed.
    env.ok_json(&[
        "models",
        "pull",
        "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "--trust-hub",
        "--json",
    ]);
    assert_eq!(
        entry(&cat("4000000000"), "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")["installed"],
        true
    );
}

#[cfg(unix)]
#[test]
fn a_download_stopped_with_ctrl_c_resumes() {
    let (hub, model) = standard_hub();
    let env = Env::new(hub.clone());
    hub.slow_ms.store(6, Ordering::SeqCst);
    let mut child = env
        .command(&["models", "pull", "test/SmolLM2-GGUF:Q4_1"], None)
        .spawn()
        .unwrap();
    // Wait until at least one 10 MB chunk is committed, then interrupt as a terminal would.
    let t0 = std::time::Instant::now();
    loop {
        let done = hub.range_starts.lock().unwrap().iter().filter(|&&s| s > 0).count();
        if done >= 2 || t0.elapsed().as_secs() > 60 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc_kill(child.id() as i32, 2) };
    let status = child.wait().unwrap();
    assert!(!status.success(), "interrupted");
    assert!(env.installed_files().is_empty(), "{:?}", env.installed_files());
    hub.slow_ms.store(0, Ordering::SeqCst);
    hub.range_starts.lock().unwrap().clear();
    let m = env.ok_json(&["models", "pull", "test/SmolLM2-GGUF:Q4_1", "--json"]);
    let starts = hub.range_starts.lock().unwrap().clone();
    assert!(!starts.contains(&0), "resumed, not restarted: {starts:?}");
    assert_eq!(
        sha256_hex(&std::fs::read(m["path"].as_str().unwrap()).unwrap()),
        sha256_hex(&model)
    );
}

#[cfg(unix)]
extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A catalogue (here one's own, `FREEZE_ATTN_CATALOGUE`) names each file's size and SHA-256:
/// a pull installs only that file, whatever the Hub says; a file of another size is stopped as
/// soon as the Hub announces its size; `--trust-hub` takes the Hub's word alone.
#[test]
fn a_catalogue_file_installs_only_with_the_catalogues_size_and_hash() {
    let (hub, model) = standard_hub();
    let small_len = 3_000_000u64;
    let catalogue = |q4_1_bytes: u64, q8_sha: &str| {
        serde_json::json!({
            "models": [{
                "name": "SmolLM2 135M Instruct",
                "repo": "test/SmolLM2-GGUF",
                "licence": "apache-2.0",
                "shape": {"n_layer": 30, "n_kv_head": 3, "head_dim": 64, "context_length": 8192},
                "files": [
                    {"quant": "Q4_1", "file": "SmolLM2-135M-Instruct-Q4_1.gguf",
                     "bytes": q4_1_bytes, "sha256": sha256_hex(&model), "recommended": true},
                    {"quant": "Q8_0", "file": "SmolLM2-135M-Instruct-Q8_0.gguf",
                     "bytes": small_len, "sha256": q8_sha}
                ]
            }]
        })
        .to_string()
    };
    let wrong = "0".repeat(64);
    let env = Env::with_catalogue(hub.clone(), &catalogue(model.len() as u64, &wrong));

    // The catalogue in use is the one named, with its sizes and hashes.
    let v = env.ok_json(&["models", "catalogue", "--json"]);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["test/SmolLM2-GGUF:Q4_1", "test/SmolLM2-GGUF:Q8_0"]);
    assert_eq!(v[0]["bytes"], model.len() as u64);
    assert_eq!(v[0]["sha256"], sha256_hex(&model));

    // The file the catalogue lists, as it lists it: installed.
    let m = env.ok_json(&["models", "pull", "test/SmolLM2-GGUF:Q4_1", "--json"]);
    assert_eq!(m["sha256"][0]["sha256"], sha256_hex(&model));
    // A file whose hash is not the catalogue's (the Hub's own check passes: it is not
    // corrupted, it is another file): downloaded, refused, removed.
    env.fails(
        &["models", "pull", "test/SmolLM2-GGUF:Q8_0"],
        None,
        &[
            "test/SmolLM2-GGUF/SmolLM2-135M-Instruct-Q8_0.gguf",
            &format!(
                "has SHA-256 {}",
                sha256_hex(&hub.repos["test/SmolLM2-GGUF"].files[1].1.bytes)
            ),
            &format!("not the {wrong} this version's catalogue lists"),
            "nothing was installed",
            "--trust-hub",
        ],
    );
    let installed: Vec<String> = env
        .installed_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(!installed.iter().any(|f| f.contains("Q8_0")), "{installed:?}");
    let staged: Vec<PathBuf> = {
        let mut out = Vec::new();
        walk(&env.models.path().join(".downloads"), &mut out);
        out.retain(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == small_len));
        out
    };
    assert!(staged.is_empty(), "the refused download is removed: {staged:?}");
    let list = env.ok_json(&["models", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // On the user's word, the Hub's file.
    let m = env.ok_json(&["models", "pull", "test/SmolLM2-GGUF:Q8_0", "--trust-hub", "--json"]);
    assert_eq!(m["bytes"], small_len);

    // A catalogue whose size differs from the Hub's: stopped once the Hub announces the size,
    // long before the file (about 12 MB/s here, 10 MB pieces) has been sent.
    let env = Env::with_catalogue(hub.clone(), &catalogue(model.len() as u64 + 1, &wrong));
    hub.range_starts.lock().unwrap().clear();
    hub.slow_ms.store(20, Ordering::SeqCst);
    let e = env.fails(
        &["models", "pull", "test/SmolLM2-GGUF:Q4_1"],
        None,
        &[
            &format!("is {} bytes, not the {}", model.len(), model.len() + 1),
            "--trust-hub",
        ],
    );
    hub.slow_ms.store(0, Ordering::SeqCst);
    assert!(e.contains("nothing was installed"), "{e}");
    let pieces = hub.range_starts.lock().unwrap().len();
    assert!(
        pieces <= 2 && (model.len() as u64) > 30 << 20,
        "{pieces} pieces requested of a {} byte file",
        model.len()
    );
    assert!(env.installed_files().is_empty(), "{:?}", env.installed_files());

    // A catalogue file is untrusted input: one line naming the fault, for every command that
    // reads it.
    let bad = catalogue(model.len() as u64, "not-a-hash");
    let env = Env::with_catalogue(hub.clone(), &bad);
    env.fails(
        &["models", "catalogue"],
        None,
        &[
            "catalogue",
            "models[0].files[1].sha256 is not 64 lower-case hexadecimal digits",
        ],
    );
    env.fails(
        &["models", "pull", "test/SmolLM2-GGUF:Q4_1"],
        None,
        &["files[1].sha256"],
    );
    let env = Env::with_catalogue(hub.clone(), "{\"models\": [");
    env.fails(&["models", "catalogue"], None, &["catalogue", "EOF"]);
    let env = Env::with_catalogue(hub.clone(), &" ".repeat(2 << 20));
    env.fails(&["models", "catalogue"], None, &["more than a catalogue's"]);
    let traversal = catalogue(model.len() as u64, &wrong).replace("SmolLM2-135M-Instruct-Q8_0.gguf", "../escape.gguf");
    let env = Env::with_catalogue(hub, &traversal);
    env.fails(
        &["models", "catalogue"],
        None,
        &["`../escape.gguf` is not a GGUF file name"],
    );
}
