//! A state (segment) file from untrusted bytes: the header parser alone, then the whole
//! `Segment::open` (layout, counts, dtypes, shapes, checksum), as `--state FILE` and imports run
//! it. Any outcome but a panic, a hang or an allocation past libFuzzer's limit is fine.
#![no_main]

use freeze_attn_engine::state::{parse_header, Segment};
use libfuzzer_sys::fuzz_target;

#[path = "scratch.rs"]
mod scratch;
use scratch::scratch;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let _ = parse_header(data, "fuzz.state");
    let mut f = tempfile::NamedTempFile::new_in(scratch()).expect("temp file");
    f.write_all(data).expect("write");
    if let Ok(seg) = Segment::open(f.path()) {
        // A file that passed every check holds exactly the tokens its header declares.
        assert_eq!(seg.tokens.len(), seg.header.token_count);
        assert_eq!(seg.end(), seg.header.start + seg.header.token_count);
    }
});
