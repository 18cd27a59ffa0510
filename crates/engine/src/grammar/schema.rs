//! JSON Schemas compiled to the nodes the matcher follows (OpenAI's `response_format:
//! {"type": "json_schema"}`, what the OpenAI SDK's `.parse()` sends for a Pydantic model).
//!
//! What is enforced: `type` (one or a list), `properties` (written in the schema's order, each
//! at most once; those not in `required` may be left out), `required`, `additionalProperties`
//! (for objects without `properties`: a map's values), `items`, `prefixItems` (tuples; draft
//! 7's `items` as a list with `additionalItems` too), `minItems` / `maxItems`, `minLength` /
//! `maxLength`, `pattern` and the string `format`s that are patterns (see [`super::regex`]), `minimum` / `maximum` / `exclusiveMinimum` / `exclusiveMaximum` (a bounded
//! number is written without an exponent, with at most 19 significant digits, 30 after the
//! point), `enum`, `const`, `anyOf` / `oneOf` (one of the alternatives), `allOf` of one schema,
//! `$ref` within the document (`#`, `#/$defs/…`, `#/definitions/…`, any JSON pointer; recursion
//! through objects and arrays is fine), `nullable`. Annotations (`title`, `description`,
//! `default`, `examples`, …) are ignored. An assertion this module does not enforce
//! (`multipleOf`, `uniqueItems`, a `format` such as `uri`, …) is refused by name rather than
//! ignored: the reply would not be guaranteed to validate.
//!
//! An object with `properties` gets only those keys (extra keys are allowed by a schema that
//! does not forbid them, but never needed: what is written validates either way, and a model
//! given room for free keys invents them). An object without `properties` is a map: any keys,
//! each value as `additionalProperties` says (anything when absent, no keys when `false`).

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

use super::regex::{format_pattern, Regex};

pub(super) type NodeId = u32;

/// A string node without a pattern.
pub(super) const NO_PATTERN: u32 = u32::MAX;
/// A number node without bounds.
pub(super) const NO_RANGE: u32 = u32::MAX;
/// Most patterns (`pattern`, and `format`s) one schema may have.
const MAX_PATTERNS: usize = 256;

/// Most parts a compiled schema may have (each property, alternative, enum value and type is
/// one; a schema from a request is bounded by the body, this bounds the work).
pub const MAX_NODES: usize = 4096;
/// Deepest nesting of schemas (and `$ref` chains) followed while compiling.
const MAX_SCHEMA_DEPTH: usize = 128;

// Nodes every schema has, at these ids.
pub(super) const ANY: NodeId = 0;
pub(super) const ANY_OBJECT: NodeId = 1;
pub(super) const ANY_ARRAY: NodeId = 2;
pub(super) const ANY_STRING: NodeId = 3;
pub(super) const ANY_NUMBER: NodeId = 4;
pub(super) const TRUE: NodeId = 5;
pub(super) const FALSE: NodeId = 6;
pub(super) const NULL: NodeId = 7;
const BOOLEAN: NodeId = 8;
const INTEGER: NodeId = 9;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    /// Any JSON value.
    Any,
    /// A number (an integer: no fraction, no exponent) within `range` (an index into
    /// [`Schema::ranges`]; [`NO_RANGE`]: any).
    Number { integer: bool, range: u32 },
    /// A string of `min..=max` characters, matching `pattern` (an index into
    /// [`Schema::patterns`]; [`NO_PATTERN`]: any).
    String { min: u32, max: u32, pattern: u32 },
    /// Exactly these bytes: a `const` or `enum` value as compact JSON (also `true`, `false`,
    /// `null`).
    Literal(Box<[u8]>),
    /// `min..=max` items: the first ones of the `prefix` nodes in turn (a tuple), the rest of
    /// `items`.
    Array {
        prefix: Box<[NodeId]>,
        items: NodeId,
        min: u32,
        max: u32,
    },
    /// With `props`: those keys in that order. Without: any keys, values `additional` (`None`:
    /// no keys).
    Object {
        props: Box<[Prop]>,
        additional: Option<NodeId>,
    },
    /// One of these.
    AnyOf(Box<[NodeId]>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Prop {
    /// The key as JSON, quotes included: the bytes the model writes.
    pub(super) key: Box<[u8]>,
    pub(super) value: NodeId,
    pub(super) required: bool,
}

/// A compiled JSON Schema whose values are JSON objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    pub(super) nodes: Vec<Node>,
    pub(super) root: NodeId,
    pub(super) patterns: Vec<Regex>,
    pub(super) ranges: Vec<Range>,
    /// Literal nodes written before and after the value (a tool call's tags).
    pub(super) before: Option<NodeId>,
    pub(super) after: Option<NodeId>,
}

/// Why a schema cannot be followed, and where in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// A JSON pointer into the schema (`#/properties/when`).
    pub at: String,
    pub message: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at {})", self.message, self.at)
    }
}

impl std::error::Error for SchemaError {}

/// Assertions not enforced: a schema with one is refused (a reply could break them). Other
/// keywords (annotations, and those JSON Schema does not define) are ignored, as validators do.
const UNSUPPORTED: &[&str] = &[
    "multipleOf",
    "minProperties",
    "maxProperties",
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "if",
    "then",
    "else",
    "not",
    "contains",
    "minContains",
    "maxContains",
    "uniqueItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "$recursiveRef",
    "contentSchema",
];

impl Schema {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    pub fn any_object() -> Self {
        Self {
            nodes: prelude(),
            root: ANY_OBJECT,
            patterns: Vec::new(),
            ranges: Vec::new(),
            before: None,
            after: None,
        }
    }

    /// Compiles `schema` (a JSON Schema document). Its values must be objects (as OpenAI asks of
    /// a response format's root): `{}` or `true` is taken as any object.
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let mut c = Compiler::new(schema);
        let root = c.compile(schema, "#")?;
        let root = if c.nodes[root as usize] == Node::Any {
            ANY_OBJECT
        } else {
            root
        };
        let s = Self {
            nodes: c.nodes,
            root,
            patterns: c.patterns,
            ranges: c.ranges,
            before: None,
            after: None,
        };
        s.check_alternatives()?;
        if !s.only_objects(root) {
            return Err(err(
                "#",
                "the schema's values must be JSON objects (\"type\": \"object\")",
            ));
        }
        Ok(s)
    }

    /// One call to one of `tools` (each a name and its parameters' JSON Schema; `None`: it takes
    /// none), written as `{"name": "f", "<arguments_key>": {…}}` between `before` and `after`:
    /// what a forced tool call generates. Each tool's parameters are a document of their own
    /// (their `$ref`s point into it).
    pub fn tool_call(
        tools: &[(&str, Option<&Value>)],
        arguments_key: &str,
        before: &str,
        after: &str,
    ) -> Result<Self, SchemaError> {
        let no_parameters = serde_json::json!({"type": "object", "additionalProperties": false});
        let mut c = Compiler::new(&no_parameters);
        let mut alternatives = Vec::with_capacity(tools.len());
        let key = |k: &str| -> Box<[u8]> { serde_json::to_vec(k).expect("a string").into() };
        for &(name, parameters) in tools {
            // Each tool's parameters are a document of their own: its `$ref`s point into it.
            c.doc = parameters.unwrap_or(&no_parameters);
            c.refs.clear();
            let in_tool = |e: SchemaError| SchemaError {
                at: e.at,
                message: format!("tool {name:?}'s parameters: {}", e.message),
            };
            let mut args = c.compile(c.doc, "#").map_err(in_tool)?;
            if c.nodes[args as usize] == Node::Any {
                args = ANY_OBJECT;
            }
            let name = c.literal(&Value::String(name.to_string()), "#")?;
            let call = c.add(
                Node::Object {
                    props: Box::new([
                        Prop {
                            key: key("name"),
                            value: name,
                            required: true,
                        },
                        Prop {
                            key: key(arguments_key),
                            value: args,
                            required: true,
                        },
                    ]),
                    additional: None,
                },
                "#",
            )?;
            alternatives.push((call, args));
        }
        let root = match alternatives.as_slice() {
            [(one, _)] => *one,
            _ => c.add(Node::AnyOf(alternatives.iter().map(|a| a.0).collect()), "#")?,
        };
        let mut literal = |text: &str| -> Result<Option<NodeId>, SchemaError> {
            if text.is_empty() {
                return Ok(None);
            }
            c.add(Node::Literal(text.as_bytes().into()), "#").map(Some)
        };
        let (before, after) = (literal(before)?, literal(after)?);
        let s = Self {
            nodes: c.nodes,
            root,
            patterns: c.patterns,
            ranges: c.ranges,
            before,
            after,
        };
        s.check_alternatives()?;
        if let Some(((name, _), _)) = tools.iter().zip(&alternatives).find(|(_, &(_, a))| !s.only_objects(a)) {
            return Err(err(
                "#",
                format!("tool {name:?}'s parameters must be an object schema (\"type\": \"object\")"),
            ));
        }
        Ok(s)
    }

    /// `anyOf` (and `$ref`, compiled as an `anyOf` of one) must reach a value through every
    /// cycle: `{"$ref": "#"}` at the root would expand forever.
    fn check_alternatives(&self) -> Result<(), SchemaError> {
        // 0: not seen, 1: on the path, 2: done.
        let mut mark = vec![0u8; self.nodes.len()];
        fn visit(s: &Schema, n: NodeId, mark: &mut [u8]) -> bool {
            match mark[n as usize] {
                1 => return false,
                2 => return true,
                _ => {}
            }
            mark[n as usize] = 1;
            if let Node::AnyOf(alts) = &s.nodes[n as usize] {
                if !alts.iter().all(|&a| visit(s, a, mark)) {
                    return false;
                }
            }
            mark[n as usize] = 2;
            true
        }
        for n in 0..self.nodes.len() as NodeId {
            if !visit(self, n, &mut mark) {
                return Err(err(
                    "#",
                    "a $ref or anyOf refers to itself without an object or array between",
                ));
            }
        }
        Ok(())
    }

    fn only_objects(&self, n: NodeId) -> bool {
        match &self.nodes[n as usize] {
            Node::Object { .. } => true,
            Node::Literal(bytes) => bytes.first() == Some(&b'{'),
            Node::AnyOf(alts) => alts.iter().all(|&a| self.only_objects(a)),
            _ => false,
        }
    }
}

/// A number's bounds (`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`).
const NUMERIC: [&str; 4] = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

/// The values a bounded number may take. A number is compared as the `f64` its text reads as
/// (as a validator in Python or JavaScript compares it); an integer exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Range {
    /// Bounds of a number, `strict`: the bound itself excluded (infinite: none).
    pub(super) lo: f64,
    pub(super) lo_strict: bool,
    pub(super) hi: f64,
    pub(super) hi_strict: bool,
    /// Inclusive bounds of an integer.
    pub(super) ilo: i128,
    pub(super) ihi: i128,
}

// Never NaN: bounds come from JSON numbers.
impl Eq for Range {}

impl Range {
    /// The bounds `m` gives a number (`integer`: an integer); `None` when it gives none.
    /// Draft 4's boolean `exclusiveMinimum` / `exclusiveMaximum` are read too.
    fn of(m: &Map<String, Value>, integer: bool, at: &str) -> Result<Option<Range>, SchemaError> {
        if !NUMERIC.iter().any(|k| m.contains_key(*k)) {
            return Ok(None);
        }
        let number = |k: &str| -> Result<Option<&serde_json::Number>, SchemaError> {
            match m.get(k) {
                None | Some(Value::Bool(_)) => Ok(None),
                Some(Value::Number(n)) => Ok(Some(n)),
                Some(_) => Err(err(at, format!("`{k}` must be a number"))),
            }
        };
        let flag = |k: &str| matches!(m.get(k), Some(Value::Bool(true)));
        // The tighter of `minimum` and a numeric `exclusiveMinimum` (and the same above).
        let bound =
            |inclusive: &str, exclusive: &str, low: bool| -> Result<Option<(&serde_json::Number, bool)>, SchemaError> {
                let a = number(inclusive)?.map(|n| (n, flag(exclusive)));
                let b = number(exclusive)?.map(|n| (n, true));
                Ok(match (a, b) {
                    (Some(a), Some(b)) => {
                        let (x, y) = (a.0.as_f64().unwrap_or(0.0), b.0.as_f64().unwrap_or(0.0));
                        let a_tighter = if low { x > y } else { x < y };
                        Some(if a_tighter { a } else { b })
                    }
                    (a, b) => a.or(b),
                })
            };
        let lo = bound("minimum", "exclusiveMinimum", true)?;
        let hi = bound("maximum", "exclusiveMaximum", false)?;
        let as_f64 = |b: Option<(&serde_json::Number, bool)>, none: f64| match b {
            Some((n, strict)) => (n.as_f64().unwrap_or(none), strict),
            None => (none, false),
        };
        let (lo_f, lo_strict) = as_f64(lo, f64::NEG_INFINITY);
        let (hi_f, hi_strict) = as_f64(hi, f64::INFINITY);
        // An integer's inclusive bounds, exact for integer bounds (f64 ones rounded inwards).
        let int = |b: Option<(&serde_json::Number, bool)>, low: bool| -> i128 {
            let Some((n, strict)) = b else {
                return if low { i128::MIN } else { i128::MAX };
            };
            let step = if low { 1 } else { -1 };
            match n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)) {
                Some(v) => v + if strict { step } else { 0 },
                None => {
                    let f = n.as_f64().unwrap_or(0.0);
                    let r = if low { f.ceil() } else { f.floor() };
                    // `as` saturates: a bound past i128 is no bound.
                    (r as i128).saturating_add(if strict && r == f { step } else { 0 })
                }
            }
        };
        let r = Range {
            lo: lo_f,
            lo_strict,
            hi: hi_f,
            hi_strict,
            ilo: int(lo, true),
            ihi: int(hi, false),
        };
        let empty = if integer {
            r.ilo > r.ihi
        } else {
            lo_f > hi_f || (lo_f == hi_f && (lo_strict || hi_strict))
        };
        if empty {
            let what = if integer { "integer" } else { "number" };
            return Err(err(at, format!("no {what} is within the schema's minimum and maximum")));
        }
        Ok(Some(r))
    }
}

fn err(at: &str, message: impl Into<String>) -> SchemaError {
    SchemaError {
        at: at.to_string(),
        message: message.into(),
    }
}

fn prelude() -> Vec<Node> {
    let literal = |s: &str| Node::Literal(s.as_bytes().into());
    vec![
        Node::Any,
        Node::Object {
            props: Box::new([]),
            additional: Some(ANY),
        },
        Node::Array {
            prefix: Box::new([]),
            items: ANY,
            min: 0,
            max: u32::MAX,
        },
        Node::String {
            min: 0,
            max: u32::MAX,
            pattern: NO_PATTERN,
        },
        Node::Number {
            integer: false,
            range: NO_RANGE,
        },
        literal("true"),
        literal("false"),
        literal("null"),
        Node::AnyOf(Box::new([TRUE, FALSE])),
        Node::Number {
            integer: true,
            range: NO_RANGE,
        },
    ]
}

struct Compiler<'a> {
    doc: &'a Value,
    nodes: Vec<Node>,
    /// `$ref` targets compiled so far (recursion refers back to them).
    refs: HashMap<String, NodeId>,
    depth: usize,
    /// Nodes and properties so far (properties may share a node).
    parts: usize,
    patterns: Vec<Regex>,
    ranges: Vec<Range>,
}

impl<'a> Compiler<'a> {
    fn new(doc: &'a Value) -> Self {
        Self {
            doc,
            nodes: prelude(),
            refs: HashMap::new(),
            depth: 0,
            parts: 0,
            patterns: Vec::new(),
            ranges: Vec::new(),
        }
    }

    fn part(&mut self, at: &str) -> Result<(), SchemaError> {
        self.parts += 1;
        if self.parts > MAX_NODES {
            return Err(err(
                at,
                format!("the schema is too large (more than {MAX_NODES} parts)"),
            ));
        }
        Ok(())
    }

    fn reserve(&mut self, at: &str) -> Result<NodeId, SchemaError> {
        self.part(at)?;
        self.nodes.push(Node::Any);
        Ok((self.nodes.len() - 1) as NodeId)
    }

    fn add(&mut self, node: Node, at: &str) -> Result<NodeId, SchemaError> {
        let id = self.reserve(at)?;
        self.nodes[id as usize] = node;
        Ok(id)
    }

    fn compile(&mut self, schema: &Value, at: &str) -> Result<NodeId, SchemaError> {
        if self.depth >= MAX_SCHEMA_DEPTH {
            return Err(err(at, "the schema is nested too deeply"));
        }
        self.depth += 1;
        let r = match schema {
            Value::Bool(true) => Ok(ANY),
            Value::Bool(false) => Err(err(at, "a `false` schema allows no value")),
            Value::Object(m) => self.object(m, at),
            other => Err(err(at, format!("a schema must be an object or a boolean, not {other}"))),
        };
        self.depth -= 1;
        r
    }

    fn object(&mut self, m: &Map<String, Value>, at: &str) -> Result<NodeId, SchemaError> {
        for k in m.keys() {
            if UNSUPPORTED.contains(&k.as_str()) {
                return Err(err(at, format!("`{k}` is not supported in response_format schemas")));
            }
        }
        let has = |k: &str| m.contains_key(k);
        let constraints = [
            "type",
            "properties",
            "items",
            "enum",
            "const",
            "anyOf",
            "oneOf",
            "allOf",
        ];
        let alone = |k: &str| -> Result<(), SchemaError> {
            match constraints.iter().find(|&&c| c != k && has(c)) {
                Some(c) => Err(err(at, format!("`{k}` beside `{c}` is not supported"))),
                None => Ok(()),
            }
        };
        if let Some(r) = m.get("$ref") {
            if let Some(c) = constraints.iter().find(|&&c| has(c)) {
                return Err(err(at, format!("`$ref` beside `{c}` is not supported")));
            }
            let target = self.reference(r, at)?;
            return self.nullable(m, target, at);
        }
        if let Some(v) = m.get("const") {
            let n = self.literal(v, at)?;
            return self.nullable(m, n, at);
        }
        if let Some(v) = m.get("enum") {
            let Some(values) = v.as_array().filter(|a| !a.is_empty()) else {
                return Err(err(at, "`enum` must be a non-empty array"));
            };
            let mut alts = Vec::with_capacity(values.len());
            for v in values {
                alts.push(self.literal(v, at)?);
            }
            let n = self.add(Node::AnyOf(alts.into()), at)?;
            return self.nullable(m, n, at);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            let Some(v) = m.get(key) else { continue };
            alone(key)?;
            let Some(list) = v.as_array().filter(|a| !a.is_empty()) else {
                return Err(err(at, format!("`{key}` must be a non-empty array of schemas")));
            };
            if key == "allOf" && list.len() > 1 {
                return Err(err(at, "`allOf` of more than one schema is not supported"));
            }
            // oneOf is followed as anyOf: a reply matching two alternatives is not excluded
            // (alternatives of a tagged union differ in their tag anyway).
            let mut alts = Vec::with_capacity(list.len());
            for (i, s) in list.iter().enumerate() {
                alts.push(self.compile(s, &format!("{at}/{key}/{i}"))?);
            }
            let n = self.add(Node::AnyOf(alts.into()), at)?;
            return self.nullable(m, n, at);
        }
        let types: Vec<&str> = match m.get("type") {
            None if has("properties") || has("additionalProperties") || has("required") => vec!["object"],
            None if has("items") || has("prefixItems") || has("minItems") || has("maxItems") => vec!["array"],
            None if has("minLength") || has("maxLength") || has("pattern") || has("format") => vec!["string"],
            None if NUMERIC.iter().any(|k| has(k)) => vec!["number"],
            None => return self.nullable(m, ANY, at),
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(list)) if !list.is_empty() => list
                .iter()
                .map(|t| {
                    t.as_str()
                        .ok_or_else(|| err(at, "`type` must be a string or a list of strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err(at, "`type` must be a string or a non-empty list of strings")),
        };
        let mut alts = Vec::with_capacity(types.len());
        for t in types {
            alts.push(self.typed(t, m, at)?);
        }
        let n = if alts.len() == 1 {
            alts[0]
        } else {
            self.add(Node::AnyOf(alts.into()), at)?
        };
        self.nullable(m, n, at)
    }

    /// OpenAPI's `nullable: true`: the value or `null`.
    fn nullable(&mut self, m: &Map<String, Value>, n: NodeId, at: &str) -> Result<NodeId, SchemaError> {
        if m.get("nullable") == Some(&Value::Bool(true)) {
            return self.add(Node::AnyOf(Box::new([n, NULL])), at);
        }
        Ok(n)
    }

    fn literal(&mut self, v: &Value, at: &str) -> Result<NodeId, SchemaError> {
        let bytes = serde_json::to_vec(v).map_err(|e| err(at, e.to_string()))?;
        self.add(Node::Literal(bytes.into()), at)
    }

    fn count(m: &Map<String, Value>, key: &str, at: &str) -> Result<Option<u32>, SchemaError> {
        match m.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n.min(u32::MAX as u64) as u32))
                .ok_or_else(|| err(at, format!("`{key}` must be a non-negative integer"))),
        }
    }

    fn bounds(m: &Map<String, Value>, min: &str, max: &str, at: &str) -> Result<(u32, u32), SchemaError> {
        let lo = Self::count(m, min, at)?.unwrap_or(0);
        let hi = Self::count(m, max, at)?.unwrap_or(u32::MAX);
        if lo > hi {
            return Err(err(at, format!("`{min}` is above `{max}`")));
        }
        Ok((lo, hi))
    }

    fn typed(&mut self, t: &str, m: &Map<String, Value>, at: &str) -> Result<NodeId, SchemaError> {
        match t {
            "null" => Ok(NULL),
            "boolean" => Ok(BOOLEAN),
            "integer" | "number" => {
                let integer = t == "integer";
                match Range::of(m, integer, at)? {
                    None => Ok(if integer { INTEGER } else { ANY_NUMBER }),
                    Some(r) => {
                        self.ranges.push(r);
                        let range = (self.ranges.len() - 1) as u32;
                        self.add(Node::Number { integer, range }, at)
                    }
                }
            }
            "string" => {
                let pattern = self.pattern(m, at)?;
                match (Self::bounds(m, "minLength", "maxLength", at)?, pattern) {
                    ((0, u32::MAX), NO_PATTERN) => Ok(ANY_STRING),
                    ((min, max), pattern) => self.add(Node::String { min, max, pattern }, at),
                }
            }
            "array" => {
                // A tuple: `prefixItems` then `items` for the rest (2020-12, what Pydantic
                // writes for `tuple[int, str]`), or `items` as a list then `additionalItems`
                // (draft 7). `false` for the rest: no more items than the tuple's.
                let (prefix, rest_key) = match (m.get("prefixItems"), m.get("items")) {
                    (Some(_), Some(Value::Array(_))) => {
                        return Err(err(at, "`items` as a list beside `prefixItems` is not supported"));
                    }
                    (Some(p), _) => (Some(("prefixItems", p)), "items"),
                    (None, Some(p @ Value::Array(_))) => (Some(("items", p)), "additionalItems"),
                    (None, _) => (None, "items"),
                };
                let mut tuple = Vec::new();
                if let Some((key, list)) = prefix {
                    let Some(list) = list.as_array() else {
                        return Err(err(at, format!("`{key}` must be a list of schemas")));
                    };
                    for (i, s) in list.iter().enumerate() {
                        tuple.push(self.compile(s, &format!("{at}/{key}/{i}"))?);
                    }
                }
                let (min, mut max) = Self::bounds(m, "minItems", "maxItems", at)?;
                let items = match m.get(rest_key) {
                    None => ANY,
                    Some(Value::Bool(false)) => {
                        max = max.min(tuple.len() as u32);
                        ANY
                    }
                    Some(s) => self.compile(s, &format!("{at}/{rest_key}"))?,
                };
                if min > max {
                    return Err(err(at, format!("no array of at most {max} items has `minItems` {min}")));
                }
                self.add(
                    Node::Array {
                        prefix: tuple.into(),
                        items,
                        min,
                        max,
                    },
                    at,
                )
            }
            "object" => self.typed_object(m, at),
            other => Err(err(at, format!("unknown type {other:?}"))),
        }
    }

    /// A string's `pattern` or `format` compiled; [`NO_PATTERN`] when it has neither.
    fn pattern(&mut self, m: &Map<String, Value>, at: &str) -> Result<u32, SchemaError> {
        let source = match (m.get("pattern"), m.get("format")) {
            (None, None) => return Ok(NO_PATTERN),
            (Some(_), Some(_)) => return Err(err(at, "`pattern` beside `format` is not supported")),
            (Some(p), None) => p
                .as_str()
                .ok_or_else(|| err(at, "`pattern` must be a string"))?
                .to_string(),
            (None, Some(f)) => {
                let f = f.as_str().ok_or_else(|| err(at, "`format` must be a string"))?;
                format_pattern(f).ok_or_else(|| {
                    err(
                        at,
                        format!(
                            "`format` {f:?} is not supported in response_format schemas \
                             (date, time, date-time, uuid, email and ipv4 are)"
                        ),
                    )
                })?
            }
        };
        if self.patterns.len() >= MAX_PATTERNS {
            return Err(err(at, format!("the schema has more than {MAX_PATTERNS} patterns")));
        }
        let re = Regex::new(&source).map_err(|e| err(at, format!("`pattern` {source:?}: {e}")))?;
        self.patterns.push(re);
        Ok((self.patterns.len() - 1) as u32)
    }

    fn typed_object(&mut self, m: &Map<String, Value>, at: &str) -> Result<NodeId, SchemaError> {
        let required: Vec<&str> = match m.get("required") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|k| {
                    k.as_str()
                        .ok_or_else(|| err(at, "`required` must be a list of strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err(at, "`required` must be a list of strings")),
        };
        let declared = match m.get("properties") {
            None => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(err(at, "`properties` must be an object")),
        };
        let Some(declared) = declared.filter(|p| !p.is_empty()) else {
            if let Some(k) = required.first() {
                return Err(err(at, format!("required key {k:?} is not in `properties`")));
            }
            let additional = match m.get("additionalProperties") {
                None | Some(Value::Bool(true)) => Some(ANY),
                Some(Value::Bool(false)) => None,
                Some(s) => Some(self.compile(s, &format!("{at}/additionalProperties"))?),
            };
            if additional == Some(ANY) {
                return Ok(ANY_OBJECT);
            }
            return self.add(
                Node::Object {
                    props: Box::new([]),
                    additional,
                },
                at,
            );
        };
        if let Some(k) = required.iter().find(|k| !declared.contains_key(**k)) {
            return Err(err(at, format!("required key {k:?} is not in `properties`")));
        }
        let mut props = Vec::with_capacity(declared.len());
        for (k, s) in declared {
            self.part(at)?;
            let value = self.compile(s, &format!("{at}/properties/{}", pointer_escape(k)))?;
            props.push(Prop {
                key: serde_json::to_vec(k).map_err(|e| err(at, e.to_string()))?.into(),
                value,
                required: required.contains(&k.as_str()),
            });
        }
        self.add(
            Node::Object {
                props: props.into(),
                additional: None,
            },
            at,
        )
    }

    /// A `$ref` to a part of this document.
    fn reference(&mut self, r: &Value, at: &str) -> Result<NodeId, SchemaError> {
        let Some(r) = r.as_str() else {
            return Err(err(at, "`$ref` must be a string"));
        };
        if let Some(&n) = self.refs.get(r) {
            return Ok(n);
        }
        let Some(pointer) = r.strip_prefix('#') else {
            return Err(err(
                at,
                format!("$ref {r:?} is outside the schema (only \"#…\" references are followed)"),
            ));
        };
        let Some(target) = self.doc.pointer(pointer) else {
            return Err(err(at, format!("$ref {r:?} points to nothing in the schema")));
        };
        // Reserved before compiling, so that a recursive reference finds it.
        let id = self.reserve(at)?;
        self.refs.insert(r.to_string(), id);
        let n = self.compile(target, r)?;
        self.nodes[id as usize] = Node::AnyOf(Box::new([n]));
        Ok(id)
    }
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
