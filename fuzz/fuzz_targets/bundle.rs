//! A bundle from untrusted bytes, as `states import` and the server's upload read it: every
//! check (magic, version, manifest, sizes, checksums) runs before anything would be written
//! outside the scratch folder, which is removed after each input.
#![no_main]

use freeze_attn_library::read_bundle;
use libfuzzer_sys::fuzz_target;

#[path = "scratch.rs"]
mod scratch;
use scratch::scratch;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir_in(scratch()).expect("temp dir");
    let path = dir.path().join("in.bundle");
    std::fs::File::create(&path).and_then(|mut f| f.write_all(data)).expect("write");
    let _ = read_bundle(&path, &dir.path().join("scratch"));
});
