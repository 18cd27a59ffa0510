//! String patterns for schemas: JSON Schema's `pattern` (a subset of ECMA 262 regular
//! expressions) and the `format`s that are patterns (`date`, `time`, `date-time`, `uuid`,
//! `email`, `ipv4`), compiled to a position (Glushkov) automaton small enough to live in a
//! matcher frame: the set of positions just matched is a `u64`, so a string is checked character
//! by character with no allocation.
//!
//! Supported: literals, `.`, classes (`[a-z0-9_]`, `[^"]`, escapes inside), `\d \D \w \W \s \S`,
//! escaped punctuation, `\n \t \r \f \v`, `\uXXXX`, groups (`(…)`, `(?:…)`), `|`, `?`, `*`, `+`,
//! `{n}`, `{n,}`, `{n,m}`, and `^` / `$` at the ends. Without `^` (`$`) the pattern may match
//! after (before) other text, as JSON Schema says. Refused, by name: back-references,
//! look-around, lazy quantifiers, anchors inside, and patterns of more than [`MAX_POSITIONS`]
//! character positions once repeats are written out.

use std::fmt;

/// Most character positions a pattern may have (a bit each in a `u64`; the top bit marks "no
/// character yet").
pub const MAX_POSITIONS: usize = 63;
const START: u64 = 1 << 63;
/// Largest bound of a `{n,m}` repeat.
const MAX_REPEAT: u32 = 64;

/// A compiled pattern over the characters of a string (decoded: an escape or a UTF-8 sequence is
/// one character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regex {
    /// Each position's character class: sorted, disjoint inclusive ranges of code points.
    classes: Vec<Vec<(u32, u32)>>,
    first: u64,
    last: u64,
    follow: Vec<u64>,
    nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexError(pub String);

impl fmt::Display for RegexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The parsed pattern, before positions are numbered.
#[derive(Debug, Clone)]
enum Re {
    Empty,
    Class(Vec<(u32, u32)>),
    Cat(Vec<Re>),
    Alt(Vec<Re>),
    Star(Box<Re>),
    Opt(Box<Re>),
}

const MAX_CHAR: u32 = 0x10ffff;

fn any_char() -> Vec<(u32, u32)> {
    vec![(0, MAX_CHAR)]
}

/// `.`: anything but line terminators.
fn dot() -> Vec<(u32, u32)> {
    negate(&[(0x0a, 0x0a), (0x0d, 0x0d), (0x2028, 0x2029)])
}

fn digit() -> Vec<(u32, u32)> {
    vec![(0x30, 0x39)]
}

fn word() -> Vec<(u32, u32)> {
    normalize(vec![(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)])
}

fn space() -> Vec<(u32, u32)> {
    normalize(vec![
        (0x09, 0x0d),
        (0x20, 0x20),
        (0xa0, 0xa0),
        (0x1680, 0x1680),
        (0x2000, 0x200a),
        (0x2028, 0x2029),
        (0x202f, 0x202f),
        (0x205f, 0x205f),
        (0x3000, 0x3000),
        (0xfeff, 0xfeff),
    ])
}

fn normalize(mut r: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    r.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(r.len());
    for (lo, hi) in r {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn negate(r: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let r = normalize(r.to_vec());
    let mut out = Vec::new();
    let mut next = 0u32;
    for (lo, hi) in r {
        if lo > next {
            out.push((next, lo - 1));
        }
        next = hi + 1;
    }
    if next <= MAX_CHAR {
        out.push((next, MAX_CHAR));
    }
    out
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl Parser<'_> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, RegexError> {
        Err(RegexError(msg.into()))
    }

    fn alt(&mut self, depth: usize) -> Result<Re, RegexError> {
        if depth > 32 {
            return self.err("the pattern nests groups too deeply");
        }
        let mut alts = vec![self.seq(depth)?];
        while self.chars.peek() == Some(&'|') {
            self.chars.next();
            alts.push(self.seq(depth)?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().expect("one")
        } else {
            Re::Alt(alts)
        })
    }

    fn seq(&mut self, depth: usize) -> Result<Re, RegexError> {
        let mut items = Vec::new();
        while let Some(&c) = self.chars.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom(depth)?;
            items.push(self.quantified(atom)?);
        }
        Ok(match items.len() {
            0 => Re::Empty,
            1 => items.pop().expect("one"),
            _ => Re::Cat(items),
        })
    }

    fn number(&mut self) -> Option<u32> {
        let mut n: Option<u32> = None;
        while let Some(d) = self.chars.peek().and_then(|c| c.to_digit(10)) {
            self.chars.next();
            n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d));
        }
        n
    }

    fn quantified(&mut self, atom: Re) -> Result<Re, RegexError> {
        let (min, max) = match self.chars.peek() {
            Some('?') => (0, Some(1)),
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('{') => {
                self.chars.next();
                let Some(min) = self.number() else {
                    return self.err("a `{` that is not a repeat count (escape it: `\\{`)");
                };
                let max = match self.chars.next() {
                    Some('}') => Some(min),
                    Some(',') => {
                        let max = self.number();
                        if self.chars.next() != Some('}') {
                            return self.err("an unclosed `{n,m}` repeat");
                        }
                        max
                    }
                    _ => return self.err("an unclosed `{n}` repeat"),
                };
                if max.is_some_and(|m| m < min) || min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
                    return self.err(format!("a repeat count above {MAX_REPEAT} or out of order"));
                }
                if self.chars.peek() == Some(&'?') {
                    return self.err("lazy quantifiers are not supported");
                }
                return repeat(atom, min, max);
            }
            _ => return Ok(atom),
        };
        self.chars.next();
        if matches!(self.chars.peek(), Some('?' | '+')) {
            return self.err("lazy and possessive quantifiers are not supported");
        }
        repeat(atom, min, max)
    }

    fn atom(&mut self, depth: usize) -> Result<Re, RegexError> {
        let c = self.chars.next().expect("peeked");
        Ok(match c {
            '(' => {
                if self.chars.peek() == Some(&'?') {
                    self.chars.next();
                    if self.chars.next() != Some(':') {
                        return self.err("look-around and named groups are not supported");
                    }
                }
                let inner = self.alt(depth + 1)?;
                if self.chars.next() != Some(')') {
                    return self.err("an unclosed group");
                }
                inner
            }
            '[' => Re::Class(self.class()?),
            '.' => Re::Class(dot()),
            '\\' => Re::Class(self.escape(false)?),
            '^' | '$' => return self.err("`^` and `$` are supported only at the ends of the pattern"),
            '*' | '+' | '?' | '{' => return self.err(format!("nothing to repeat before `{c}`")),
            c => Re::Class(vec![(c as u32, c as u32)]),
        })
    }

    /// After `\`.
    fn escape(&mut self, in_class: bool) -> Result<Vec<(u32, u32)>, RegexError> {
        let Some(c) = self.chars.next() else {
            return self.err("a `\\` at the end");
        };
        let one = |c: u32| vec![(c, c)];
        Ok(match c {
            'd' => digit(),
            'D' => negate(&digit()),
            'w' => word(),
            'W' => negate(&word()),
            's' => space(),
            'S' => negate(&space()),
            'n' => one(0x0a),
            't' => one(0x09),
            'r' => one(0x0d),
            'f' => one(0x0c),
            'v' => one(0x0b),
            '0' => one(0),
            'b' if in_class => one(0x08),
            'u' => {
                let mut v = 0u32;
                for _ in 0..4 {
                    match self.chars.next().and_then(|h| h.to_digit(16)) {
                        Some(h) => v = v * 16 + h,
                        None => return self.err("`\\u` needs four hex digits"),
                    }
                }
                one(v)
            }
            c if c.is_ascii_punctuation() || c == ' ' => one(c as u32),
            c => return self.err(format!("the escape `\\{c}` is not supported")),
        })
    }

    /// After `[`, through `]`.
    fn class(&mut self) -> Result<Vec<(u32, u32)>, RegexError> {
        let negated = self.chars.peek() == Some(&'^');
        if negated {
            self.chars.next();
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let Some(c) = self.chars.next() else {
                return self.err("an unclosed `[` class");
            };
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = if c == '\\' {
                let r = self.escape(true)?;
                if r.len() != 1 || r[0].0 != r[0].1 {
                    ranges.extend(r);
                    continue;
                }
                r[0].0
            } else {
                c as u32
            };
            // A range `a-z` (a `-` before `]` is itself).
            let mut ahead = self.chars.clone();
            if ahead.next() == Some('-') && ahead.peek().is_some_and(|&n| n != ']') {
                self.chars.next();
                let hi = match self.chars.next().expect("peeked") {
                    '\\' => match self.escape(true)?.as_slice() {
                        [(a, b)] if a == b => *a,
                        _ => return self.err("a class range ending in a class"),
                    },
                    h => h as u32,
                };
                if hi < lo {
                    return self.err("a class range out of order");
                }
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
        Ok(if negated { negate(&ranges) } else { normalize(ranges) })
    }
}

/// Character positions in `re` (what the automaton will number).
fn positions(re: &Re) -> usize {
    match re {
        Re::Empty => 0,
        Re::Class(_) => 1,
        Re::Cat(items) | Re::Alt(items) => items.iter().map(positions).sum(),
        Re::Star(a) | Re::Opt(a) => positions(a),
    }
}

fn too_long<T>() -> Result<T, RegexError> {
    Err(RegexError(format!(
        "the pattern is too long (more than {MAX_POSITIONS} character positions once repeats are written out)"
    )))
}

fn repeat(atom: Re, min: u32, max: Option<u32>) -> Result<Re, RegexError> {
    // Repeats are written out: bounded before anything is copied (nested repeats multiply).
    let copies = max.unwrap_or(min + 1).max(1) as usize;
    if positions(&atom) * copies > MAX_POSITIONS {
        return too_long();
    }
    let mut items: Vec<Re> = (0..min).map(|_| atom.clone()).collect();
    match max {
        None => items.push(Re::Star(Box::new(atom))),
        Some(max) => items.extend((min..max).map(|_| Re::Opt(Box::new(atom.clone())))),
    }
    Ok(match items.len() {
        0 => Re::Empty,
        1 => items.pop().expect("one"),
        _ => Re::Cat(items),
    })
}

/// Nullable, first and last of a subtree; numbers positions and fills `follow`.
struct Builder {
    classes: Vec<Vec<(u32, u32)>>,
    follow: Vec<u64>,
}

impl Builder {
    fn walk(&mut self, re: &Re) -> Result<(bool, u64, u64), RegexError> {
        Ok(match re {
            Re::Empty => (true, 0, 0),
            Re::Class(c) => {
                if self.classes.len() >= MAX_POSITIONS {
                    return too_long();
                }
                self.classes.push(c.clone());
                self.follow.push(0);
                let bit = 1u64 << (self.classes.len() - 1);
                (false, bit, bit)
            }
            Re::Cat(items) => {
                let (mut nullable, mut first, mut last) = (true, 0u64, 0u64);
                for item in items {
                    let (n, f, l) = self.walk(item)?;
                    self.link(last, f);
                    if nullable {
                        first |= f;
                    }
                    last = if n { last | l } else { l };
                    nullable &= n;
                }
                (nullable, first, last)
            }
            Re::Alt(alts) => {
                let (mut nullable, mut first, mut last) = (false, 0u64, 0u64);
                for a in alts {
                    let (n, f, l) = self.walk(a)?;
                    nullable |= n;
                    first |= f;
                    last |= l;
                }
                (nullable, first, last)
            }
            Re::Star(a) => {
                let (_, f, l) = self.walk(a)?;
                self.link(l, f);
                (true, f, l)
            }
            Re::Opt(a) => {
                let (_, f, l) = self.walk(a)?;
                (true, f, l)
            }
        })
    }

    fn link(&mut self, from: u64, to: u64) {
        for (p, follow) in self.follow.iter_mut().enumerate() {
            if from & (1 << p) != 0 {
                *follow |= to;
            }
        }
    }
}

impl Regex {
    pub fn new(pattern: &str) -> Result<Self, RegexError> {
        let mut body = pattern;
        let anchored_start = body.starts_with('^');
        if anchored_start {
            body = &body[1..];
        }
        let anchored_end = body.ends_with('$') && !body.ends_with("\\$");
        if anchored_end {
            body = &body[..body.len() - 1];
        }
        let mut p = Parser {
            chars: body.chars().peekable(),
        };
        let re = p.alt(0)?;
        if p.chars.next().is_some() {
            return Err(RegexError("an unmatched `)`".into()));
        }
        let anything = || Re::Star(Box::new(Re::Class(any_char())));
        let mut parts = Vec::new();
        if !anchored_start {
            parts.push(anything());
        }
        parts.push(re);
        if !anchored_end {
            parts.push(anything());
        }
        let mut b = Builder {
            classes: Vec::new(),
            follow: Vec::new(),
        };
        let (nullable, first, last) = b.walk(&Re::Cat(parts))?;
        Ok(Self {
            classes: b.classes,
            first,
            last,
            follow: b.follow,
            nullable,
        })
    }

    /// The positions the next character may match.
    fn candidates(&self, state: u64) -> u64 {
        if state & START != 0 {
            return self.first;
        }
        let mut f = 0u64;
        let mut s = state;
        while s != 0 {
            f |= self.follow[s.trailing_zeros() as usize];
            s &= s - 1;
        }
        f
    }

    /// The state before any character.
    pub fn start() -> u64 {
        START
    }

    /// The state after `c`; 0: no match can follow.
    pub fn step(&self, state: u64, c: u32) -> u64 {
        let candidates = self.candidates(state);
        let mut next = 0u64;
        let mut s = candidates;
        while s != 0 {
            let p = s.trailing_zeros() as usize;
            if self.classes[p].iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) {
                next |= 1 << p;
            }
            s &= s - 1;
        }
        next
    }

    /// Whether some character in `lo..=hi` may come next (a UTF-8 sequence or a `\u` escape
    /// part read: refused at its first byte if no character it can become is allowed).
    pub fn may_step_within(&self, state: u64, lo: u32, hi: u32) -> bool {
        let mut s = self.candidates(state);
        while s != 0 {
            let p = s.trailing_zeros() as usize;
            if self.classes[p].iter().any(|&(a, b)| a <= hi && lo <= b) {
                return true;
            }
            s &= s - 1;
        }
        false
    }

    /// Whether the text so far matches.
    pub fn accepts(&self, state: u64) -> bool {
        if state & START != 0 {
            self.nullable
        } else {
            state & self.last != 0
        }
    }

    /// Whether `text` matches (tests).
    pub fn is_match(&self, text: &str) -> bool {
        let mut s = Self::start();
        for c in text.chars() {
            s = self.step(s, c as u32);
            if s == 0 {
                return false;
            }
        }
        self.accepts(s)
    }
}

/// The pattern of a `format`, for those that are patterns; `None` for the others. (`date`
/// allows a 31st of any month and a 29th of February of any year: days are not checked against
/// the calendar.)
pub fn format_pattern(format: &str) -> Option<String> {
    const DATE: &str = r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])";
    const TIME: &str = r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)";
    Some(match format {
        "date" => format!("^{DATE}$"),
        "time" => format!("^{TIME}$"),
        "date-time" => format!("^{DATE}T{TIME}$"),
        "uuid" => r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$".into(),
        "email" => r"^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*\.[a-zA-Z]{2,}$".into(),
        "ipv4" => r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$".into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_ecma_262() {
        for (pattern, yes, no) in [
            (r"^[a-z]+$", &["a", "abc"][..], &["", "A", "ab1"][..]),
            (r"ab", &["ab", "xaby", "ab\n"], &["a", "ba"]),
            (
                r"^\d{3}-\d{2,4}$",
                &["123-45", "123-4567"],
                &["12-45", "123-4", "123-45678"],
            ),
            (r"^(cat|dog)s?$", &["cat", "dogs"], &["cow", "cats!"]),
            (r"^[^\s@]+@[^\s@]+$", &["a@b", "é@ü"], &["a b@c", "@b"]),
            (r"^\u00e9.$", &["éx"], &["e", "é\n"]),
            (r"^(?:a|b)*c{0,2}$", &["", "abba", "acc"], &["accc", "d"]),
            (r"^[\w.-]+\.json$", &["my-file.v2.json"], &["a.jsonx", ".json"]),
            (r"^\$\d+(\.\d\d)?$", &["$5", "$5.25"], &["$5.2", "5"]),
        ] {
            let re = Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            for t in yes {
                assert!(re.is_match(t), "{pattern} should match {t:?}");
            }
            for t in no {
                assert!(!re.is_match(t), "{pattern} should not match {t:?}");
            }
        }
    }

    #[test]
    fn formats() {
        let m = |f: &str, t: &str| Regex::new(&format_pattern(f).unwrap()).unwrap().is_match(t);
        assert!(m("date", "2024-02-29") && !m("date", "2024-13-01") && !m("date", "24-01-01"));
        assert!(!m("date-time", "2024-02-29T23:59:60Z"));
        assert!(m("date-time", "2024-02-29T23:59:59Z") && m("date-time", "2024-02-29T23:59:59.123+05:30"));
        assert!(!m("date-time", "2024-02-29 23:59:59Z") && !m("date-time", "2024-02-29T23:59:59"));
        assert!(m("time", "08:30:00Z") && !m("time", "8:30:00Z"));
        assert!(m("uuid", "123e4567-e89b-12d3-a456-426614174000") && !m("uuid", "123e4567e89b12d3a456426614174000"));
        assert!(m("email", "ada.lovelace@example.co.uk") && !m("email", "ada@example") && !m("email", "a b@c.de"));
        assert!(m("ipv4", "192.168.0.255") && !m("ipv4", "256.1.1.1") && !m("ipv4", "1.2.3"));
        assert!(format_pattern("uri").is_none());
    }

    #[test]
    fn unsupported_patterns_are_refused_by_name() {
        for (p, says) in [
            (r"(a)\1", "escape `\\1`"),
            (r"(?=a)b", "look-around"),
            (r"a+?", "lazy"),
            (r"a^b", "only at the ends"),
            (r"[a-", "unclosed"),
            (r"(ab", "unclosed group"),
            (r"ab)", "unmatched"),
            (r"a{3,1}", "out of order"),
            (r"^[a-z]{40}-[0-9]{30}$", "too long"),
            (r"((((a{64}){64}){64}){64}){64}", "too long"),
            (r"*a", "nothing to repeat"),
        ] {
            let e = Regex::new(p).expect_err(p).0;
            assert!(e.contains(says), "{p}: {e}");
        }
    }
}
