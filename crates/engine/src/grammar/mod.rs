//! Constrained decoding: generation that can only write a JSON object, any object (OpenAI's
//! `response_format: {"type": "json_object"}`) or one a JSON Schema allows (`json_schema`,
//! compiled in [`schema`]).
//!
//! [`Matcher`] follows the text byte by byte: a pushdown automaton for RFC 8259 JSON whose
//! frames carry the schema node each value must match. Where a schema allows several
//! alternatives (`anyOf`, `enum`) it follows every one still possible (a set of stacks, pruned
//! as bytes rule them out). At each step every token whose bytes the matcher would not accept
//! next is masked out of the logits before sampling, so sampling picks from the model's
//! distribution restricted to what keeps the text a prefix of an allowed value (temperature,
//! top-k and top-p apply to what is left). Generation ends when the object closes. Added and
//! special tokens (`<|eot_id|>`, `<|im_start|>`) are never allowed inside: their text is not what
//! the model means by them.
//!
//! Two bounds keep a model from writing forever without breaking the grammar: at most
//! [`MAX_WHITESPACE`] bytes of white space in a row between tokens of JSON, and at most
//! [`MAX_DEPTH`] nested containers. `max_tokens` bounds the rest (a string that never ends).

mod number;
pub mod regex;
pub mod schema;

use std::sync::Arc;

use number::{Bounded, Step};
use regex::Regex;
use schema::{Node, NodeId, ANY_ARRAY, ANY_NUMBER, ANY_OBJECT, ANY_STRING, FALSE, NO_PATTERN, NO_RANGE, NULL, TRUE};
pub use schema::{Schema, SchemaError};

/// Longest run of white space allowed between JSON tokens (enough for a newline and the
/// indentation of a deeply nested pretty-printed value).
pub const MAX_WHITESPACE: usize = 48;
/// Deepest nesting of objects and arrays.
pub const MAX_DEPTH: usize = 64;
/// Most alternatives followed at once. Alternatives that share a prefix (an `enum` of strings,
/// `anyOf` objects with the same first keys) are followed side by side until the text rules all
/// but one out; past this many, the later ones are dropped (what is written still matches one).
pub const MAX_ALTERNATIVES: usize = 64;

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

    fn next(self, b: u8, integer: bool) -> Option<NumState> {
        use NumState::*;
        Some(match (self, b) {
            (Minus, b'0') => Zero,
            (Minus, b'1'..=b'9') => Int,
            (Int, b'0'..=b'9') => Int,
            (Zero | Int, b'.') if !integer => Dot,
            (Dot | Frac, b'0'..=b'9') => Frac,
            (Zero | Int | Frac, b'e' | b'E') if !integer => Exp,
            (Exp, b'+' | b'-') => ExpSign,
            (Exp | ExpSign | ExpDigits, b'0'..=b'9') => ExpDigits,
            _ => return None,
        })
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Where a string is, between its quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrAt {
    /// Between characters.
    Plain,
    /// After `\`.
    Escape,
    /// `\u` with this many hex digits still to come.
    Unicode(u8),
    /// Inside a multi-byte UTF-8 character with this many continuation bytes to come.
    Utf8(u8),
}

/// Where an object is, between its braces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjAt {
    /// After `{`: a key or `}`.
    Open,
    /// After `,`: a key.
    Comma,
    /// After a member's value: `,` or `}`.
    AfterValue,
    /// In a declared key: `at` bytes of `prop`'s key (quotes included) written so far. Where
    /// declared keys share those bytes, `prop` is the first of them that may come.
    Key { prop: u16, at: u16 },
    /// After a key: `:` (`prop` [`ADDITIONAL`] for a map's key).
    Colon { prop: u16 },
}

/// The property index of a map's keys (objects without declared properties).
const ADDITIONAL: u16 = u16::MAX;

/// One level of the matcher's stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// A value of this node comes next (white space first is fine).
    Value(NodeId),
    /// Inside an object of this node; `next`: the first declared property that may still come.
    Object {
        node: NodeId,
        next: u16,
        at: ObjAt,
    },
    /// Inside an array of this node with `count` items begun; `open`: right after `[`.
    Array {
        node: NodeId,
        count: u32,
        open: bool,
    },
    /// Inside a string of `min..=max` characters, `count` begun; with a `pattern` (an index into
    /// the schema's patterns, [`NO_PATTERN`]: none), `re` is its automaton's state and `cp` the
    /// character being read (a UTF-8 sequence or a `\u` escape).
    Str {
        min: u32,
        max: u32,
        count: u32,
        at: StrAt,
        pattern: u32,
        re: u64,
        cp: u32,
    },
    Num {
        state: NumState,
        integer: bool,
    },
    /// Inside a number with bounds.
    Bounded(Bounded),
    /// Inside a literal node's bytes, `at` of them written.
    Literal {
        node: NodeId,
        at: u32,
    },
}

/// One way the text so far matches.
#[derive(Debug, PartialEq, Eq)]
struct Path {
    stack: Vec<Frame>,
    /// White space bytes in a row so far.
    ws: u8,
    /// Open containers.
    depth: u8,
}

impl Clone for Path {
    fn clone(&self) -> Self {
        Self {
            stack: self.stack.clone(),
            ws: self.ws,
            depth: self.depth,
        }
    }

    /// Reuses the stack's allocation: trying each token of a vocabulary copies the paths into
    /// scratch ones (a derived `clone_from` would allocate every time).
    fn clone_from(&mut self, source: &Self) {
        self.stack.clone_from(&source.stack);
        self.ws = source.ws;
        self.depth = source.depth;
    }
}

/// Follows text against a schema: every way it may still match.
#[derive(Debug, Clone)]
pub struct Matcher {
    schema: Arc<Schema>,
    paths: Vec<Path>,
    /// Reused by [`Matcher::allows`] and for alternatives that fork, so that trying a whole
    /// vocabulary allocates nothing.
    scratch: Vec<Path>,
    forks: Vec<Path>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.paths == other.paths && Arc::ptr_eq(&self.schema, &other.schema)
    }
}

impl Matcher {
    pub fn new(schema: Arc<Schema>) -> Self {
        // The stack's top is its end: what comes first is pushed last.
        let literal = |node| Frame::Literal { node, at: 0 };
        let stack = schema
            .after
            .map(literal)
            .into_iter()
            .chain([Frame::Value(schema.root)])
            .chain(schema.before.map(literal))
            .collect();
        Self {
            schema,
            paths: vec![Path { stack, ws: 0, depth: 0 }],
            scratch: Vec::new(),
            forks: Vec::new(),
        }
    }

    /// Any JSON object.
    pub fn any_object() -> Self {
        Self::new(Arc::new(Schema::any_object()))
    }

    /// The value closed: nothing more may be written.
    pub fn is_complete(&self) -> bool {
        self.paths.iter().any(|p| p.stack.is_empty())
    }

    /// Some way of matching is inside a string without a length bound or a pattern, not in an
    /// escape or a UTF-8 character: any whole characters but controls, `"` and `\` are allowed
    /// there.
    fn in_plain_string(&self) -> bool {
        self.paths.iter().any(|p| {
            matches!(
                p.stack.last(),
                Some(Frame::Str {
                    max: u32::MAX,
                    at: StrAt::Plain,
                    pattern: NO_PATTERN,
                    ..
                })
            )
        })
    }

    /// Whether `bytes` may come next (the matcher is not changed). Empty bytes are not allowed.
    pub fn allows(&mut self, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return false;
        }
        self.scratch.clone_from(&self.paths);
        run(&self.schema, &mut self.scratch, &mut self.forks, bytes)
    }

    /// Takes `bytes`; `false` (and a matcher to discard) when they are not allowed.
    pub fn advance(&mut self, bytes: &[u8]) -> bool {
        run(&self.schema, &mut self.paths, &mut self.forks, bytes)
    }
}

/// Feeds `bytes` to every path; `false` when none is left.
fn run(schema: &Schema, paths: &mut Vec<Path>, forks: &mut Vec<Path>, bytes: &[u8]) -> bool {
    for &b in bytes {
        forks.clear();
        if let [one] = paths.as_mut_slice() {
            // The common case (one way of matching): no retain.
            if !push(schema, one, b, forks) {
                paths.clear();
                return false;
            }
        } else {
            paths.retain_mut(|p| push(schema, p, b, forks));
        }
        if !forks.is_empty() {
            paths.append(forks);
            let mut i = 1;
            while i < paths.len() {
                if paths[..i].contains(&paths[i]) || i >= MAX_ALTERNATIVES {
                    paths.swap_remove(i);
                } else {
                    i += 1;
                }
            }
        }
        if paths.is_empty() {
            return false;
        }
    }
    true
}

impl Path {
    fn white(&mut self, b: u8) -> bool {
        if is_ws(b) && (self.ws as usize) < MAX_WHITESPACE {
            self.ws += 1;
            return true;
        }
        false
    }

    fn top(&mut self) -> &mut Frame {
        self.stack.last_mut().expect("a frame")
    }

    /// Closes the container on top.
    fn close(&mut self) -> bool {
        self.stack.pop();
        self.depth -= 1;
        true
    }
}

/// One byte on one path; alternatives beyond the first that take it go to `forks`. A byte that
/// is refused leaves the path to be discarded.
fn push(s: &Schema, p: &mut Path, b: u8, forks: &mut Vec<Path>) -> bool {
    loop {
        let Some(&top) = p.stack.last() else {
            return false; // complete: nothing after the end
        };
        if matches!(top, Frame::Value(_) | Frame::Object { .. } | Frame::Array { .. }) && !is_ws(b) {
            p.ws = 0;
        }
        return match top {
            Frame::Value(n) => {
                if is_ws(b) {
                    return p.white(b);
                }
                p.stack.pop();
                start(s, n, p, b, forks)
            }
            Frame::Object { node, next, at } => {
                let Node::Object { props, additional } = &s.nodes[node as usize] else {
                    unreachable!("object frames are made from object nodes")
                };
                let may_close = props[next as usize..].iter().all(|q| !q.required);
                let key_start = |p: &mut Path| -> bool {
                    if props.is_empty() {
                        if additional.is_none() {
                            return false;
                        }
                        *p.top() = Frame::Object {
                            node,
                            next,
                            at: ObjAt::Colon { prop: ADDITIONAL },
                        };
                        p.stack.push(Frame::Str {
                            min: 0,
                            max: u32::MAX,
                            count: 0,
                            at: StrAt::Plain,
                            pattern: NO_PATTERN,
                            re: Regex::start(),
                            cp: 0,
                        });
                        return true;
                    }
                    if next as usize >= props.len() {
                        return false;
                    }
                    *p.top() = Frame::Object {
                        node,
                        next,
                        at: ObjAt::Key { prop: next, at: 1 },
                    };
                    true
                };
                match (at, b) {
                    (ObjAt::Open | ObjAt::Comma, b'"') => key_start(p),
                    (ObjAt::Open | ObjAt::AfterValue, b'}') if may_close => p.close(),
                    (ObjAt::AfterValue, b',') if !props.is_empty() || additional.is_some() => {
                        if !props.is_empty() && next as usize >= props.len() {
                            return false;
                        }
                        *p.top() = Frame::Object {
                            node,
                            next,
                            at: ObjAt::Comma,
                        };
                        true
                    }
                    (ObjAt::Key { prop, at }, _) => {
                        // The first property that may come whose key goes on with `b`. Those
                        // that may come: from `next` to the first required one.
                        let written = &props[prop as usize].key[..at as usize];
                        let mut found = None;
                        for (i, q) in props.iter().enumerate().skip(next as usize) {
                            if q.key.starts_with(written) && q.key.get(at as usize) == Some(&b) {
                                found = Some(i);
                                break;
                            }
                            if q.required {
                                break;
                            }
                        }
                        let Some(i) = found else { return false };
                        let at = at + 1;
                        *p.top() = Frame::Object {
                            node,
                            next,
                            at: if at as usize == props[i].key.len() {
                                ObjAt::Colon { prop: i as u16 }
                            } else {
                                ObjAt::Key { prop: i as u16, at }
                            },
                        };
                        true
                    }
                    (ObjAt::Colon { prop }, b':') => {
                        let (value, next) = match prop {
                            ADDITIONAL => (additional.expect("a map's key was allowed"), next),
                            i => (props[i as usize].value, i + 1),
                        };
                        *p.top() = Frame::Object {
                            node,
                            next,
                            at: ObjAt::AfterValue,
                        };
                        p.stack.push(Frame::Value(value));
                        true
                    }
                    _ => p.white(b),
                }
            }
            Frame::Array { node, count, open } => {
                let Node::Array {
                    ref prefix,
                    items,
                    min,
                    max,
                } = s.nodes[node as usize]
                else {
                    unreachable!("array frames are made from array nodes")
                };
                // The node of the item begun next (the tuple's, then `items`).
                let item = prefix.get(count as usize).copied().unwrap_or(items);
                if is_ws(b) {
                    return p.white(b);
                }
                match b {
                    b']' if count >= min => p.close(),
                    b',' if !open && count < max => {
                        *p.top() = Frame::Array {
                            node,
                            count: count + 1,
                            open: false,
                        };
                        p.stack.push(Frame::Value(item));
                        true
                    }
                    _ if open && max > 0 => {
                        // The first item's first byte.
                        *p.top() = Frame::Array {
                            node,
                            count: 1,
                            open: false,
                        };
                        p.stack.push(Frame::Value(item));
                        continue;
                    }
                    _ => false,
                }
            }
            Frame::Str {
                min,
                max,
                count,
                at,
                pattern,
                re,
                cp,
            } => {
                let regex = s.patterns.get(pattern as usize);
                // (count, where, the character being read, a character that ended)
                let (count, at, cp, ended) = match (at, b) {
                    (StrAt::Plain, b'"') if count >= min && regex.is_none_or(|r| r.accepts(re)) => {
                        p.stack.pop();
                        return true;
                    }
                    (StrAt::Plain, _) if count >= max => return false,
                    (StrAt::Plain, b'\\') => (count + 1, StrAt::Escape, 0, None),
                    (StrAt::Plain, 0x20..=0x7f) if b != b'"' => (count + 1, StrAt::Plain, 0, Some(b as u32)),
                    // UTF-8 lead bytes (no overlong 0xC0/0xC1, nothing past U+10FFFF).
                    (StrAt::Plain, 0xc2..=0xdf) => (count + 1, StrAt::Utf8(1), (b & 0x1f) as u32, None),
                    (StrAt::Plain, 0xe0..=0xef) => (count + 1, StrAt::Utf8(2), (b & 0x0f) as u32, None),
                    (StrAt::Plain, 0xf0..=0xf4) => (count + 1, StrAt::Utf8(3), (b & 0x07) as u32, None),
                    (StrAt::Utf8(left), 0x80..=0xbf) => {
                        let cp = (cp << 6) | (b & 0x3f) as u32;
                        match left {
                            1 => (count, StrAt::Plain, 0, Some(cp)),
                            _ => (count, StrAt::Utf8(left - 1), cp, None),
                        }
                    }
                    (StrAt::Escape, b'"' | b'\\' | b'/') => (count, StrAt::Plain, 0, Some(b as u32)),
                    (StrAt::Escape, b'b' | b'f' | b'n' | b'r' | b't') => {
                        let c = match b {
                            b'b' => 0x08,
                            b'f' => 0x0c,
                            b'n' => 0x0a,
                            b'r' => 0x0d,
                            _ => 0x09,
                        };
                        (count, StrAt::Plain, 0, Some(c))
                    }
                    (StrAt::Escape, b'u') => (count, StrAt::Unicode(4), 0, None),
                    (StrAt::Unicode(left), _) if b.is_ascii_hexdigit() => {
                        let cp = cp * 16 + (b as char).to_digit(16).expect("a hex digit");
                        match left {
                            1 => (count, StrAt::Plain, 0, Some(cp)),
                            _ => (count, StrAt::Unicode(left - 1), cp, None),
                        }
                    }
                    _ => return false,
                };
                let re = match (regex, ended) {
                    (Some(r), Some(c)) => match r.step(re, c) {
                        0 => return false,
                        next => next,
                    },
                    // Part of a character: some character it can still become must be allowed
                    // (else a token could end in a character nothing completes).
                    (Some(r), None) => {
                        let (lo, hi) = match at {
                            StrAt::Utf8(left) => (cp << (6 * left), (cp << (6 * left)) | ((1 << (6 * left)) - 1)),
                            StrAt::Unicode(left) if left < 4 => {
                                (cp << (4 * left), (cp << (4 * left)) | ((1 << (4 * left)) - 1))
                            }
                            _ => (0, u32::MAX),
                        };
                        if !r.may_step_within(re, lo, hi) {
                            return false;
                        }
                        re
                    }
                    _ => re,
                };
                *p.top() = Frame::Str {
                    min,
                    max,
                    count,
                    at,
                    pattern,
                    re,
                    cp,
                };
                true
            }
            Frame::Num { state, integer } => match state.next(b, integer) {
                Some(state) => {
                    *p.top() = Frame::Num { state, integer };
                    true
                }
                // The number ends at a byte that is not part of it; that byte goes to the
                // container around it.
                None if state.complete() => {
                    p.stack.pop();
                    continue;
                }
                None => false,
            },
            Frame::Bounded(n) => match n.step(b, &s.ranges[n.range as usize]) {
                Step::Next(n) => {
                    *p.top() = Frame::Bounded(n);
                    true
                }
                // As an unbounded number's end: the byte goes to the container around it.
                Step::End => {
                    p.stack.pop();
                    continue;
                }
                Step::Refuse => false,
            },
            Frame::Literal { node, at } => {
                let Node::Literal(bytes) = &s.nodes[node as usize] else {
                    unreachable!("literal frames are made from literal nodes")
                };
                if bytes.get(at as usize) != Some(&b) {
                    return false;
                }
                if at as usize + 1 == bytes.len() {
                    p.stack.pop();
                } else {
                    *p.top() = Frame::Literal { node, at: at + 1 };
                }
                true
            }
        };
    }
}

/// Starts a value of node `n` with its first byte `b` (not white space) on `p`, whose `Value`
/// frame is already popped. Refusing leaves `p` as it was; alternatives beyond the first that
/// take `b` go to `forks`.
fn start(s: &Schema, n: NodeId, p: &mut Path, b: u8, forks: &mut Vec<Path>) -> bool {
    let open = |p: &mut Path, f: Frame| -> bool {
        if p.depth as usize >= MAX_DEPTH {
            return false;
        }
        p.depth += 1;
        p.stack.push(f);
        true
    };
    match &s.nodes[n as usize] {
        Node::AnyOf(alts) => {
            let before = p.clone();
            let mut taken = false;
            for &a in alts.iter() {
                if !taken {
                    taken = start(s, a, p, b, forks);
                } else {
                    let mut other = before.clone();
                    if start(s, a, &mut other, b, forks) {
                        forks.push(other);
                    }
                }
            }
            taken
        }
        Node::Any => {
            let n = match b {
                b'{' => ANY_OBJECT,
                b'[' => ANY_ARRAY,
                b'"' => ANY_STRING,
                b'-' | b'0'..=b'9' => ANY_NUMBER,
                b't' => TRUE,
                b'f' => FALSE,
                b'n' => NULL,
                _ => return false,
            };
            start(s, n, p, b, forks)
        }
        Node::Object { .. } => {
            b == b'{'
                && open(
                    p,
                    Frame::Object {
                        node: n,
                        next: 0,
                        at: ObjAt::Open,
                    },
                )
        }
        Node::Array { .. } => {
            b == b'['
                && open(
                    p,
                    Frame::Array {
                        node: n,
                        count: 0,
                        open: true,
                    },
                )
        }
        &Node::String { min, max, pattern } => {
            if b != b'"' {
                return false;
            }
            p.stack.push(Frame::Str {
                min,
                max,
                count: 0,
                at: StrAt::Plain,
                pattern,
                re: Regex::start(),
                cp: 0,
            });
            true
        }
        &Node::Number { integer, range } if range != NO_RANGE => {
            let Some(n) = Bounded::start(b, range, integer, &s.ranges[range as usize]) else {
                return false;
            };
            p.stack.push(Frame::Bounded(n));
            true
        }
        &Node::Number { integer, .. } => {
            let state = match b {
                b'-' => NumState::Minus,
                b'0' => NumState::Zero,
                b'1'..=b'9' => NumState::Int,
                _ => return false,
            };
            p.stack.push(Frame::Num { state, integer });
            true
        }
        Node::Literal(bytes) => {
            if bytes.first() != Some(&b) {
                return false;
            }
            if bytes.len() > 1 {
                p.stack.push(Frame::Literal { node: n, at: 1 });
            }
            true
        }
    }
}

/// The grammars generation can follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grammar {
    /// One JSON object, then the end.
    JsonObject,
    /// One JSON object the schema allows, then the end.
    JsonSchema(Arc<Schema>),
}

/// A grammar followed through one generation, token by token.
pub struct Constrained<'a> {
    matcher: Matcher,
    /// Each token's bytes; `None` for added and special tokens.
    table: &'a [Option<Vec<u8>>],
    /// Tokens of whole UTF-8 characters, none of them a control character, `"` or `\\`: inside
    /// a string without a bound or a pattern they are always allowed (most of a vocabulary, many
    /// of its tokens non-ASCII: the mask skips trying them there).
    plain: Vec<bool>,
    /// Per mask: whether each two-byte start may come (0 not tried yet, 1 no, 2 yes), so that
    /// the many tokens sharing a refused start (` word` after `{`) are not tried one by one.
    pairs: Vec<u8>,
}

impl<'a> Constrained<'a> {
    /// `table`: each token's bytes (`Tokenizer::byte_table`).
    pub fn new(grammar: &Grammar, table: &'a [Option<Vec<u8>>]) -> Self {
        let plain = table
            .iter()
            .map(|t| {
                t.as_ref().is_some_and(|b| {
                    std::str::from_utf8(b).is_ok_and(|s| s.chars().all(|c| c >= ' ' && c != '"' && c != '\\'))
                })
            })
            .collect();
        let matcher = match grammar {
            Grammar::JsonObject => Matcher::any_object(),
            Grammar::JsonSchema(s) => Matcher::new(s.clone()),
        };
        Self {
            matcher,
            table,
            plain,
            pairs: vec![0; 1 << 16],
        }
    }

    /// Sets the logits of the tokens that may not come next to minus infinity; `false` when no
    /// token may. A token is tried whole only when its first byte and its first two bytes may
    /// come next (and, inside a string, when it is not plain text).
    pub fn mask(&mut self, logits: &mut [f32]) -> bool {
        let in_string = self.matcher.in_plain_string();
        let mut first = [false; 256];
        for (b, ok) in first.iter_mut().enumerate() {
            *ok = self.matcher.allows(&[b as u8]);
        }
        self.pairs.fill(0);
        let mut any = false;
        for (id, l) in logits.iter_mut().enumerate() {
            if *l == f32::NEG_INFINITY {
                continue;
            }
            let ok = match self.table.get(id) {
                Some(Some(_)) if in_string && self.plain[id] => true,
                Some(Some(bytes)) if !first[bytes[0] as usize] => false,
                Some(Some(bytes)) if bytes.len() == 1 => true,
                Some(Some(bytes)) => {
                    let pair = &mut self.pairs[(bytes[0] as usize) << 8 | bytes[1] as usize];
                    if *pair == 0 {
                        *pair = 1 + self.matcher.allows(&bytes[..2]) as u8;
                    }
                    *pair == 2 && (bytes.len() == 2 || self.matcher.allows(bytes))
                }
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
    pub fn advance(&mut self, id: u32) {
        if let Some(Some(bytes)) = self.table.get(id as usize) {
            self.matcher.advance(bytes);
        }
    }

    pub fn is_complete(&self) -> bool {
        self.matcher.is_complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts_whole(text: &str) -> bool {
        let mut g = Matcher::any_object();
        g.advance(text.as_bytes()) && g.is_complete()
    }

    fn accepts_prefix(text: &str) -> bool {
        Matcher::any_object().advance(text.as_bytes())
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
        assert!(!Matcher::any_object().advance(b"{\"a\":\"\xff"));
        assert!(!Matcher::any_object().advance(b"{\"a\":\"\xc3\x28"));
        assert!(Matcher::any_object().advance(b"{\"a\":\"\xc3\xa9"));
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
        let mut g = Matcher::any_object();
        assert!(g.advance(b"{\"a\": 1}"));
        assert!(g.is_complete());
        assert!(!g.clone().advance(b" "), "nothing after the end");
        assert!(!g.allows(b"\n"));
    }

    #[test]
    fn bounded_whitespace_and_depth() {
        let mut g = Matcher::any_object();
        assert!(g.advance(b"{"));
        assert!(g.advance(" ".repeat(MAX_WHITESPACE).as_bytes()));
        assert!(!g.clone().advance(b" "), "one more space");
        assert!(
            g.advance(b"\"k\"  : \"  many   spaces   inside  \""),
            "strings are not white space"
        );
        let deep = format!("{{\"a\":{}", "[".repeat(MAX_DEPTH - 1));
        assert!(Matcher::any_object().advance(deep.as_bytes()));
        assert!(!Matcher::any_object().advance(format!("{deep}[").as_bytes()));
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
        let mut c = Constrained::new(&Grammar::JsonObject, &table);
        let mut m = Matcher::any_object();
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
                let want = t.as_ref().is_some_and(|b| m.allows(b));
                assert_eq!(logits[id] == 0.0, want, "token {:?} in {:?}", t, m.paths);
            }
            assert!(m.advance(step), "{step:?}");
            assert!(c.matcher.advance(step));
        }
    }

    #[test]
    fn allows_does_not_change_the_state() {
        let mut g = Matcher::any_object();
        assert!(g.advance(b"{\"a\""));
        let before = g.paths.clone();
        assert!(g.allows(b": 1}"));
        assert!(!g.allows(b"}"));
        assert!(!g.allows(b""));
        assert_eq!(g.paths, before);
    }

    fn schema(v: serde_json::Value) -> Arc<Schema> {
        Arc::new(Schema::compile(&v).unwrap_or_else(|e| panic!("{e}")))
    }

    fn whole(s: &Arc<Schema>, text: &str) -> bool {
        let mut m = Matcher::new(s.clone());
        m.advance(text.as_bytes()) && m.is_complete()
    }

    fn prefix(s: &Arc<Schema>, text: &str) -> bool {
        Matcher::new(s.clone()).advance(text.as_bytes())
    }

    /// What Pydantic 2 writes for a model with an enum, an optional field, a list of nested
    /// models and a literal (as the OpenAI SDK's `.parse()` sends it, strict).
    fn pydantic() -> serde_json::Value {
        serde_json::json!({
            "$defs": {
                "Color": {"enum": ["red", "green", "reddish"], "title": "Color", "type": "string"},
                "Step": {
                    "additionalProperties": false,
                    "properties": {
                        "explanation": {"title": "Explanation", "type": "string"},
                        "output": {"title": "Output", "type": "integer"}
                    },
                    "required": ["explanation", "output"],
                    "title": "Step",
                    "type": "object"
                }
            },
            "additionalProperties": false,
            "properties": {
                "color": {"$ref": "#/$defs/Color"},
                "nickname": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}], "default": null},
                "steps": {"items": {"$ref": "#/$defs/Step"}, "type": "array", "minItems": 1},
                "kind": {"const": "cat"},
                "score": {"type": "number"}
            },
            "required": ["color", "nickname", "steps", "kind", "score"],
            "title": "Answer",
            "type": "object"
        })
    }

    #[test]
    fn a_schema_allows_what_it_describes() {
        let s = schema(pydantic());
        for t in [
            r#"{"color": "red", "nickname": null, "steps": [{"explanation": "x", "output": 1}], "kind": "cat", "score": -1.5e3}"#,
            r#"{"color":"reddish","nickname":"Tom","steps":[{"explanation":"a\"b","output":-20},{"explanation":"","output":0}],"kind":"cat","score":0}"#,
            "{\n  \"color\": \"green\",\n  \"nickname\": \"Zoë\",\n  \"steps\": [ {\"explanation\": \"é\", \"output\": 7} ],\n  \"kind\": \"cat\",\n  \"score\": 2\n}",
        ] {
            assert!(whole(&s, t), "{t}");
        }
    }

    #[test]
    fn a_schema_refuses_what_it_does_not_describe() {
        let s = schema(pydantic());
        let good = r#"{"color": "red", "nickname": null, "steps": [{"explanation": "x", "output": 1}], "kind": "cat", "score": 1}"#;
        assert!(whole(&s, good));
        for (what, t) in [
            ("a color not in the enum", good.replace("\"red\"", "\"blue\"")),
            ("a prefix of an enum value", good.replace("\"red\"", "\"re\"")),
            (
                "a float where an integer goes",
                good.replace("\"output\": 1", "\"output\": 1.5"),
            ),
            (
                "a string where an integer goes",
                good.replace("\"output\": 1", "\"output\": \"1\""),
            ),
            ("a nickname too long", good.replace("null", "\"Thomas\"")),
            (
                "no steps",
                good.replace("[{\"explanation\": \"x\", \"output\": 1}]", "[]"),
            ),
            ("another const", good.replace("\"cat\"", "\"dog\"")),
            ("an unknown key", good.replace("\"score\"", "\"scores\"")),
            ("a missing required key", good.replace(", \"score\": 1", "")),
            (
                "keys out of order",
                good.replace(
                    "\"color\": \"red\", \"nickname\": null",
                    "\"nickname\": null, \"color\": \"red\"",
                ),
            ),
            (
                "a key twice",
                good.replace("\"kind\": \"cat\"", "\"kind\": \"cat\", \"kind\": \"cat\""),
            ),
        ] {
            assert_ne!(t, good, "{what}: the test changes the text");
            assert!(!whole(&s, &t), "{what}: {t}");
        }
        // Refused at the byte that breaks it, not at the end.
        assert!(!prefix(&s, r#"{"color": "b"#));
        assert!(!prefix(&s, r#"{"x"#));
        assert!(prefix(&s, r#"{"color": "red"#), "\"red\" may go on to \"reddish\"");
    }

    #[test]
    fn optional_keys_may_be_left_out_in_order() {
        let s = schema(serde_json::json!({
            "type": "object",
            "properties": {"a": {"type": "integer"}, "ab": {"type": "boolean"}, "b": {"type": "null"}, "c": {}},
            "required": ["b"]
        }));
        for t in [
            r#"{"b": null}"#,
            r#"{"a": 1, "b": null}"#,
            r#"{"ab": true, "b": null}"#,
            r#"{"a": 1, "ab": false, "b": null, "c": [1, {"x": "y"}]}"#,
            r#"{"b": null, "c": "anything"}"#,
        ] {
            assert!(whole(&s, t), "{t}");
        }
        for t in [
            r#"{}"#,
            r#"{"a": 1}"#,
            r#"{"c": 1, "b": null}"#,
            r#"{"b": null,}"#,
            r#"{"b": null, "a": 1}"#,
        ] {
            assert!(!whole(&s, t), "{t}");
        }
    }

    #[test]
    fn maps_recursion_type_lists_and_bounds() {
        // A map of integers.
        let s = schema(serde_json::json!({"type": "object", "additionalProperties": {"type": "integer"}}));
        assert!(whole(&s, r#"{"x": 1, "y z": -2}"#));
        assert!(whole(&s, "{}"));
        assert!(!whole(&s, r#"{"x": "1"}"#));
        // No keys at all.
        let s = schema(serde_json::json!({"type": "object", "additionalProperties": false}));
        assert!(whole(&s, "{ }"));
        assert!(!prefix(&s, "{\""));
        // A tree through $ref, and "#".
        let s = schema(serde_json::json!({
            "$defs": {"Node": {"type": "object", "properties": {"v": {"type": ["integer", "string"]}, "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}, "maxItems": 2}}, "required": ["v"]}},
            "$ref": "#/$defs/Node"
        }));
        assert!(whole(&s, r#"{"v": 1, "kids": [{"v": "a"}, {"v": 2, "kids": []}]}"#));
        assert!(
            !whole(&s, r#"{"v": 1, "kids": [{"v": 1}, {"v": 2}, {"v": 3}]}"#),
            "maxItems"
        );
        assert!(!whole(&s, r#"{"v": true}"#));
        let s = schema(
            serde_json::json!({"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}, "required": ["next"]}),
        );
        assert!(whole(&s, r#"{"next": {"next": {"next": null}}}"#));
        // Strings: lengths count characters (an escape is one).
        let s = schema(
            serde_json::json!({"type": "object", "properties": {"s": {"type": "string", "minLength": 2, "maxLength": 3}}, "required": ["s"]}),
        );
        assert!(whole(&s, r#"{"s": "ab"}"#));
        assert!(whole(&s, r#"{"s": "é\n猫"}"#));
        assert!(!whole(&s, r#"{"s": "a"}"#));
        assert!(!whole(&s, r#"{"s": "abcd"}"#));
        // Enums of numbers that are prefixes of each other, and nullable.
        let s = schema(
            serde_json::json!({"properties": {"n": {"enum": [1, 10, 100], "nullable": true}}, "required": ["n"]}),
        );
        for (t, ok) in [
            ("1", true),
            ("10", true),
            ("100", true),
            ("1000", false),
            ("null", true),
            ("0", false),
        ] {
            assert_eq!(whole(&s, &format!("{{\"n\": {t}}}")), ok, "{t}");
        }
    }

    #[test]
    fn tuples_give_each_position_its_schema() {
        // Pydantic's `tuple[int, str]`.
        let s = schema(serde_json::json!({"type": "object", "properties": {"t": {
            "type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2, "maxItems": 2
        }}, "required": ["t"]}));
        for (t, ok) in [
            (r#"[1, "a"]"#, true),
            (r#"["a", 1]"#, false),
            (r#"[1]"#, false),
            (r#"[1, "a", 2]"#, false),
            (r#"[]"#, false),
        ] {
            assert_eq!(whole(&s, &format!("{{\"t\": {t}}}")), ok, "{t}");
        }
        // A prefix, then `items` for the rest; `items: false` ends the array with the prefix.
        let s = schema(serde_json::json!({"type": "object", "properties": {"t": {
            "prefixItems": [{"const": "x"}], "items": {"type": "boolean"}
        }}, "required": ["t"]}));
        for (t, ok) in [
            (r#"[]"#, true),
            (r#"["x"]"#, true),
            (r#"["x", true, false]"#, true),
            (r#"["x", "x"]"#, false),
            (r#"[true]"#, false),
        ] {
            assert_eq!(whole(&s, &format!("{{\"t\": {t}}}")), ok, "{t}");
        }
        // Draft 7: `items` as a list, then `additionalItems`.
        let s = schema(serde_json::json!({"type": "object", "properties": {"t": {
            "type": "array", "items": [{"type": "null"}, {"type": "number"}], "additionalItems": false
        }}, "required": ["t"]}));
        for (t, ok) in [
            (r#"[null, 2.5]"#, true),
            (r#"[null]"#, true),
            (r#"[null, 2.5, 1]"#, false),
            (r#"[1]"#, false),
        ] {
            assert_eq!(whole(&s, &format!("{{\"t\": {t}}}")), ok, "{t}");
        }
        let e = Schema::compile(&serde_json::json!({"type": "object", "properties": {"t": {
            "prefixItems": [{}], "items": false, "minItems": 2
        }}}))
        .unwrap_err();
        assert!(e.message.contains("at most 1 items") && e.at == "#/properties/t", "{e}");
    }

    #[test]
    fn numbers_are_written_within_their_bounds() {
        let n = |bounds: serde_json::Value| {
            let mut prop = bounds;
            prop.as_object_mut().unwrap().entry("type").or_insert("number".into());
            schema(serde_json::json!({"type": "object", "properties": {"n": prop}, "required": ["n"]}))
        };
        let check = |s: &Arc<Schema>, cases: &[(&str, bool)]| {
            for &(t, ok) in cases {
                assert_eq!(whole(s, &format!("{{\"n\": {t}}}")), ok, "{t}");
            }
        };
        // Pydantic's `conint(ge=1, le=12)`.
        let s = n(serde_json::json!({"type": "integer", "minimum": 1, "maximum": 12}));
        check(
            &s,
            &[
                ("1", true),
                ("7", true),
                ("10", true),
                ("12", true),
                ("0", false),
                ("13", false),
                ("-1", false),
                ("1.5", false),
                ("01", false),
            ],
        );
        assert!(prefix(&s, r#"{"n": 1"#), "10, 11, 12 may follow");
        assert!(!prefix(&s, r#"{"n": 13"#), "refused at the digit that leaves the range");
        assert!(
            prefix(&s, r#"{"n": 2"#) && !prefix(&s, r#"{"n": 21"#),
            "2 may end, nothing goes on from it"
        );
        assert!(!prefix(&s, r#"{"n": 20"#));
        assert!(!prefix(&s, r#"{"n": -"#), "no negative number is in range");
        // Negative, exclusive (numeric), draft 4's boolean exclusive, and float bounds on integers.
        let s = n(serde_json::json!({"type": "integer", "minimum": -40, "exclusiveMaximum": -5}));
        check(
            &s,
            &[
                ("-40", true),
                ("-6", true),
                ("-17", true),
                ("-5", false),
                ("-41", false),
                ("0", false),
                ("-0", false),
            ],
        );
        let s = n(serde_json::json!({"type": "integer", "maximum": 10, "exclusiveMaximum": true}));
        check(&s, &[("9", true), ("10", false), ("-123456", true)]);
        let s = n(serde_json::json!({"type": "integer", "minimum": 0.5, "maximum": 7.5}));
        check(&s, &[("1", true), ("7", true), ("0", false), ("8", false)]);
        let s = n(serde_json::json!({"type": "integer", "exclusiveMinimum": 2.0}));
        check(&s, &[("2", false), ("3", true), ("300000", true)]);
        // The whole of i64, and no further.
        let s = n(serde_json::json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}));
        check(
            &s,
            &[
                ("9223372036854775807", true),
                ("9223372036854775808", false),
                ("-9223372036854775808", true),
                ("-9223372036854775809", false),
            ],
        );
        // Numbers: fractions, no exponent, bounds compared as a parser reads the text.
        let s = n(serde_json::json!({"exclusiveMinimum": 0, "maximum": 1}));
        check(
            &s,
            &[
                ("0.5", true),
                ("1", true),
                ("1.0", true),
                ("1.000", true),
                ("0.001", true),
                ("0", false),
                ("0.0", false),
                ("1.01", false),
                ("-0.5", false),
                ("1e-1", false),
                ("2", false),
            ],
        );
        assert!(prefix(&s, r#"{"n": 1."#));
        assert!(!prefix(&s, r#"{"n": 1.01"#));
        assert!(!prefix(&s, r#"{"n": 1e"#));
        let s = n(serde_json::json!({"minimum": 0.1, "maximum": 0.1}));
        check(&s, &[("0.1", true), ("0.10", true), ("0.11", false), ("0.09", false)]);
        // `minimum` alone implies a number; with a type list it bounds the number only.
        let s = n(serde_json::json!({"type": ["string", "integer"], "minimum": 3}));
        check(&s, &[("\"1\"", true), ("3", true), ("2", false)]);
    }

    /// Against a plain reading of the whole text: every number of up to five characters is
    /// allowed exactly when it is one (without an exponent) within the bounds, and every prefix
    /// the matcher allows can be finished: generation never reaches a number it cannot end.
    #[test]
    fn bounded_numbers_allow_what_is_in_range_and_never_strand() {
        const ALPHABET: &[u8] = b"-0123456789.";
        let cases = [
            serde_json::json!({"type": "integer", "minimum": 1, "maximum": 12}),
            serde_json::json!({"type": "integer", "minimum": -40, "maximum": -5}),
            serde_json::json!({"type": "integer", "minimum": 100}),
            serde_json::json!({"type": "integer", "maximum": -100}),
            serde_json::json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}),
            serde_json::json!({"type": "number", "minimum": 2.5, "maximum": 3.25}),
            serde_json::json!({"type": "number", "minimum": -1.5, "maximum": -1.25}),
            serde_json::json!({"type": "number", "minimum": 0.001, "maximum": 0.002}),
            serde_json::json!({"type": "number", "minimum": 99.5}),
        ];
        for bounds in cases {
            let s = schema(serde_json::json!({"type": "object", "properties": {"n": bounds}, "required": ["n"]}));
            let integer = bounds["type"] == "integer";
            let get = |k: &str| bounds.get(k).and_then(|v| v.as_f64());
            let in_range = |text: &str| -> bool {
                if text.contains(['e', 'E']) || (integer && text.contains('.')) {
                    return false;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Number>(text) else {
                    return false;
                };
                let v = v.as_f64().unwrap();
                get("minimum").is_none_or(|m| v >= m)
                    && get("maximum").is_none_or(|m| v <= m)
                    && get("exclusiveMinimum").is_none_or(|m| v > m)
                    && get("exclusiveMaximum").is_none_or(|m| v < m)
            };
            let mut texts = vec![String::new()];
            for len in 1..=5 {
                let longer: Vec<String> = texts
                    .iter()
                    .filter(|t| t.len() == len - 1)
                    .flat_map(|t| ALPHABET.iter().map(move |&c| format!("{t}{}", c as char)))
                    .collect();
                texts.extend(longer);
            }
            fn finishes(s: &Arc<Schema>, t: &str, depth: usize) -> bool {
                whole(s, &format!("{{\"n\": {t}}}"))
                    || depth > 0
                        && ALPHABET.iter().any(|&c| {
                            let t = format!("{t}{}", c as char);
                            prefix(s, &format!("{{\"n\": {t}")) && finishes(s, &t, depth - 1)
                        })
            }
            for t in texts.iter().filter(|t| !t.is_empty()) {
                assert_eq!(whole(&s, &format!("{{\"n\": {t}}}")), in_range(t), "{bounds}: {t}");
                if t.len() <= 4 && prefix(&s, &format!("{{\"n\": {t}")) {
                    assert!(finishes(&s, t, 4), "{bounds}: {t} cannot be finished");
                }
            }
        }
    }

    #[test]
    fn schemas_that_cannot_be_followed_are_refused_by_name() {
        for (v, says) in [
            (serde_json::json!({"type": "string"}), "must be JSON objects"),
            (
                serde_json::json!({"type": "object", "properties": {"d": {"type": "string", "format": "uri"}}}),
                "`format` \"uri\"",
            ),
            (
                serde_json::json!({"type": "object", "properties": {"d": {"type": "string", "pattern": "(?=x)"}}}),
                "look-around",
            ),
            (
                serde_json::json!({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}),
                "`multipleOf`",
            ),
            (
                serde_json::json!({"type": "object", "properties": {"n": {"minimum": 2, "exclusiveMaximum": 2}}}),
                "no number is within",
            ),
            (
                serde_json::json!({"type": "object", "properties": {"n": {"type": "integer", "maximum": "9"}}}),
                "`maximum` must be a number",
            ),
            (
                serde_json::json!({"type": "object", "properties": {"a": {}}, "required": ["b"]}),
                "required key \"b\"",
            ),
            (serde_json::json!({"$ref": "#/$defs/Nope"}), "points to nothing"),
            (
                serde_json::json!({"$ref": "https://example.com/s.json"}),
                "outside the schema",
            ),
            (serde_json::json!({"$ref": "#"}), "refers to itself"),
            (
                serde_json::json!({"type": "object", "properties": {"a": false}}),
                "allows no value",
            ),
            (
                serde_json::json!({"type": "object", "properties": {"a": {"type": "date"}}}),
                "unknown type",
            ),
            (
                serde_json::json!({"type": "object", "properties": {"a": {"type": "array", "minItems": 3, "maxItems": 1}}}),
                "above",
            ),
            (
                serde_json::json!({"type": "object", "properties": {"a": {"enum": []}}}),
                "non-empty",
            ),
        ] {
            let e = Schema::compile(&v).expect_err(&v.to_string()).to_string();
            assert!(e.contains(says), "{v}: {e}");
        }
        let e = Schema::compile(
            &serde_json::json!({"type": "object", "properties": {"when": {"type": "integer", "multipleOf": 1}}}),
        )
        .unwrap_err();
        assert_eq!(e.at, "#/properties/when");
        // Too large: refused, not followed.
        let big: serde_json::Map<String, serde_json::Value> = (0..schema::MAX_NODES)
            .map(|i| (format!("k{i}"), serde_json::json!({"type": "integer"})))
            .collect();
        let e = Schema::compile(&serde_json::json!({"type": "object", "properties": big})).map(|_| ());
        assert!(matches!(&e, Err(e) if e.message.contains("too large")), "{e:?}");
        // Nested too deeply.
        let mut deep = serde_json::json!({"type": "object"});
        for _ in 0..200 {
            deep = serde_json::json!({"type": "object", "properties": {"a": deep}});
        }
        let e = Schema::compile(&deep).map(|_| ());
        assert!(matches!(&e, Err(e) if e.message.contains("too deeply")), "{e:?}");
    }

    #[test]
    fn alternatives_sharing_a_prefix_are_followed_together() {
        let s = schema(serde_json::json!({
            "anyOf": [
                {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number"}}, "required": ["kind", "r"]},
                {"type": "object", "properties": {"kind": {"const": "square"}, "side": {"type": "number"}}, "required": ["kind", "side"]}
            ]
        }));
        assert!(whole(&s, r#"{"kind": "circle", "r": 1}"#));
        assert!(whole(&s, r#"{"kind": "square", "side": 2}"#));
        assert!(!whole(&s, r#"{"kind": "circle", "side": 2}"#));
        let mut m = Matcher::new(s.clone());
        assert!(m.advance(br#"{"kind": "#));
        assert_eq!(m.paths.len(), 2, "both alternatives are open");
        assert!(m.advance(b"\"s"));
        assert_eq!(m.paths.len(), 1, "the text chose one");
    }

    #[test]
    fn a_forced_tool_call_is_one_call_to_an_offered_tool() {
        let weather = serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city"]});
        let tools = [("get_weather", Some(&weather)), ("get_time", None)];
        let tagged = Arc::new(Schema::tool_call(&tools, "arguments", "<tool_call>\n", "\n</tool_call>").unwrap());
        let llama = Arc::new(Schema::tool_call(&tools, "parameters", "", "").unwrap());
        for (s, t, ok) in [
            (
                &tagged,
                "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
                true,
            ),
            (
                &tagged,
                "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
                true,
            ),
            (
                &tagged,
                "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"x\": 1}}\n</tool_call>",
                false,
            ),
            (&tagged, "{\"name\": \"get_time\", \"arguments\": {}}", false),
            (
                &tagged,
                "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"unit\": \"c\"}}\n</tool_call>",
                false,
            ),
            (
                &llama,
                "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\", \"unit\": \"f\"}}",
                true,
            ),
            (&llama, "{\"name\": \"get_date\", \"parameters\": {}}", false),
            (&llama, "{\"name\": \"get_time\", \"arguments\": {}}", false),
        ] {
            assert_eq!(whole(s, t), ok, "{t}");
            if ok {
                let calls = crate::tools::parse_tool_calls(t, &["get_weather", "get_time"]).expect(t);
                assert_eq!(calls.len(), 1, "what is forced is read back as a call");
            }
        }
        let e = Schema::tool_call(
            &[("f", Some(&serde_json::json!({"type": "string"})))],
            "parameters",
            "",
            "",
        )
        .unwrap_err();
        assert!(e.message.contains("\"f\"'s parameters"), "{e}");
        let e = Schema::tool_call(
            &[(
                "f",
                Some(&serde_json::json!({"type": "object", "properties": {"d": {"type": "string", "format": "uri"}}})),
            )],
            "parameters",
            "",
            "",
        )
        .unwrap_err();
        assert!(e.message.contains("`format`") && e.message.contains("\"f\""), "{e}");
    }

    #[test]
    fn patterns_and_formats_shape_strings() {
        let s = schema(serde_json::json!({"type": "object", "properties": {
            "when": {"type": "string", "format": "date-time"},
            "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d+$"},
            "note": {"type": "string", "pattern": "é"}
        }, "required": ["when", "code", "note"]}));
        let ok = r#"{"when": "2024-05-01T12:30:00Z", "code": "AB-12", "note": "café"}"#;
        assert!(whole(&s, ok));
        assert!(
            whole(&s, &ok.replace("café", "caf\\u00e9")),
            "an escape is the character it stands for"
        );
        for (what, bad) in [
            (
                "a date without a time",
                ok.replace("2024-05-01T12:30:00Z", "2024-05-01"),
            ),
            ("a month 13", ok.replace("2024-05", "2024-13")),
            ("a lowercase code", ok.replace("AB-12", "ab-12")),
            ("a code without digits", ok.replace("AB-12", "AB-")),
            ("a note without é", ok.replace("café", "cafe")),
        ] {
            assert!(!whole(&s, &bad), "{what}: {bad}");
        }
        // A character that cannot match is refused at its first byte (a token ending inside
        // it would leave nothing to complete it).
        let mut m = Matcher::new(s.clone());
        assert!(m.advance(br#"{"when": ""#));
        assert!(!m.allows(b"\xc3"), "no date starts with a two-byte character");
        assert!(!m.allows(b"\\u00e"), "nor with an escaped one (U+00E0 to U+00EF)");
        assert!(m.allows(b"\\u0032"), "\\u0032 is the digit 2");
        // Refused at the character that breaks the pattern.
        assert!(!prefix(&s, r#"{"when": "2024-2"#), "no month starts with 2");
        assert!(prefix(&s, r#"{"when": "2024-1"#));
    }
}
