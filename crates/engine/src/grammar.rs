//! Constrained decoding: generation that can only write a JSON object (OpenAI's
//! `response_format: {"type": "json_object"}`).
//!
//! [`JsonObject`] is a byte-level pushdown automaton for RFC 8259 JSON whose top-level value is
//! an object. At each step every token whose bytes the automaton would not accept next is masked
//! out of the logits before sampling, so sampling picks from the model's distribution restricted
//! to what keeps the text a prefix of a JSON object (temperature, top-k and top-p apply to what is
//! left). Generation ends when the object closes. Added and special tokens (`<|eot_id|>`,
//! `<|im_start|>`) are never allowed inside: their text is not what the model means by them.
//!
//! Two bounds keep a model from writing forever without breaking the grammar: at most
//! [`MAX_WHITESPACE`] bytes of white space in a row between tokens of JSON, and at most
//! [`MAX_DEPTH`] nested containers. `max_tokens` bounds the rest (a string that never ends).

/// Longest run of white space allowed between JSON tokens (enough for a newline and the
/// indentation of a deeply nested pretty-printed value).
pub const MAX_WHITESPACE: usize = 48;
/// Deepest nesting of objects and arrays.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

/// Where the automaton is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A value must come (after `:`, `[`, `,` in an array); `first_in_array`: `]` may close instead.
    Value { first_in_array: bool },
    /// After `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value inside a container: `,` or the closing bracket.
    AfterValue,
    /// Inside a string; `key`: it is an object's key.
    Str { key: bool },
    /// After `\` in a string.
    Escape { key: bool },
    /// `\u` with this many hex digits still to come.
    Unicode { key: bool, left: u8 },
    /// Inside a multi-byte UTF-8 character with this many continuation bytes to come.
    Utf8 { key: bool, left: u8 },
    /// Inside a number.
    Num(NumState),
    /// Inside `true`, `false` or `null`: the rest of the word.
    Literal { word: &'static [u8], at: u8 },
    /// The top-level object closed.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumState {
    /// After `-`.
    Minus,
    /// After a leading `0`.
    Zero,
    /// In the integer digits (not a leading zero).
    Int,
    /// After `.`.
    Dot,
    /// In the fraction digits.
    Frac,
    /// After `e` / `E`.
    Exp,
    /// After the exponent's sign.
    ExpSign,
    /// In the exponent digits.
    ExpDigits,
}

impl NumState {
    /// Whether the number may end here.
    fn complete(self) -> bool {
        matches!(
            self,
            NumState::Zero | NumState::Int | NumState::Frac | NumState::ExpDigits
        )
    }

    fn next(self, b: u8) -> Option<NumState> {
        use NumState::*;
        Some(match (self, b) {
            (Minus, b'0') => Zero,
            (Minus, b'1'..=b'9') => Int,
            (Int, b'0'..=b'9') => Int,
            (Zero | Int, b'.') => Dot,
            (Dot | Frac, b'0'..=b'9') => Frac,
            (Zero | Int | Frac, b'e' | b'E') => Exp,
            (Exp, b'+' | b'-') => ExpSign,
            (Exp | ExpSign | ExpDigits, b'0'..=b'9') => ExpDigits,
            _ => return None,
        })
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The automaton's whole state: small, cloned to try a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonObject {
    stack: Vec<Container>,
    mode: Mode,
    /// White space bytes in a row so far.
    ws: usize,
    /// No byte yet: the first value must be an object.
    start: bool,
}

impl Default for JsonObject {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonObject {
    pub fn new() -> Self {
        Self {
            stack: Vec::new(),
            mode: Mode::Value { first_in_array: false },
            ws: 0,
            start: true,
        }
    }

    /// The object is closed: nothing more may be written.
    pub fn is_complete(&self) -> bool {
        self.mode == Mode::Done
    }

    /// Inside a string, not in an escape or a UTF-8 character: any printable ASCII but `"` and
    /// `\` is allowed, and keeps it so.
    fn in_plain_string(&self) -> bool {
        matches!(self.mode, Mode::Str { .. })
    }

    /// Whether `bytes` may come next (the state is not changed; `scratch` is reused so that
    /// trying a whole vocabulary allocates nothing). Empty bytes are not allowed.
    pub fn allows(&self, bytes: &[u8], scratch: &mut JsonObject) -> bool {
        if bytes.is_empty() {
            return false;
        }
        scratch.stack.clear();
        scratch.stack.extend_from_slice(&self.stack);
        scratch.mode = self.mode;
        scratch.ws = self.ws;
        scratch.start = self.start;
        bytes.iter().all(|&b| scratch.push(b))
    }

    /// Takes `bytes`; `false` (and a state to discard) when one is not allowed.
    pub fn advance(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.push(b))
    }

    /// A value ended: back to the container around it, or done.
    fn value_done(&mut self) {
        self.mode = if self.stack.is_empty() {
            Mode::Done
        } else {
            Mode::AfterValue
        };
    }

    fn white(&mut self, b: u8) -> bool {
        if is_ws(b) && self.ws < MAX_WHITESPACE {
            self.ws += 1;
            return true;
        }
        false
    }

    fn open(&mut self, c: Container) -> bool {
        if self.stack.len() >= MAX_DEPTH {
            return false;
        }
        self.stack.push(c);
        self.mode = match c {
            Container::Object => Mode::KeyOrClose,
            Container::Array => Mode::Value { first_in_array: true },
        };
        true
    }

    fn close(&mut self, c: Container) -> bool {
        if self.stack.last() != Some(&c) {
            return false;
        }
        self.stack.pop();
        self.value_done();
        true
    }

    /// One byte.
    fn push(&mut self, b: u8) -> bool {
        let structural = !matches!(
            self.mode,
            Mode::Str { .. } | Mode::Escape { .. } | Mode::Unicode { .. } | Mode::Utf8 { .. } | Mode::Literal { .. }
        );
        if structural && !is_ws(b) {
            self.ws = 0;
        }
        match self.mode {
            Mode::Done => false,
            Mode::Value { first_in_array } => {
                if self.start {
                    // The top level is an object.
                    if is_ws(b) {
                        return self.white(b);
                    }
                    self.start = false;
                    return b == b'{' && self.open(Container::Object);
                }
                match b {
                    b'{' => self.open(Container::Object),
                    b'[' => self.open(Container::Array),
                    b']' if first_in_array => self.close(Container::Array),
                    b'"' => {
                        self.mode = Mode::Str { key: false };
                        true
                    }
                    b'-' => {
                        self.mode = Mode::Num(NumState::Minus);
                        true
                    }
                    b'0' => {
                        self.mode = Mode::Num(NumState::Zero);
                        true
                    }
                    b'1'..=b'9' => {
                        self.mode = Mode::Num(NumState::Int);
                        true
                    }
                    b't' | b'f' | b'n' => {
                        let word: &'static [u8] = match b {
                            b't' => b"true",
                            b'f' => b"false",
                            _ => b"null",
                        };
                        self.mode = Mode::Literal { word, at: 1 };
                        true
                    }
                    _ => self.white(b),
                }
            }
            Mode::KeyOrClose | Mode::Key => match b {
                b'"' => {
                    self.mode = Mode::Str { key: true };
                    true
                }
                b'}' if self.mode == Mode::KeyOrClose => self.close(Container::Object),
                _ => self.white(b),
            },
            Mode::Colon => match b {
                b':' => {
                    self.mode = Mode::Value { first_in_array: false };
                    true
                }
                _ => self.white(b),
            },
            Mode::AfterValue => match (b, self.stack.last()) {
                (b',', Some(Container::Object)) => {
                    self.mode = Mode::Key;
                    true
                }
                (b',', Some(Container::Array)) => {
                    self.mode = Mode::Value { first_in_array: false };
                    true
                }
                (b'}', _) => self.close(Container::Object),
                (b']', _) => self.close(Container::Array),
                _ => self.white(b),
            },
            Mode::Str { key } => match b {
                b'"' => {
                    if key {
                        self.mode = Mode::Colon;
                    } else {
                        self.value_done();
                    }
                    true
                }
                b'\\' => {
                    self.mode = Mode::Escape { key };
                    true
                }
                0x00..=0x1f => false,
                0x20..=0x7f => true,
                // UTF-8 lead bytes (no overlong 0xC0/0xC1, nothing past U+10FFFF).
                0xc2..=0xdf => {
                    self.mode = Mode::Utf8 { key, left: 1 };
                    true
                }
                0xe0..=0xef => {
                    self.mode = Mode::Utf8 { key, left: 2 };
                    true
                }
                0xf0..=0xf4 => {
                    self.mode = Mode::Utf8 { key, left: 3 };
                    true
                }
                _ => false,
            },
            Mode::Utf8 { key, left } => {
                if !(0x80..=0xbf).contains(&b) {
                    return false;
                }
                self.mode = if left == 1 {
                    Mode::Str { key }
                } else {
                    Mode::Utf8 { key, left: left - 1 }
                };
                true
            }
            Mode::Escape { key } => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                    self.mode = Mode::Str { key };
                    true
                }
                b'u' => {
                    self.mode = Mode::Unicode { key, left: 4 };
                    true
                }
                _ => false,
            },
            Mode::Unicode { key, left } => {
                if !b.is_ascii_hexdigit() {
                    return false;
                }
                self.mode = if left == 1 {
                    Mode::Str { key }
                } else {
                    Mode::Unicode { key, left: left - 1 }
                };
                true
            }
            Mode::Num(n) => match n.next(b) {
                Some(next) => {
                    self.mode = Mode::Num(next);
                    true
                }
                // The number ends at a byte that is not part of it; that byte goes to the
                // container around it.
                None if n.complete() => {
                    self.value_done();
                    self.push(b)
                }
                None => false,
            },
            Mode::Literal { word, at } => {
                if word.get(at as usize) != Some(&b) {
                    return false;
                }
                if at as usize + 1 == word.len() {
                    self.value_done();
                } else {
                    self.mode = Mode::Literal { word, at: at + 1 };
                }
                true
            }
        }
    }
}

/// The grammars generation can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grammar {
    /// One JSON object, then the end.
    JsonObject,
}

/// A grammar followed through one generation.
pub(crate) struct Constrained<'a> {
    state: JsonObject,
    scratch: JsonObject,
    /// Each token's bytes; `None` for added and special tokens.
    table: &'a [Option<Vec<u8>>],
    /// Tokens of printable ASCII without `"` or `\\`: inside a string they are always allowed
    /// (most of a vocabulary: the mask skips trying them there).
    plain: Vec<bool>,
}

impl<'a> Constrained<'a> {
    pub(crate) fn new(grammar: Grammar, table: &'a [Option<Vec<u8>>]) -> Self {
        let plain = table
            .iter()
            .map(|t| {
                t.as_ref()
                    .is_some_and(|b| b.iter().all(|&c| (0x20..=0x7e).contains(&c) && c != b'"' && c != b'\\'))
            })
            .collect();
        match grammar {
            Grammar::JsonObject => Self {
                state: JsonObject::new(),
                scratch: JsonObject::new(),
                table,
                plain,
            },
        }
    }

    /// Sets the logits of the tokens that may not come next to minus infinity; `false` when no
    /// token may. A token is tried whole only when its first byte may come next (and, inside a
    /// string, when it is not plain text).
    pub(crate) fn mask(&mut self, logits: &mut [f32]) -> bool {
        let in_string = self.state.in_plain_string();
        let mut first = [false; 256];
        for (b, ok) in first.iter_mut().enumerate() {
            *ok = self.state.allows(&[b as u8], &mut self.scratch);
        }
        let mut any = false;
        for (id, l) in logits.iter_mut().enumerate() {
            if *l == f32::NEG_INFINITY {
                continue;
            }
            let ok = match self.table.get(id) {
                Some(Some(bytes)) if in_string && self.plain[id] => true,
                Some(Some(bytes)) => first[bytes[0] as usize] && self.state.allows(bytes, &mut self.scratch),
                _ => false,
            };
            if ok {
                any = true;
            } else {
                *l = f32::NEG_INFINITY;
            }
        }
        any
    }

    /// Takes the sampled token (one the mask allowed).
    pub(crate) fn advance(&mut self, id: u32) {
        if let Some(Some(bytes)) = self.table.get(id as usize) {
            self.state.advance(bytes);
        }
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.state.is_complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts_whole(text: &str) -> bool {
        let mut g = JsonObject::new();
        g.advance(text.as_bytes()) && g.is_complete()
    }

    fn accepts_prefix(text: &str) -> bool {
        JsonObject::new().advance(text.as_bytes())
    }

    #[test]
    fn whole_objects() {
        for t in [
            "{}",
            " {\"a\": 1}",
            "{\"a\":[1,-2.5e+3,0,0.25,true,false,null,\"x\\\"y\\u00e9\\n\"],\"b\":{\"c\":{}}}",
            "{\n  \"name\": \"Zürich 東京 🌙\",\n  \"n\": -0E-1\n}",
            "{\"empty\": [], \"nested\": [[], [{}]]}",
        ] {
            assert!(accepts_whole(t), "{t}");
            assert!(serde_json::from_str::<serde_json::Value>(t).is_ok(), "{t} is JSON");
        }
    }

    #[test]
    fn not_json_or_not_an_object() {
        for t in [
            "[1]",
            "\"s\"",
            "1",
            "{,}",
            "{\"a\" 1}",
            "{\"a\":}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":tru}",
            "{\"a\":1,}",
            "{a:1}",
            "{\"a\":[1,]}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12g4\"}",
            "{\"a\":1}}",
            "{\"a\":1} x",
            "{\"a\":[}",
            "{\"a\":{]}",
        ] {
            assert!(!accepts_whole(t), "{t:?} accepted");
            // Every one of them is refused at the byte that breaks it, not only at the end.
            let v = serde_json::from_str::<serde_json::Value>(t);
            assert!(v.is_err() || !v.unwrap().is_object(), "{t} is a JSON object");
        }
        // Invalid UTF-8 in a string.
        assert!(!JsonObject::new().advance(b"{\"a\":\"\xff"));
        assert!(!JsonObject::new().advance(b"{\"a\":\"\xc3\x28"));
        assert!(JsonObject::new().advance(b"{\"a\":\"\xc3\xa9"));
    }

    #[test]
    fn prefixes_stay_open_and_the_end_is_the_end() {
        for t in [
            "",
            "  ",
            "{",
            "{\"a",
            "{\"a\":",
            "{\"a\": [1, 2",
            "{\"a\": -1.5e",
            "{\"a\": \"\\u00",
            "{\"a\": nu",
        ] {
            assert!(accepts_prefix(t), "{t:?}");
            assert!(!accepts_whole(t), "{t:?} is not whole");
        }
        let mut g = JsonObject::new();
        assert!(g.advance(b"{\"a\": 1}"));
        assert!(g.is_complete());
        assert!(!g.clone().advance(b" "), "nothing after the end");
        let mut scratch = JsonObject::new();
        assert!(!g.allows(b"\n", &mut scratch));
    }

    #[test]
    fn bounded_whitespace_and_depth() {
        let mut g = JsonObject::new();
        assert!(g.advance(b"{"));
        assert!(g.advance(" ".repeat(MAX_WHITESPACE).as_bytes()));
        assert!(!g.clone().advance(b" "), "one more space");
        assert!(
            g.advance(b"\"k\"  : \"  many   spaces   inside  \""),
            "strings are not white space"
        );
        let deep = format!("{{\"a\":{}", "[".repeat(MAX_DEPTH - 1));
        assert!(JsonObject::new().advance(deep.as_bytes()));
        assert!(!JsonObject::new().advance(format!("{deep}[").as_bytes()));
    }

    #[test]
    fn the_mask_allows_exactly_the_tokens_the_automaton_accepts() {
        let pieces: Vec<&[u8]> = vec![
            b"{",
            b"}",
            b"\"",
            b"\":",
            b"name",
            b"ab\"",
            b" ",
            b"\n  ",
            b"1",
            b".5",
            b"e",
            b"tr",
            b"ue",
            b",",
            b"[",
            b"]",
            b"\\",
            b"u00",
            b"\xc3",
            b"\xa9",
            b"\xc3\xa9",
            b"\"}",
            b"x\"}",
            b"\x01",
            b"null",
        ];
        let mut table: Vec<Option<Vec<u8>>> = pieces.iter().map(|p| Some(p.to_vec())).collect();
        table.push(None); // a special token
        let mut c = Constrained::new(Grammar::JsonObject, &table);
        let mut scratch = JsonObject::new();
        // Walk a text, checking the mask before each step.
        for step in [
            &b"{"[..],
            b"\"",
            b"name",
            b"\":",
            b" ",
            b"[",
            b"1",
            b".5",
            b",",
            b"\"",
            b"\xc3",
            b"\xa9",
            b"\\",
            b"u00",
        ] {
            let mut logits = vec![0.0f32; table.len()];
            c.mask(&mut logits);
            for (id, t) in table.iter().enumerate() {
                let want = t.as_ref().is_some_and(|b| c.state.allows(b, &mut scratch));
                assert_eq!(logits[id] == 0.0, want, "token {:?} in {:?}", t, c.state.mode);
            }
            assert!(c.state.advance(step), "{step:?}");
        }
    }

    #[test]
    fn allows_does_not_change_the_state() {
        let mut g = JsonObject::new();
        assert!(g.advance(b"{\"a\""));
        let before = g.clone();
        let mut scratch = JsonObject::new();
        assert!(g.allows(b": 1}", &mut scratch));
        assert!(!g.allows(b"}", &mut scratch));
        assert!(!g.allows(b"", &mut scratch));
        assert_eq!(g, before);
    }
}
