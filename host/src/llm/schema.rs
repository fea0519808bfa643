//! Example values for JSON Schemas: how the LLM simulator answers structured-output requests.
//!
//! Clients that ask for structured output (OpenAI `response_format: {type: json_schema}`, the
//! Responses API `text.format`, forced tool calls, LangChain `with_structured_output`, pydantic-ai
//! `output_type`, the openai SDK's `parse()`) validate the model's JSON against the schema they
//! sent and raise when it does not fit. The offline simulator has no model, so it builds the
//! answer from the schema itself: [`instance`] walks the schema and picks, at each node, a small
//! plausible value that satisfies that node's keywords.
//!
//! Scope: the draft 2020-12 keywords that providers accept and that pydantic (v1 and v2), zod and
//! the OpenAPI subset (Gemini: upper-case type names, `nullable`) emit. Most keywords are met by
//! construction. Those that cannot be (`oneOf` exclusivity, `not`, `if`/`then`/`else`, whether a
//! `default` or an `enum` member fits its siblings) are checked by a small internal validator, and
//! the generator tries alternatives. `pattern` is handled by a tiny regular-expression engine for a
//! subset of ECMA-262 (literals, `.`, classes, `\d \w \s`, groups, alternation, quantifiers,
//! anchors; lookahead and `\b` as checks on candidates); a pattern outside that subset, or one
//! whose candidates all fail, falls back to a plain word, which may not match.
//!
//! The output is a pure function of `(schema, seed, hint)`: every choice draws from a
//! `SplitMix64` stream seeded by `seed`, so a simulator run replays exactly. It never panics on a
//! malformed schema: whatever cannot be read is treated as "anything" or yields `null`.

use serde_json::{Map, Number, Value};

type Schema = Map<String, Value>;

/// Nesting (objects and arrays) past which every node takes its shortest valid form, so that
/// schemas that are deep without recursion still give a small answer.
const SOFT_DEPTH: usize = 10;
/// Nesting past which the generator gives up with `null`; only schemas that require infinite
/// recursion (and so have no finite instance) get there.
const HARD_DEPTH: usize = 48;
/// `$ref` expansions on one path past which the generator gives up with `null`.
const MAX_REF_STACK: usize = 32;
/// Nodes generated past which every node takes its shortest valid form: a bound on output size.
const NODE_BUDGET: usize = 2_000;
/// Nodes generated past which the generator answers `null` everywhere: bounds the work on
/// unsatisfiable schemas, where every union retries its branches at every level.
const HARD_NODE_BUDGET: usize = 5_000;
/// `$ref`/`allOf` resolutions allowed while flattening one node: breaks `$ref` cycles that
/// consume no data (`{"$ref": "#"}` at the root).
const FLATTEN_BUDGET: usize = 32;
/// Recursion bound of the internal validator, for `$ref` cycles that consume no data.
const CHECK_DEPTH: usize = 96;
/// Validator steps (schema nodes visited) allowed for one instance, all checks together.
const CHECK_STEPS: usize = 200_000;
/// Longest string the generator pads to and the regex engine matches; a malformed
/// `minLength: 1e18` must not exhaust memory, and matching recurses once per character.
const MAX_STRING: usize = 100_000;
/// Longest text the regex matcher accepts (it recurses per character; a thread stack is small).
const MAX_MATCH_TEXT: usize = 2_000;
/// Most array items or object entries a `minItems`/`minProperties` can force.
const MAX_FORCED: usize = 1_000;
/// Cost standing for "unsatisfiable" when ranking branches by size.
const INFINITE_COST: usize = usize::MAX / 4;

/// A JSON value that is a valid instance of `schema` (draft 2020-12 / OpenAPI subset the providers accept),
/// chosen deterministically from `seed`; `hint` is text (e.g. the user's prompt) the generator may use for string fields.
///
/// `$ref`s resolve against `schema` itself (`#/$defs/...`, `#/definitions/...`, any JSON pointer,
/// `$anchor`s and `$id`s). A schema with no finite instance, or one the generator cannot read,
/// gives a best-effort value (often `null`) rather than an error: the simulator then answers with
/// it, and the client reports the mismatch as it would for a real model.
#[must_use]
pub fn instance(schema: &Value, seed: u64, hint: &str) -> Value {
    let mut generator = Generator {
        root: schema,
        rng: Rng(seed),
        hint,
        // The root is on the stack from the start so that `{"$ref": "#"}` counts as recursion.
        stack: vec!["#".to_owned()],
        nodes: 0,
        check_steps: CHECK_STEPS,
    };
    let ctx = Ctx {
        depth: 0,
        limited: false,
        name: None,
        index: 0,
        retry: 0,
    };
    generator.gen_value(schema, &ctx)
}

/// `SplitMix64`: tiny, fast, good enough for picking example values, and stable across platforms
/// and versions (unlike `std`'s hashers), which keeps simulator answers replayable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n).unwrap_or(u64::MAX);
        if n64 == 0 {
            return 0;
        }
        usize::try_from(self.next() % n64).unwrap_or(0)
    }
}

/// Where in the instance a node is generated.
#[derive(Clone)]
struct Ctx {
    /// Object/array nesting.
    depth: usize,
    /// Take the shortest valid form: past a recursion, the soft depth or the node budget.
    limited: bool,
    /// The property name (or the schema's title), from which plausible words are made.
    name: Option<String>,
    /// Position in the enclosing array; keeps sibling strings distinct (`uniqueItems`).
    index: usize,
    /// Attempt number after a first value was rejected (`not`, `if`/`then`/`else`, a duplicate
    /// under `uniqueItems`): later attempts choose differently.
    retry: usize,
}

impl Ctx {
    fn child(&self, name: Option<String>, index: usize) -> Self {
        Self {
            depth: self.depth + 1,
            limited: self.limited,
            name,
            index,
            retry: 0,
        }
    }
}

struct Generator<'a> {
    root: &'a Value,
    rng: Rng,
    hint: &'a str,
    /// The `$ref`s being expanded on the current path: meeting one again is recursion.
    stack: Vec<String>,
    nodes: usize,
    /// What is left of the validator's step allowance for this whole instance.
    check_steps: usize,
}

impl Generator<'_> {
    fn check(&mut self, schema: &Value, value: &Value) -> bool {
        let cx = Check {
            root: self.root,
            steps_left: std::cell::Cell::new(self.check_steps),
        };
        let valid = check(&cx, schema, value, 0);
        self.check_steps = cx.steps_left.get();
        valid
    }

    fn check_map(&mut self, schema: &Schema, value: &Value) -> bool {
        let cx = Check {
            root: self.root,
            steps_left: std::cell::Cell::new(self.check_steps),
        };
        let valid = check_map(&cx, schema, value, 0);
        self.check_steps = cx.steps_left.get();
        valid
    }

    fn gen_value(&mut self, schema: &Value, ctx: &Ctx) -> Value {
        self.nodes += 1;
        if self.nodes > HARD_NODE_BUDGET {
            return Value::Null;
        }
        match schema {
            Value::Bool(true) => self.gen_any(ctx),
            Value::Object(map) => self.gen_schema(map, ctx),
            // `false` has no instance; anything else is not a schema.
            _ => Value::Null,
        }
    }

    fn gen_schema(&mut self, schema: &Schema, ctx: &Ctx) -> Value {
        // `ctx.depth` counts data nesting; a `$ref` cycle through unions (`{"anyOf": [{"$ref":
        // "#"}]}`) nests no data, so the expansion stack bounds it.
        if ctx.depth > HARD_DEPTH || self.stack.len() > MAX_REF_STACK {
            return Value::Null;
        }
        let mut refs = Vec::new();
        let mut budget = FLATTEN_BUDGET;
        let Some(flat) = flatten(self.root, schema, &mut refs, &mut budget) else {
            return Value::Null;
        };
        let mut ctx = ctx.clone();
        if refs.iter().any(|r| self.stack.contains(r))
            || ctx.depth >= SOFT_DEPTH
            || self.nodes > NODE_BUDGET
        {
            ctx.limited = true;
        }
        if ctx.name.is_none() {
            ctx.name = flat.get("title").and_then(Value::as_str).map(str::to_owned);
        }
        let pushed = refs.len();
        self.stack.extend(refs);
        let value = self.gen_flat(&flat, &ctx);
        self.stack.truncate(self.stack.len().saturating_sub(pushed));
        value
    }

    /// Generates for a schema without `$ref`/`allOf` at its top; retries what construction
    /// cannot guarantee (`not`, `if`/`then`/`else`) with other choices.
    fn gen_flat(&mut self, s: &Schema, ctx: &Ctx) -> Value {
        let first = self.gen_core(s, ctx);
        let needs_check = s.contains_key("not") || s.contains_key("if");
        if !needs_check || self.check_map(s, &first) {
            return first;
        }
        for retry in 1..=4 {
            let mut again = ctx.clone();
            again.index += retry;
            again.retry = retry;
            let value = self.gen_core(s, &again);
            if self.check_map(s, &value) {
                return value;
            }
        }
        first
    }

    fn gen_core(&mut self, s: &Schema, ctx: &Ctx) -> Value {
        if let Some(value) = s.get("const") {
            return value.clone();
        }
        if let Some(Value::Array(options)) = s.get("enum") {
            return self.pick_enum(s, options, ctx);
        }
        if let Some(default) = s.get("default")
            && default_is_illustrative(default, ctx.limited)
            && self.check_map(s, default)
        {
            return default.clone();
        }
        if s.contains_key("if") {
            return self.gen_conditional(s, ctx);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = s.get(key) {
                return self.gen_union(s, key, branches, ctx);
            }
        }
        let types = type_list(s.get("type"));
        let nullable =
            types.iter().any(|t| t == "null") || s.get("nullable") == Some(&Value::Bool(true));
        let concrete: Vec<&str> = types
            .iter()
            .map(String::as_str)
            .filter(|t| *t != "null")
            .collect();
        let chosen = if ctx.limited && nullable {
            "null"
        } else if let Some(t) = concrete.get(ctx.retry % concrete.len().max(1)) {
            t
        } else if types.iter().any(|t| t == "null") {
            "null"
        } else {
            infer_type(s)
        };
        match chosen {
            "object" => self.gen_object(s, ctx),
            "array" => self.gen_array(s, ctx),
            "string" => self.gen_string(s, ctx),
            "integer" => self.gen_integer(s, ctx),
            "number" => self.gen_number(s, ctx),
            "boolean" => {
                Value::Bool(!ctx.limited && (self.rng.below(2) + ctx.retry).is_multiple_of(2))
            }
            "null" => Value::Null,
            _ => self.gen_any(ctx),
        }
    }

    /// An unconstrained value: a string, the most readable thing to put where anything goes.
    fn gen_any(&mut self, ctx: &Ctx) -> Value {
        Value::String(self.word(ctx))
    }

    /// Picks a member of `enum` that also satisfies the sibling keywords, preferring non-null
    /// members; which one depends on the seed, so runs with other seeds cover other branches.
    fn pick_enum(&mut self, s: &Schema, options: &[Value], ctx: &Ctx) -> Value {
        let fitting: Vec<&Value> = options.iter().filter(|o| self.check_map(s, o)).collect();
        let non_null: Vec<&Value> = fitting.iter().copied().filter(|o| !o.is_null()).collect();
        let pool = if ctx.limited || non_null.is_empty() {
            &fitting
        } else {
            &non_null
        };
        // Retries (for `uniqueItems`, `not`) walk the members in order, so they cover them all.
        let pick = if ctx.limited {
            0
        } else if ctx.retry > 0 {
            ctx.retry
        } else {
            self.rng.below(pool.len())
        };
        pool.get(pick % pool.len().max(1))
            .map(|v| (*v).clone())
            .or_else(|| options.first().cloned())
            .unwrap_or(Value::Null)
    }

    /// `anyOf`/`oneOf`: the first non-null branch (the shortest one when depth-limited), merged
    /// with the sibling keywords and kept only if the whole schema accepts it (for `oneOf`:
    /// exactly one branch matches); otherwise the next branch.
    fn gen_union(&mut self, s: &Schema, key: &str, branches: &[Value], ctx: &Ctx) -> Value {
        let mut rest = s.clone();
        rest.remove(key);
        let mut order: Vec<usize> = (0..branches.len()).collect();
        if ctx.limited {
            let costs: Vec<usize> = branches.iter().map(|b| cost(self.root, b, 4)).collect();
            order.sort_by_key(|&i| costs.get(i).copied().unwrap_or(INFINITE_COST));
        } else {
            order.sort_by_key(|&i| branches.get(i).is_some_and(is_null_schema));
        }
        let mut fallback = None;
        for &i in order.iter().take(8) {
            let mut merged = match branches.get(i) {
                Some(Value::Object(branch)) => merge(&rest, branch),
                Some(Value::Bool(true)) => rest.clone(),
                _ => continue,
            };
            if key == "oneOf" && branches.len() > 1 {
                // Exactly one branch may match: steer away from the others (checked and retried
                // by `gen_flat`).
                let others: Vec<Value> = branches
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, b)| b.clone())
                    .collect();
                let mut exclusion = Schema::new();
                exclusion.insert("not".to_owned(), keyword("anyOf", others));
                merged = merge(&merged, &exclusion);
            }
            let value = self.gen_value(&Value::Object(merged), ctx);
            if self.check_map(s, &value) {
                return value;
            }
            fallback.get_or_insert(value);
        }
        fallback.unwrap_or(Value::Null)
    }

    /// `if`/`then`/`else`: tries a value built to meet `if` and `then`, then one built from
    /// `else` that misses `if`.
    fn gen_conditional(&mut self, s: &Schema, ctx: &Ctx) -> Value {
        let mut base = s.clone();
        let condition = base.remove("if").unwrap_or(Value::Bool(true));
        let then = base.remove("then");
        let otherwise = base.remove("else");
        let mut with_then = base.clone();
        if let Value::Object(c) = &condition {
            with_then = merge(&with_then, c);
        }
        if let Some(Value::Object(t)) = &then {
            with_then = merge(&with_then, t);
        }
        let first = self.gen_value(&Value::Object(with_then), ctx);
        if self.check(&condition, &first) && self.check_map(s, &first) {
            return first;
        }
        let mut with_else = base;
        if let Some(Value::Object(e)) = &otherwise {
            with_else = merge(&with_else, e);
        }
        let second = self.gen_value(&Value::Object(with_else), ctx);
        if self.check_map(s, &second) {
            return second;
        }
        first
    }

    fn gen_object(&mut self, s: &Schema, ctx: &Ctx) -> Value {
        let empty = Schema::new();
        let props = s
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let pattern_props = s.get("patternProperties").and_then(Value::as_object);
        let required: Vec<&str> = strings(s.get("required"));
        let min_props = get_usize(s, "minProperties").unwrap_or(0).min(MAX_FORCED);
        let max_props = get_usize(s, "maxProperties").unwrap_or(usize::MAX);
        let mut optional_room = max_props.saturating_sub(required.len());
        let mut out = Map::new();

        for (key, sub) in props {
            let is_required = required.contains(&key.as_str());
            if !is_required {
                // A `false` property schema forbids the key.
                if sub == &Value::Bool(false) {
                    continue;
                }
                if ctx.limited || optional_room == 0 {
                    continue;
                }
                optional_room -= 1;
            }
            let sub = with_pattern_properties(key, sub, pattern_props);
            let value = self.gen_value(&sub, &ctx.child(Some(key.clone()), 0));
            out.insert(key.clone(), value);
        }
        for key in &required {
            if !out.contains_key(*key) {
                self.add_property(&mut out, key, s, pattern_props, ctx);
            }
        }
        // `dependentRequired`: a present key may bring others; twice covers short chains.
        for _ in 0..2 {
            let Some(Value::Object(deps)) = s.get("dependentRequired") else {
                break;
            };
            let wanted: Vec<String> = deps
                .iter()
                .filter(|(k, _)| out.contains_key(k.as_str()))
                .flat_map(|(_, v)| strings(Some(v)))
                .filter(|d| !out.contains_key(*d))
                .map(str::to_owned)
                .collect();
            for key in wanted {
                self.add_property(&mut out, &key, s, pattern_props, ctx);
            }
        }
        if out.len() < min_props {
            self.fill_min_properties(&mut out, s, props, pattern_props, min_props, ctx);
        }
        Value::Object(out)
    }

    /// Adds `key` with a value from its `properties` schema, else a matching `patternProperties`
    /// schema, else `additionalProperties` (or anything).
    fn add_property(
        &mut self,
        out: &mut Map<String, Value>,
        key: &str,
        s: &Schema,
        pattern_props: Option<&Schema>,
        ctx: &Ctx,
    ) {
        let declared = s
            .get("properties")
            .and_then(Value::as_object)
            .and_then(|p| p.get(key));
        let sub = if let Some(sub) = declared {
            with_pattern_properties(key, sub, pattern_props)
        } else {
            let matched = pattern_props.and_then(|pp| {
                pp.iter()
                    .find(|(p, _)| Regex::parse(p).and_then(|r| r.is_match(key)) == Some(true))
                    .map(|(_, v)| v.clone())
            });
            match (matched, s.get("additionalProperties")) {
                (Some(sub), _) => sub,
                (None, Some(extra @ Value::Object(_))) => extra.clone(),
                _ => Value::Bool(true),
            }
        };
        let value = self.gen_value(&sub, &ctx.child(Some(key.to_owned()), 0));
        out.insert(key.to_owned(), value);
    }

    /// `minProperties`: first the optional properties left out, then invented keys where
    /// `additionalProperties` (or a `patternProperties` pattern) allows them.
    fn fill_min_properties(
        &mut self,
        out: &mut Map<String, Value>,
        s: &Schema,
        props: &Schema,
        pattern_props: Option<&Schema>,
        min_props: usize,
        ctx: &Ctx,
    ) {
        let missing: Vec<String> = props
            .keys()
            .filter(|k| !out.contains_key(*k))
            .cloned()
            .collect();
        for key in missing {
            if out.len() >= min_props {
                return;
            }
            self.add_property(out, &key, s, pattern_props, ctx);
        }
        let additional = s
            .get("additionalProperties")
            .cloned()
            .unwrap_or(Value::Bool(true));
        let key_schema = s.get("propertyNames").cloned();
        let mut attempt = 0;
        while out.len() < min_props && attempt < min_props * 2 + 8 {
            attempt += 1;
            let (key, sub) = if additional != Value::Bool(false) {
                let key = match &key_schema {
                    Some(key_schema) => {
                        let named =
                            self.gen_value(key_schema, &ctx.child(Some("key".to_owned()), attempt));
                        named
                            .as_str()
                            .map_or_else(|| format!("key{attempt}"), str::to_owned)
                    }
                    None => format!("key{attempt}"),
                };
                (key, additional.clone())
            } else if let Some(pp) = pattern_props {
                let Some((pattern, sub)) = pp.iter().nth(attempt % pp.len().max(1)) else {
                    break;
                };
                let Some(regex) = Regex::parse(pattern) else {
                    continue;
                };
                let key = regex.generate(Strategy::Random, &mut self.rng);
                if regex.is_match(&key) == Some(false) {
                    continue;
                }
                (key, sub.clone())
            } else {
                break;
            };
            if out.contains_key(&key) {
                continue;
            }
            let value = self.gen_value(&sub, &ctx.child(Some(key.clone()), 0));
            out.insert(key, value);
        }
    }

    fn gen_array(&mut self, s: &Schema, ctx: &Ctx) -> Value {
        // Draft 2020-12 `prefixItems` + `items`, or the older tuple form `items: [..]` +
        // `additionalItems` (pydantic v1, OpenAPI).
        let (prefix, rest): (&[Value], Option<&Value>) =
            match (s.get("prefixItems"), s.get("items")) {
                (Some(Value::Array(p)), items) => (p, items),
                (_, Some(Value::Array(p))) => (p, s.get("additionalItems")),
                (_, items) => (&[], items),
            };
        let min = get_usize(s, "minItems").unwrap_or(0).min(MAX_FORCED);
        let mut max = get_usize(s, "maxItems").unwrap_or(usize::MAX);
        if matches!(rest, Some(Value::Bool(false))) {
            max = max.min(prefix.len());
        }
        let contains = s.get("contains");
        let min_contains = if contains.is_some() {
            get_usize(s, "minContains").unwrap_or(1).min(MAX_FORCED)
        } else {
            0
        };
        let wanted = if ctx.limited {
            0
        } else {
            // One or two items near the top, one deeper: small but not trivially empty.
            let base = if ctx.depth <= 2 {
                1 + self.rng.below(2)
            } else {
                1
            };
            base.max(prefix.len())
        };
        let count = wanted.max(min_contains).min(max).max(min);
        let unique = s.get("uniqueItems") == Some(&Value::Bool(true));
        let item_name = ctx.name.as_deref().map(singular);
        let mut out: Vec<Value> = Vec::with_capacity(count);
        for i in 0..count {
            let base = match prefix.get(i) {
                Some(p) => p.clone(),
                None => rest.cloned().unwrap_or(Value::Bool(true)),
            };
            let schema = match contains {
                Some(c) if i < min_contains => conjoin(&base, c),
                _ => base,
            };
            let mut value = self.gen_value(&schema, &ctx.child(item_name.clone(), i));
            let mut tries = 0;
            while unique && out.iter().any(|o| json_eq(o, &value)) && tries < 8 {
                tries += 1;
                let mut again = ctx.child(item_name.clone(), i + tries * (count + 1));
                again.retry = tries;
                value = self.gen_value(&schema, &again);
            }
            if unique && out.iter().any(|o| json_eq(o, &value)) && i >= min {
                break;
            }
            out.push(value);
        }
        Value::Array(out)
    }

    fn gen_string(&mut self, s: &Schema, ctx: &Ctx) -> Value {
        let min = get_usize(s, "minLength").unwrap_or(0).min(MAX_STRING);
        let max = get_usize(s, "maxLength");
        let fits = |text: &str| {
            let len = text.chars().count();
            len >= min && max.is_none_or(|m| len <= m)
        };
        if let Some(pattern) = s.get("pattern").and_then(Value::as_str)
            && let Some(regex) = Regex::parse(pattern)
            && let Some(text) = self.pattern_string(&regex, min, max)
        {
            return Value::String(text);
        }
        if let Some(format) = s.get("format").and_then(Value::as_str)
            && let Some(text) = self.format_value(format, ctx)
            && fits(&text)
        {
            return Value::String(text);
        }
        let word = self.word(ctx);
        Value::String(fit_length(&word, min, max))
    }

    /// A string matching `regex` within the length bounds: a seeded draw first, then the
    /// shortest form, then forms with every open quantifier stretched to 1, 2, ... repeats.
    fn pattern_string(&mut self, regex: &Regex, min: usize, max: Option<usize>) -> Option<String> {
        let fits = |len: usize| len >= min && max.is_none_or(|m| len <= m);
        let mut strategies = vec![Strategy::Random, Strategy::Short];
        strategies.extend((1..=min.clamp(8, 256)).map(Strategy::Long));
        for strategy in strategies {
            let text = regex.generate(strategy, &mut self.rng);
            if fits(text.chars().count()) && regex.is_match(&text) != Some(false) {
                return Some(text);
            }
        }
        // An unanchored pattern matches inside a longer string: pad the shortest form.
        if !regex.anchored_end() {
            let short = regex.generate(Strategy::Short, &mut self.rng);
            let len = short.chars().count();
            if len < min && fits(min) {
                let padded: String = short
                    .chars()
                    .chain(std::iter::repeat_n('x', min - len))
                    .collect();
                if regex.is_match(&padded) != Some(false) {
                    return Some(padded);
                }
            }
        }
        None
    }

    /// A value for the `format`s providers and pydantic emit; `None` for unknown formats, which
    /// are annotations only.
    fn format_value(&mut self, format: &str, ctx: &Ctx) -> Option<String> {
        let n = ctx.index + 1;
        let text = match format.to_ascii_lowercase().as_str() {
            "date" => format!(
                "2024-{:02}-{:02}",
                1 + self.rng.below(12),
                1 + self.rng.below(28)
            ),
            "date-time" | "datetime" => format!(
                "2024-{:02}-{:02}T{:02}:30:00Z",
                1 + self.rng.below(12),
                1 + self.rng.below(28),
                8 + self.rng.below(10)
            ),
            "time" => format!("{:02}:30:00Z", 8 + self.rng.below(10)),
            "duration" => format!("P{n}D"),
            "email" | "idn-email" => email(ctx.index),
            "hostname" | "idn-hostname" => "example.com".to_owned(),
            "ipv4" => format!("192.0.2.{}", 1 + self.rng.below(254)),
            "ipv6" => format!("2001:db8::{n}"),
            "uri" | "url" | "iri" | "uri-reference" | "iri-reference" => url(ctx.index),
            "uri-template" => "https://example.com/items/{id}".to_owned(),
            "uuid" => self.uuid(),
            "json-pointer" => "/example".to_owned(),
            "relative-json-pointer" => "0".to_owned(),
            "regex" => "^example$".to_owned(),
            // OpenAPI: base64 bytes.
            "byte" | "base64" => "ZXhhbXBsZQ==".to_owned(),
            "password" => "correct-horse-battery-staple".to_owned(),
            "phone" => "+1-555-0100".to_owned(),
            _ => return None,
        };
        Some(text)
    }

    fn uuid(&mut self) -> String {
        let hi = self.rng.next();
        let lo = self.rng.next();
        // Version 4, RFC 4122 variant: what `uuid.UUID` and pydantic's `UUID4` accept.
        let hi = (hi & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
        let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0xFFFF,
            lo >> 48,
            lo & 0xFFFF_FFFF_FFFF
        )
    }

    /// A plausible word for the field's name: fixed examples for common fields (email, city,
    /// dates, ids), the prompt's gist for free-text fields, else "Example <name>".
    fn word(&mut self, ctx: &Ctx) -> String {
        let n = ctx.index + 1;
        let suffix = if ctx.index > 0 {
            format!(" {n}")
        } else {
            String::new()
        };
        let Some(name) = ctx.name.as_deref() else {
            // A bare string as the whole answer reads best as a reply to the prompt.
            let gist = excerpt(self.hint);
            return if ctx.depth == 0 && !gist.is_empty() {
                gist
            } else {
                format!("example{suffix}")
            };
        };
        let words = split_words(name);
        let human = words.join(" ");
        let has = |w: &str| words.iter().any(|x| x == w);
        let spaced = format!(" {human} ");
        if has("email") || has("mail") {
            return email(ctx.index);
        }
        if ["url", "uri", "link", "website", "homepage", "href", "site"]
            .iter()
            .any(|w| has(w))
        {
            return url(ctx.index);
        }
        if let Some((_, value)) = FIXED_WORDS
            .iter()
            .find(|(phrase, _)| spaced.contains(&format!(" {phrase} ")))
        {
            return format!("{value}{suffix}");
        }
        if has("uuid") || has("guid") {
            return self.uuid();
        }
        if words.last().is_some_and(|w| w == "id") {
            let stem = words
                .get(..words.len() - 1)
                .map(|w| w.join("-"))
                .unwrap_or_default();
            let stem = if stem.is_empty() {
                "id".to_owned()
            } else {
                stem
            };
            return format!("{stem}-{}", 1000 + self.rng.below(9000));
        }
        if has("timestamp") || has("datetime") || words.last().is_some_and(|w| w == "at") {
            return format!("2024-01-{:02}T09:30:00Z", 1 + self.rng.below(28));
        }
        if has("date") || has("birthday") || has("dob") {
            return format!("2024-01-{:02}", 1 + self.rng.below(28));
        }
        if has("time") {
            return "09:30:00".to_owned();
        }
        let gist = excerpt(self.hint);
        if !gist.is_empty() {
            if ECHO_WORDS.iter().any(|w| has(w)) {
                return gist;
            }
            if TEXT_WORDS.iter().any(|w| has(w)) {
                return format!("Example {human} for: {gist}");
            }
        }
        if human.is_empty() {
            return format!("example{suffix}");
        }
        format!("Example {human}{suffix}")
    }

    fn gen_integer(&mut self, s: &Schema, ctx: &Ctx) -> Value {
        let candidate = self.preferred_number(ctx, true).round();
        let lo = {
            let exclusive_flag = s.get("exclusiveMinimum") == Some(&Value::Bool(true));
            let from_min = get_f64(s, "minimum").map(|m| {
                if exclusive_flag {
                    m.floor() + 1.0
                } else {
                    m.ceil()
                }
            });
            let from_exclusive = get_f64(s, "exclusiveMinimum").map(|e| e.floor() + 1.0);
            max_opt(from_min, from_exclusive)
        };
        let hi = {
            let exclusive_flag = s.get("exclusiveMaximum") == Some(&Value::Bool(true));
            let from_max = get_f64(s, "maximum").map(|m| {
                if exclusive_flag {
                    m.ceil() - 1.0
                } else {
                    m.floor()
                }
            });
            let from_exclusive = get_f64(s, "exclusiveMaximum").map(|e| e.ceil() - 1.0);
            min_opt(from_max, from_exclusive)
        };
        let step = get_f64(s, "multipleOf")
            .filter(|m| *m > 0.0)
            .and_then(integer_step)
            .unwrap_or(1.0);
        let mut value = (candidate / step).round() * step;
        if ctx.retry > 0
            && let (Some(l), Some(h)) = (lo, hi)
        {
            // A retry in a closed range (for `uniqueItems` or `not`) walks the multiples in it
            // from the lowest, so a few retries visit every value of a small range.
            let first = (l / step).ceil();
            let count = (h / step).floor() - first + 1.0;
            if count >= 1.0 {
                value = (first + as_f64(ctx.retry - 1).rem_euclid(count)) * step;
            }
        }
        if let Some(l) = lo
            && value < l
        {
            value = (l / step).ceil() * step;
        }
        if let Some(h) = hi
            && value > h
        {
            value = (h / step).floor() * step;
        }
        if let Some(l) = lo
            && value < l
        {
            // No multiple in range: the schema has no instance; the bound is the nearest miss.
            value = l;
        }
        integer_value(value)
    }

    fn gen_number(&mut self, s: &Schema, ctx: &Ctx) -> Value {
        let mut candidate = self.preferred_number(ctx, false);
        let lo = lower_bound(s);
        let hi = upper_bound(s);
        if ctx.retry > 0
            && let (Some((l, _)), Some((h, _))) = (lo, hi)
        {
            // A retry in a closed range spreads over it (golden-ratio steps stay strictly inside).
            let fraction = (as_f64(ctx.retry) * 0.618_033_988_749_895).fract();
            candidate = fraction.mul_add(h - l, l);
        }
        let above = |v: f64, (l, exclusive): (f64, bool)| if exclusive { v > l } else { v >= l };
        let below = |v: f64, (h, exclusive): (f64, bool)| if exclusive { v < h } else { v <= h };
        let within = |v: f64| lo.is_none_or(|l| above(v, l)) && hi.is_none_or(|h| below(v, h));
        if let Some(step) = get_f64(s, "multipleOf").filter(|m| *m > 0.0) {
            let k_min = lo.map(|(l, exclusive)| {
                let k = (l / step).ceil();
                if exclusive && k * step <= l {
                    k + 1.0
                } else {
                    k
                }
            });
            let k_max = hi.map(|(h, exclusive)| {
                let k = (h / step).floor();
                if exclusive && k * step >= h {
                    k - 1.0
                } else {
                    k
                }
            });
            let mut k = (candidate / step).round();
            if let Some(kh) = k_max {
                k = k.min(kh);
            }
            if let Some(kl) = k_min {
                k = k.max(kl);
            }
            // Strict validators test `value / multipleOf` for an exact integer in floating
            // point (0.3 / 0.1 is not 3): look near `k` for a multiple that passes that test.
            for offset in [0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 4.0, -4.0, 5.0, -5.0] {
                let value = tidy(k.mul_add(step, offset * step), step);
                if within(value) && (value / step).fract() == 0.0 {
                    return float_value(value);
                }
            }
            return float_value(tidy(k * step, step));
        }
        let mut value = candidate;
        if !within(value) {
            // Clamp to an inclusive bound; inside an exclusive one, the middle of the range or
            // one step past the bound (`next_up` where `+ 1.0` is lost to rounding).
            value = match (lo, hi) {
                (Some((l, false)), _) if value < l => l,
                (_, Some((h, false))) if value > h => h,
                (Some((l, _)), Some((h, _))) => f64::midpoint(l, h),
                (Some((l, _)), None) => (l + 1.0).max(l.next_up()),
                (None, Some((h, _))) => (h - 1.0).min(h.next_down()),
                (None, None) => value,
            };
        }
        float_value(value)
    }

    /// A typical value for a numeric field's name (ages around 30, years, prices, ratings),
    /// else a small seeded number; the caller then fits it to the bounds.
    fn preferred_number(&mut self, ctx: &Ctx, integer: bool) -> f64 {
        let typical = self.typical_number(ctx, integer);
        // Retries (after `not` or `oneOf` overlap rejected a value) move to other magnitudes and
        // signs: x10, x-100, x1000, ...; the caller still fits the bounds.
        match ctx.retry {
            0 => typical,
            r => {
                let exponent = i32::try_from(r.min(8)).unwrap_or(8);
                let sign = if r % 2 == 0 { -1.0 } else { 1.0 };
                typical * sign * 10f64.powi(exponent)
            }
        }
    }

    fn typical_number(&mut self, ctx: &Ctx, integer: bool) -> f64 {
        let words = ctx.name.as_deref().map(split_words).unwrap_or_default();
        let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
        let small = as_f64(1 + self.rng.below(10));
        if has(&["age"]) {
            return as_f64(25 + self.rng.below(20));
        }
        if has(&["year"]) {
            return 2024.0;
        }
        if has(&["month"]) {
            return as_f64(1 + self.rng.below(12));
        }
        if has(&["day"]) {
            return as_f64(1 + self.rng.below(28));
        }
        if has(&[
            "price", "amount", "cost", "total", "salary", "balance", "fee", "budget",
        ]) {
            return if integer {
                as_f64(10 + self.rng.below(90))
            } else {
                19.99
            };
        }
        if has(&["rating", "score", "stars"]) {
            return 4.0;
        }
        if has(&["percent", "percentage"]) {
            return 50.0;
        }
        if has(&["latitude", "lat"]) {
            return 37.7749;
        }
        if has(&["longitude", "lon", "lng"]) {
            return -122.4194;
        }
        if has(&["confidence", "probability", "likelihood", "certainty"]) {
            return if integer { 1.0 } else { 0.9 };
        }
        if integer { small } else { small + 0.5 }
    }
}

/// Common field names and a plausible value; longer phrases first, matched on whole words.
const FIXED_WORDS: &[(&str, &str)] = &[
    ("first name", "Alex"),
    ("given name", "Alex"),
    ("last name", "Smith"),
    ("family name", "Smith"),
    ("surname", "Smith"),
    ("full name", "Alex Smith"),
    ("user name", "example_user"),
    ("username", "example_user"),
    ("country code", "US"),
    ("currency code", "USD"),
    ("language code", "en"),
    ("postal code", "12345"),
    ("zip code", "12345"),
    ("zip", "12345"),
    ("currency", "USD"),
    ("language", "English"),
    ("country", "United States"),
    ("city", "Springfield"),
    ("street", "123 Main St"),
    ("address", "123 Main St, Springfield"),
    ("phone", "+1-555-0100"),
    ("phone number", "+1-555-0100"),
    ("company", "Example Corp"),
    ("organization", "Example Corp"),
    ("color", "blue"),
    ("colour", "blue"),
    ("status", "active"),
    ("password", "correct-horse-battery-staple"),
];

/// Fields that restate the request: given the prompt's gist verbatim.
const ECHO_WORDS: &[&str] = &[
    "query", "question", "prompt", "input", "topic", "subject", "request",
];

/// Free-text fields: given "Example <field> for: <gist of the prompt>".
const TEXT_WORDS: &[&str] = &[
    "summary",
    "answer",
    "response",
    "reply",
    "text",
    "content",
    "reasoning",
    "explanation",
    "message",
    "output",
    "result",
    "comment",
    "note",
    "notes",
    "feedback",
    "body",
    "analysis",
    "thought",
    "thoughts",
    "rationale",
    "description",
    "conclusion",
];

fn email(index: usize) -> String {
    if index == 0 {
        "user@example.com".to_owned()
    } else {
        format!("user{}@example.com", index + 1)
    }
}

fn url(index: usize) -> String {
    if index == 0 {
        "https://example.com".to_owned()
    } else {
        format!("https://example.com/{}", index + 1)
    }
}

/// The first words of the hint, whitespace collapsed, at most 80 characters.
fn excerpt(hint: &str) -> String {
    let mut out = String::new();
    for word in hint.split_whitespace() {
        if out.chars().count() + word.chars().count() + 1 > 80 {
            if out.is_empty() {
                out = word.chars().take(80).collect();
            }
            out.push_str("...");
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// `firstName`, `first_name`, `First Name` → `["first", "name"]`.
fn split_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for ch in name.chars() {
        if !ch.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if ch.is_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.extend(ch.to_lowercase());
        previous_lower = ch.is_lowercase() || ch.is_numeric();
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// The item name for an array field: `tags` → `tag`, `categories` → `category`.
fn singular(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with("children") {
        return format!("{}child", &name[..name.len() - "children".len()]);
    }
    if lower.ends_with("people") {
        return format!("{}person", &name[..name.len() - "people".len()]);
    }
    if name.len() > 4 && lower.ends_with("ies") {
        return format!("{}y", &name[..name.len() - 3]);
    }
    if name.len() > 4
        && ["sses", "xes", "ches", "shes"]
            .iter()
            .any(|e| lower.ends_with(e))
    {
        return name[..name.len() - 2].to_owned();
    }
    if name.len() > 3 && lower.ends_with('s') && !lower.ends_with("ss") {
        return name[..name.len() - 1].to_owned();
    }
    name.to_owned()
}

/// Truncates or pads (with filler words) to the length bounds, counted in characters as JSON
/// Schema does.
fn fit_length(word: &str, min: usize, max: Option<usize>) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    if let Some(max) = max
        && chars.len() > max
    {
        chars.truncate(max);
        while chars.len() > min && chars.last().is_some_and(|c| c.is_whitespace()) {
            chars.pop();
        }
    }
    let mut filler = " lorem ipsum dolor sit amet".chars().cycle();
    while chars.len() < min.min(MAX_STRING) {
        chars.extend(filler.next());
    }
    if chars.len() > 1
        && chars.len() == min
        && let Some(last) = chars.last_mut()
        && *last == ' '
    {
        *last = '.';
    }
    chars.into_iter().collect()
}

fn is_null_schema(schema: &Value) -> bool {
    let Value::Object(s) = schema else {
        return false;
    };
    if s.get("const") == Some(&Value::Null) {
        return true;
    }
    if let Some(Value::Array(e)) = s.get("enum") {
        return !e.is_empty() && e.iter().all(Value::is_null);
    }
    let types = type_list(s.get("type"));
    !types.is_empty() && types.iter().all(|t| t == "null")
}

/// A default is used as the example only where it shows something: a non-empty scalar normally
/// (a `null` default would hide the field's real type), anything when depth-limited (it is
/// short).
fn default_is_illustrative(default: &Value, limited: bool) -> bool {
    limited
        || match default {
            Value::String(s) => !s.is_empty(),
            Value::Number(_) | Value::Bool(_) => true,
            _ => false,
        }
}

/// The lower-case type names of a `type` keyword (a name or a list); Gemini writes `STRING`.
fn type_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(t)) => vec![t.to_ascii_lowercase()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_ascii_lowercase)
            .collect(),
        _ => Vec::new(),
    }
}

/// The type a schema without `type` implies by its keywords; "any" when none.
fn infer_type(s: &Schema) -> &'static str {
    let has = |keys: &[&str]| keys.iter().any(|k| s.contains_key(*k));
    if has(&[
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "minProperties",
        "maxProperties",
        "propertyNames",
        "dependentRequired",
    ]) {
        "object"
    } else if has(&[
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "contains",
        "uniqueItems",
        "additionalItems",
    ]) {
        "array"
    } else if has(&["minLength", "maxLength", "pattern", "format"]) {
        "string"
    } else if has(&[
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
    ]) {
        "number"
    } else {
        "any"
    }
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn get_f64(s: &Schema, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64).filter(|x| x.is_finite())
}

fn get_usize(s: &Schema, key: &str) -> Option<usize> {
    let value = s.get(key)?;
    let whole = value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| *f >= 0.0 && f.fract() == 0.0)
            .map(f64_to_u64)
    })?;
    Some(usize::try_from(whole).unwrap_or(usize::MAX))
}

/// The tightest lower bound and whether it is exclusive, from either spelling: 2020-12's numeric
/// `exclusiveMinimum` or draft 4 / OpenAPI 3.0's boolean one beside `minimum`.
fn lower_bound(s: &Schema) -> Option<(f64, bool)> {
    let flag = s.get("exclusiveMinimum") == Some(&Value::Bool(true));
    let inclusive = get_f64(s, "minimum").map(|m| (m, flag));
    let exclusive = get_f64(s, "exclusiveMinimum").map(|e| (e, true));
    match (inclusive, exclusive) {
        (Some(i), Some(e)) => Some(if e.0 >= i.0 { e } else { i }),
        (i, e) => i.or(e),
    }
}

fn upper_bound(s: &Schema) -> Option<(f64, bool)> {
    let flag = s.get("exclusiveMaximum") == Some(&Value::Bool(true));
    let inclusive = get_f64(s, "maximum").map(|m| (m, flag));
    let exclusive = get_f64(s, "exclusiveMaximum").map(|e| (e, true));
    match (inclusive, exclusive) {
        (Some(i), Some(e)) => Some(if e.0 <= i.0 { e } else { i }),
        (i, e) => i.or(e),
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// The smallest integer multiple of `multiple` (so `multipleOf: 0.5` on an integer steps by 1,
/// `multipleOf: 2.5` by 5); `None` when none is found quickly.
fn integer_step(multiple: f64) -> Option<f64> {
    (1..=1000)
        .map(|n| multiple * f64::from(n))
        .find(|v| (v - v.round()).abs() < 1e-9)
        .map(f64::round)
        .filter(|v| *v >= 1.0)
}

/// Rounds `value` to the decimals of `step`, so `0.1 * 3` prints as `0.3`, not
/// `0.30000000000000004`.
fn tidy(value: f64, step: f64) -> f64 {
    let repr = format!("{step}");
    if repr.contains(['e', 'E']) {
        return value;
    }
    let decimals = repr.split_once('.').map_or(0, |(_, d)| d.len()).min(15);
    format!("{value:.decimals$}").parse().unwrap_or(value)
}

fn float_value(value: f64) -> Value {
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// An integral `f64` as a JSON integer when it fits `i64` exactly, else as a float.
fn integer_value(value: f64) -> Value {
    if value.is_finite() && value.abs() < 9.0e15 {
        #[expect(clippy::cast_possible_truncation, reason = "integral and within ±2^53")]
        let int = value as i64;
        return Value::from(int);
    }
    float_value(value)
}

#[expect(clippy::cast_precision_loss, reason = "small example numbers")]
fn as_f64(n: usize) -> f64 {
    n as f64
}

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "checked non-negative; saturates"
)]
fn f64_to_u64(value: f64) -> u64 {
    value as u64
}

/// Resolves `$ref`s and merges `allOf`s at the top of a schema into one schema, so the
/// generator sees all of a node's keywords at once. `refs` collects what was resolved (for
/// recursion detection). `None` means a `false` schema: no instance.
fn flatten(
    root: &Value,
    schema: &Schema,
    refs: &mut Vec<String>,
    budget: &mut usize,
) -> Option<Schema> {
    let mut current = schema.clone();
    loop {
        if *budget == 0 {
            current.remove("$ref");
            current.remove("$dynamicRef");
            current.remove("allOf");
            return Some(current);
        }
        *budget -= 1;
        if let Some(reference) = current
            .remove("$ref")
            .or_else(|| current.remove("$dynamicRef"))
        {
            let Some(reference) = reference.as_str() else {
                continue;
            };
            refs.push(reference.to_owned());
            match resolve(root, reference) {
                Some(Value::Object(target)) => current = merge(&current, target),
                Some(Value::Bool(false)) => return None,
                // `true`, or a reference that leads nowhere: only the siblings constrain.
                _ => {}
            }
            continue;
        }
        if let Some(all) = current.remove("allOf") {
            let Value::Array(parts) = all else { continue };
            for part in parts {
                match part {
                    Value::Bool(false) => return None,
                    Value::Object(part) => {
                        let part = flatten(root, &part, refs, budget)?;
                        current = merge(&current, &part);
                    }
                    _ => {}
                }
            }
            continue;
        }
        return Some(current);
    }
}

/// The conjunction of two schemas as one schema, as far as keyword-wise merging allows (bounds
/// tighten, `required` unites, `enum`s intersect, property schemas conjoin). Annotations and
/// keywords that cannot be combined keep `first`'s value.
fn merge(first: &Schema, second: &Schema) -> Schema {
    let mut out = first.clone();
    for (key, incoming) in second {
        let combined = match out.get(key) {
            Some(existing) => combine(key, existing, incoming),
            None => incoming.clone(),
        };
        out.insert(key.clone(), combined);
    }
    out
}

/// One keyword present in both schemas being merged.
fn combine(key: &str, mine: &Value, theirs: &Value) -> Value {
    match key {
        "type" => merge_types(mine, theirs),
        "properties" | "patternProperties" | "dependentSchemas" => merge_schema_maps(mine, theirs),
        "required" => {
            let mut all: Vec<Value> = mine.as_array().cloned().unwrap_or_default();
            for name in strings(Some(theirs)) {
                if !all.iter().any(|v| v.as_str() == Some(name)) {
                    all.push(Value::from(name));
                }
            }
            Value::Array(all)
        }
        "enum" => match (mine, theirs) {
            (Value::Array(left), Value::Array(right)) => Value::Array(
                left.iter()
                    .filter(|v| right.iter().any(|w| json_eq(v, w)))
                    .cloned()
                    .collect(),
            ),
            _ => mine.clone(),
        },
        "minimum" | "minLength" | "minItems" | "minProperties" | "minContains" => {
            pick_number(mine, theirs, f64::max)
        }
        "maximum" | "maxLength" | "maxItems" | "maxProperties" | "maxContains" => {
            pick_number(mine, theirs, f64::min)
        }
        "exclusiveMinimum" | "exclusiveMaximum" => match (mine, theirs) {
            (Value::Bool(left), Value::Bool(right)) => Value::Bool(*left || *right),
            _ if key == "exclusiveMinimum" => pick_number(mine, theirs, f64::max),
            _ => pick_number(mine, theirs, f64::min),
        },
        "multipleOf" => match (mine.as_f64(), theirs.as_f64()) {
            (Some(left), Some(right)) if left > 0.0 && right > 0.0 => {
                let (small, large) = if left <= right {
                    (left, right)
                } else {
                    (right, left)
                };
                let ratio = large / small;
                if (ratio - ratio.round()).abs() < 1e-9 {
                    float_or_int(large)
                } else {
                    float_or_int(left * right)
                }
            }
            _ => mine.clone(),
        },
        "uniqueItems" => Value::Bool(mine == &Value::Bool(true) || theirs == &Value::Bool(true)),
        "nullable" => Value::Bool(mine == &Value::Bool(true) && theirs == &Value::Bool(true)),
        "items"
        | "additionalProperties"
        | "additionalItems"
        | "contains"
        | "propertyNames"
        | "unevaluatedProperties"
        | "unevaluatedItems" => {
            if mine.is_array() || theirs.is_array() {
                mine.clone()
            } else {
                conjoin(mine, theirs)
            }
        }
        "prefixItems" => combine_prefix_items(mine, theirs),
        "allOf" => match (mine, theirs) {
            (Value::Array(left), Value::Array(right)) => {
                Value::Array(left.iter().chain(right).cloned().collect())
            }
            _ => mine.clone(),
        },
        // Both sides choose among branches: choose a pair (a bounded cross product).
        "anyOf" | "oneOf" => match (mine, theirs) {
            (Value::Array(left), Value::Array(right)) => Value::Array(
                left.iter()
                    .flat_map(|one| right.iter().map(move |other| conjoin(one, other)))
                    .take(16)
                    .collect(),
            ),
            _ => mine.clone(),
        },
        // not A and not B = not (A or B).
        "not" => keyword("anyOf", vec![mine.clone(), theirs.clone()]),
        "dependentRequired" => match (mine, theirs) {
            (Value::Object(left), Value::Object(right)) => {
                let mut all = left.clone();
                for (name, needed) in right {
                    all.entry(name.clone()).or_insert_with(|| needed.clone());
                }
                Value::Object(all)
            }
            _ => mine.clone(),
        },
        _ => mine.clone(),
    }
}

/// Tuple schemas conjoin position by position; the longer tuple's tail is kept.
fn combine_prefix_items(mine: &Value, theirs: &Value) -> Value {
    let (Value::Array(left), Value::Array(right)) = (mine, theirs) else {
        return mine.clone();
    };
    Value::Array(
        (0..left.len().max(right.len()))
            .map(|i| match (left.get(i), right.get(i)) {
                (Some(one), Some(other)) => conjoin(one, other),
                (Some(one), None) | (None, Some(one)) => one.clone(),
                (None, None) => Value::Bool(true),
            })
            .collect(),
    )
}

fn float_or_int(value: f64) -> Value {
    if value.fract() == 0.0 {
        integer_value(value)
    } else {
        float_value(value)
    }
}

fn pick_number(a: &Value, b: &Value, pick: fn(f64, f64) -> f64) -> Value {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => {
            let chosen = pick(x, y);
            if chosen.total_cmp(&x).is_eq() {
                a.clone()
            } else {
                b.clone()
            }
        }
        (None, Some(_)) => b.clone(),
        _ => a.clone(),
    }
}

/// `{key: [schemas]}`, built directly (`json!` would re-serialize the schemas).
fn keyword(key: &str, schemas: Vec<Value>) -> Value {
    let mut map = Map::new();
    map.insert(key.to_owned(), Value::Array(schemas));
    Value::Object(map)
}

/// Both schemas at once: `true` is the identity, `false` absorbs, else an `allOf`.
fn conjoin(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Bool(false), _) | (_, Value::Bool(false)) => Value::Bool(false),
        (Value::Bool(true), other) | (other, Value::Bool(true)) => other.clone(),
        _ if a == b => a.clone(),
        // Already conjoined (recursive merges meet the same schema again): keep the size.
        (Value::Object(m), _)
            if m.len() == 1
                && m.get("allOf")
                    .and_then(Value::as_array)
                    .is_some_and(|l| l.contains(b)) =>
        {
            a.clone()
        }
        _ => keyword("allOf", vec![a.clone(), b.clone()]),
    }
}

fn merge_types(a: &Value, b: &Value) -> Value {
    let (x, y) = (type_list(Some(a)), type_list(Some(b)));
    if x.is_empty() || y.is_empty() {
        return a.clone();
    }
    let mut both: Vec<String> = Vec::new();
    for t in &x {
        let kept = if y.contains(t) {
            Some(t.clone())
        } else if t == "integer" && y.iter().any(|u| u == "number")
            || t == "number" && y.iter().any(|u| u == "integer")
        {
            Some("integer".to_owned())
        } else {
            None
        };
        if let Some(kept) = kept
            && !both.contains(&kept)
        {
            both.push(kept);
        }
    }
    match both.as_slice() {
        [] => a.clone(),
        [one] => Value::from(one.clone()),
        _ => Value::Array(both.into_iter().map(Value::from).collect()),
    }
}

fn merge_schema_maps(a: &Value, b: &Value) -> Value {
    let (Value::Object(x), Value::Object(y)) = (a, b) else {
        return a.clone();
    };
    let mut out = x.clone();
    for (k, v) in y {
        let combined = match out.get(k) {
            Some(existing) => conjoin(existing, v),
            None => v.clone(),
        };
        out.insert(k.clone(), combined);
    }
    Value::Object(out)
}

/// A property schema conjoined with every `patternProperties` schema whose pattern matches the
/// name, as validation applies both.
fn with_pattern_properties(key: &str, sub: &Value, pattern_props: Option<&Schema>) -> Value {
    let Some(pp) = pattern_props else {
        return sub.clone();
    };
    pp.iter()
        .filter(|(p, _)| Regex::parse(p).and_then(|r| r.is_match(key)) == Some(true))
        .fold(sub.clone(), |acc, (_, s)| conjoin(&acc, s))
}

/// A rough size of a schema's smallest instance, for picking the shortest branch when
/// depth-limited: `null` is 0, scalars 1, objects add their required properties.
fn cost(root: &Value, schema: &Value, budget: usize) -> usize {
    let s = match schema {
        Value::Bool(true) => return 1,
        Value::Object(s) => s,
        _ => return INFINITE_COST,
    };
    if budget == 0 {
        return 50;
    }
    if let Some(reference) = s.get("$ref").and_then(Value::as_str) {
        return resolve(root, reference).map_or(1, |t| cost(root, t, budget - 1));
    }
    if s.contains_key("const") || s.contains_key("enum") {
        return usize::from(!is_null_schema(schema));
    }
    if type_list(s.get("type")).iter().any(|t| t == "null")
        || s.get("nullable") == Some(&Value::Bool(true))
    {
        return 0;
    }
    let mut total: usize = 1;
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = s.get(key) {
            let cheapest = branches
                .iter()
                .map(|b| cost(root, b, budget - 1))
                .min()
                .unwrap_or(INFINITE_COST);
            total = total.saturating_add(cheapest);
        }
    }
    if let Some(Value::Array(parts)) = s.get("allOf") {
        for part in parts {
            total = total.saturating_add(cost(root, part, budget - 1));
        }
    }
    if let Some(Value::Object(props)) = s.get("properties") {
        for name in strings(s.get("required")) {
            let sub = props.get(name).map_or(1, |p| cost(root, p, budget - 1));
            total = total.saturating_add(sub);
        }
    }
    if let Some(min) = get_usize(s, "minItems").filter(|m| *m > 0) {
        let item = s.get("items").map_or(1, |i| cost(root, i, budget - 1));
        total = total.saturating_add(item.saturating_mul(min));
    }
    total.min(INFINITE_COST)
}

/// Resolves a `$ref` against the root: `#`, JSON pointers (`#/$defs/X`, `#/definitions/X`,
/// percent- and `~`-escaped), `#anchor`s, `$id`s, and bare definition names as a last resort.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    match reference.split_once('#') {
        Some((base, fragment)) => {
            let document = if base.is_empty() {
                root
            } else {
                find_id(root, base, 0).unwrap_or(root)
            };
            if fragment.is_empty() {
                Some(document)
            } else if fragment.starts_with('/') {
                pointer(document, fragment)
            } else {
                find_anchor(document, fragment, 0)
            }
        }
        None => find_id(root, reference, 0).or_else(|| {
            ["$defs", "definitions"]
                .iter()
                .find_map(|defs| root.get(defs).and_then(|d| d.get(reference)))
        }),
    }
}

fn pointer<'a>(document: &'a Value, fragment: &str) -> Option<&'a Value> {
    let mut current = document;
    for raw in fragment.split('/').skip(1) {
        let token = percent_decode(raw).replace("~1", "/").replace("~0", "~");
        current = match current {
            Value::Object(map) => map.get(&token)?,
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let decoded = (byte == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(decoded) = decoded {
            out.push(decoded);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn find_id<'a>(value: &'a Value, id: &str, depth: usize) -> Option<&'a Value> {
    find_subschema(value, depth, &|m| {
        m.get("$id")
            .and_then(Value::as_str)
            .is_some_and(|x| x == id || x.ends_with(&format!("/{id}")))
    })
}

fn find_anchor<'a>(value: &'a Value, anchor: &str, depth: usize) -> Option<&'a Value> {
    find_subschema(value, depth, &|m| {
        ["$anchor", "$dynamicAnchor"]
            .iter()
            .any(|k| m.get(*k).and_then(Value::as_str) == Some(anchor))
    })
}

fn find_subschema<'a>(
    value: &'a Value,
    depth: usize,
    wanted: &dyn Fn(&Schema) -> bool,
) -> Option<&'a Value> {
    if depth > 32 {
        return None;
    }
    match value {
        Value::Object(map) => {
            if wanted(map) {
                return Some(value);
            }
            map.values()
                .find_map(|v| find_subschema(v, depth + 1, wanted))
        }
        Value::Array(items) => items
            .iter()
            .find_map(|v| find_subschema(v, depth + 1, wanted)),
        _ => None,
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`), as JSON Schema does.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(left), Value::Number(right)) => match (left.as_i64(), right.as_i64()) {
            (Some(l), Some(r)) => l == r,
            _ => left.as_f64() == right.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

// --- The internal validator -------------------------------------------------------------------
//
// Checks what the generator cannot guarantee by construction. It covers the keywords the
// generator reads; `format` is an annotation (as in draft 2020-12 by default) and a `pattern`
// outside the regex subset is assumed to match.

/// The validator's state: the root for `$ref`s, and a step allowance. Unions of recursive
/// schemas make validation exponential in the worst case (each `anyOf` branch re-validates the
/// subtree); once the allowance is spent the validator answers "valid", the optimistic default.
struct Check<'a> {
    root: &'a Value,
    steps_left: std::cell::Cell<usize>,
}

impl Check<'_> {
    fn exhausted(&self) -> bool {
        let left = self.steps_left.get();
        self.steps_left.set(left.saturating_sub(1));
        left == 0
    }
}

fn check(cx: &Check<'_>, schema: &Value, value: &Value, depth: usize) -> bool {
    match schema {
        Value::Bool(b) => *b,
        Value::Object(s) => check_map(cx, s, value, depth),
        _ => true,
    }
}

fn check_map(cx: &Check<'_>, s: &Schema, value: &Value, depth: usize) -> bool {
    if depth > CHECK_DEPTH || cx.exhausted() {
        return true;
    }
    if value.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
        return true;
    }
    let d = depth + 1;
    for key in ["$ref", "$dynamicRef"] {
        if let Some(target) = s
            .get(key)
            .and_then(Value::as_str)
            .and_then(|r| resolve(cx.root, r))
            && !check(cx, target, value, d)
        {
            return false;
        }
    }
    let types = type_list(s.get("type"));
    if !types.is_empty() && !types.iter().any(|t| type_matches(t, value)) {
        return false;
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.iter().any(|o| json_eq(o, value))
    {
        return false;
    }
    if let Some(constant) = s.get("const")
        && !json_eq(constant, value)
    {
        return false;
    }
    let fits_type_keywords = match value {
        Value::Number(n) => n.as_f64().is_none_or(|x| check_number(s, x)),
        Value::String(text) => check_string(s, text),
        Value::Array(items) => check_array(cx, s, items, d),
        Value::Object(map) => check_object(cx, s, map, d),
        _ => true,
    };
    fits_type_keywords && check_combinators(cx, s, value, d)
}

fn check_combinators(cx: &Check<'_>, s: &Schema, value: &Value, d: usize) -> bool {
    if let Some(Value::Array(parts)) = s.get("allOf")
        && !parts.iter().all(|p| check(cx, p, value, d))
    {
        return false;
    }
    if let Some(Value::Array(parts)) = s.get("anyOf")
        && !parts.iter().any(|p| check(cx, p, value, d))
    {
        return false;
    }
    if let Some(Value::Array(parts)) = s.get("oneOf")
        && parts.iter().filter(|p| check(cx, p, value, d)).count() != 1
    {
        return false;
    }
    if let Some(negated) = s.get("not")
        && check(cx, negated, value, d)
    {
        return false;
    }
    if let Some(condition) = s.get("if") {
        let branch = if check(cx, condition, value, d) {
            s.get("then")
        } else {
            s.get("else")
        };
        if let Some(branch) = branch
            && !check(cx, branch, value, d)
        {
            return false;
        }
    }
    true
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => match value {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        // An unknown type name is a malformed schema; do not reject values over it.
        _ => true,
    }
}

fn check_number(s: &Schema, x: f64) -> bool {
    if let Some((l, exclusive)) = lower_bound(s)
        && (x < l || exclusive && x <= l)
    {
        return false;
    }
    if let Some((h, exclusive)) = upper_bound(s)
        && (x > h || exclusive && x >= h)
    {
        return false;
    }
    if let Some(step) = get_f64(s, "multipleOf").filter(|m| *m > 0.0) {
        let quotient = x / step;
        if (quotient - quotient.round()).abs() > 1e-9 * quotient.abs().max(1.0) {
            return false;
        }
    }
    true
}

fn check_string(s: &Schema, text: &str) -> bool {
    let len = text.chars().count();
    if get_usize(s, "minLength").is_some_and(|m| len < m)
        || get_usize(s, "maxLength").is_some_and(|m| len > m)
    {
        return false;
    }
    let pattern = s.get("pattern").and_then(Value::as_str);
    pattern
        .and_then(Regex::parse)
        .and_then(|r| r.is_match(text))
        != Some(false)
}

fn check_array(cx: &Check<'_>, s: &Schema, items: &[Value], d: usize) -> bool {
    if get_usize(s, "minItems").is_some_and(|m| items.len() < m)
        || get_usize(s, "maxItems").is_some_and(|m| items.len() > m)
    {
        return false;
    }
    if s.get("uniqueItems") == Some(&Value::Bool(true)) {
        for (i, a) in items.iter().enumerate() {
            if items.iter().skip(i + 1).any(|b| json_eq(a, b)) {
                return false;
            }
        }
    }
    let (prefix, rest): (&[Value], Option<&Value>) = match (s.get("prefixItems"), s.get("items")) {
        (Some(Value::Array(p)), items_schema) => (p, items_schema),
        (_, Some(Value::Array(p))) => (p, s.get("additionalItems")),
        (_, items_schema) => (&[], items_schema),
    };
    for (i, item) in items.iter().enumerate() {
        let schema = prefix.get(i).or(rest);
        if let Some(schema) = schema
            && !check(cx, schema, item, d)
        {
            return false;
        }
    }
    if let Some(contains) = s.get("contains") {
        let matching = items.iter().filter(|i| check(cx, contains, i, d)).count();
        let min = get_usize(s, "minContains").unwrap_or(1);
        if matching < min || get_usize(s, "maxContains").is_some_and(|m| matching > m) {
            return false;
        }
    }
    true
}

fn check_object(cx: &Check<'_>, s: &Schema, map: &Map<String, Value>, d: usize) -> bool {
    if strings(s.get("required"))
        .iter()
        .any(|r| !map.contains_key(*r))
    {
        return false;
    }
    if get_usize(s, "minProperties").is_some_and(|m| map.len() < m)
        || get_usize(s, "maxProperties").is_some_and(|m| map.len() > m)
    {
        return false;
    }
    let props = s.get("properties").and_then(Value::as_object);
    let patterns: Vec<(Option<Regex>, &Value)> = s
        .get("patternProperties")
        .and_then(Value::as_object)
        .map(|pp| pp.iter().map(|(p, v)| (Regex::parse(p), v)).collect())
        .unwrap_or_default();
    for (key, value) in map {
        let mut evaluated = false;
        if let Some(sub) = props.and_then(|p| p.get(key)) {
            evaluated = true;
            if !check(cx, sub, value, d) {
                return false;
            }
        }
        for (regex, sub) in &patterns {
            if regex.as_ref().and_then(|r| r.is_match(key)) == Some(true) {
                evaluated = true;
                if !check(cx, sub, value, d) {
                    return false;
                }
            }
        }
        if !evaluated
            && let Some(extra) = s.get("additionalProperties")
            && !check(cx, extra, value, d)
        {
            return false;
        }
        if let Some(names) = s.get("propertyNames")
            && !check(cx, names, &Value::String(key.clone()), d)
        {
            return false;
        }
    }
    if let Some(Value::Object(deps)) = s.get("dependentRequired") {
        for (key, needed) in deps {
            if map.contains_key(key) && strings(Some(needed)).iter().any(|n| !map.contains_key(*n))
            {
                return false;
            }
        }
    }
    if let Some(Value::Object(deps)) = s.get("dependentSchemas") {
        let object = Value::Object(map.clone());
        for (key, sub) in deps {
            if map.contains_key(key) && !check(cx, sub, &object, d) {
                return false;
            }
        }
    }
    true
}

// --- A tiny regular-expression engine -------------------------------------------------------
//
// Enough of ECMA-262 (the dialect JSON Schema names) for the patterns schemas carry in practice:
// codes, ids, slugs, phone numbers. It both generates strings (for `pattern`) and matches them
// (for the validator and `patternProperties`). Lookahead and `\b` are matched but not generated
// (candidates that miss them are dropped). Lookbehind, backreferences and Unicode properties are
// not supported: `Regex::parse` returns `None` for them.

#[derive(Clone, Copy)]
enum Strategy {
    /// Seeded repeat counts and alternatives: the normal example.
    Random,
    /// Every quantifier at its minimum, first alternatives.
    Short,
    /// Every quantifier as close to this many repeats as its bounds allow.
    Long(usize),
}

enum Node {
    Literal(char),
    /// Inclusive character ranges; `true` when negated.
    Class(Vec<(char, char)>, bool),
    Any,
    Group(Vec<Vec<Piece>>),
    /// `(?=...)`, or `(?!...)` when `true`: checked when matching, skipped when generating
    /// (the generator's candidates are then matched, and the failing ones dropped).
    Lookahead(Vec<Vec<Piece>>, bool),
    /// `\b`, or `\B` when `false`; like lookahead, only checked.
    WordBoundary(bool),
    Start,
    End,
}

struct Piece {
    node: Node,
    min: usize,
    max: Option<usize>,
}

struct Regex {
    alternatives: Vec<Vec<Piece>>,
}

const DIGITS: &[(char, char)] = &[('0', '9')];
const WORD: &[(char, char)] = &[('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')];
const SPACE: &[(char, char)] = &[(' ', ' '), ('\t', '\r')];
/// Characters tried, in order, for negated classes.
const POOL: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_. ";
/// Bound on `{n,m}` counts, so that generation stays small.
const MAX_REPEAT: usize = 1_000;

impl Regex {
    fn parse(pattern: &str) -> Option<Self> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut pos = 0;
        let alternatives = parse_alternatives(&chars, &mut pos, 0)?;
        (pos == chars.len()).then_some(Self { alternatives })
    }

    /// Whether the pattern ends with `$` in every alternative (so padding cannot help).
    fn anchored_end(&self) -> bool {
        self.alternatives
            .iter()
            .all(|seq| seq.last().is_some_and(|p| matches!(p.node, Node::End)))
    }

    fn generate(&self, strategy: Strategy, rng: &mut Rng) -> String {
        let mut out = String::new();
        generate_alternatives(&self.alternatives, strategy, rng, &mut out);
        out
    }

    /// Whether the pattern matches anywhere in `text` (JSON Schema patterns are not implicitly
    /// anchored). `None` when the text is too long or matching takes too many steps.
    fn is_match(&self, text: &str) -> Option<bool> {
        let chars: Vec<char> = text.chars().collect();
        if chars.len() > MAX_MATCH_TEXT {
            return None;
        }
        let mut matcher = Matcher {
            text: &chars,
            steps: 0,
            exhausted: false,
        };
        for start in 0..=chars.len() {
            if matcher.alternatives(&self.alternatives, start, &mut |_, _| true) {
                return Some(true);
            }
            if matcher.exhausted {
                return None;
            }
        }
        Some(false)
    }
}

fn parse_alternatives(chars: &[char], pos: &mut usize, depth: usize) -> Option<Vec<Vec<Piece>>> {
    if depth > 16 {
        return None;
    }
    let mut alternatives = Vec::new();
    let mut sequence = Vec::new();
    while let Some(&c) = chars.get(*pos) {
        match c {
            '|' => {
                alternatives.push(std::mem::take(&mut sequence));
                *pos += 1;
            }
            ')' => break,
            _ => {
                let node = parse_atom(chars, pos, depth)?;
                let (min, max) = parse_quantifier(chars, pos)?;
                sequence.push(Piece { node, min, max });
            }
        }
    }
    alternatives.push(sequence);
    Some(alternatives)
}

fn parse_atom(chars: &[char], pos: &mut usize, depth: usize) -> Option<Node> {
    let c = *chars.get(*pos)?;
    *pos += 1;
    Some(match c {
        '(' => {
            let mut look = None;
            if chars.get(*pos) == Some(&'?') {
                match (chars.get(*pos + 1), chars.get(*pos + 2)) {
                    (Some(':'), _) => *pos += 2,
                    (Some('='), _) => {
                        look = Some(false);
                        *pos += 2;
                    }
                    (Some('!'), _) => {
                        look = Some(true);
                        *pos += 2;
                    }
                    // A named group `(?<name>...)`; `(?<=` and `(?<!` are lookbehind.
                    (Some('<'), Some(next)) if *next != '=' && *next != '!' => {
                        let close = chars.get(*pos..)?.iter().position(|ch| *ch == '>')?;
                        *pos += close + 1;
                    }
                    _ => return None,
                }
            }
            let inner = parse_alternatives(chars, pos, depth + 1)?;
            if chars.get(*pos) != Some(&')') {
                return None;
            }
            *pos += 1;
            match look {
                Some(negated) => Node::Lookahead(inner, negated),
                None => Node::Group(inner),
            }
        }
        '[' => parse_class(chars, pos)?,
        '.' => Node::Any,
        '^' => Node::Start,
        '$' => Node::End,
        '\\' => {
            let e = *chars.get(*pos)?;
            *pos += 1;
            match e {
                'd' => Node::Class(DIGITS.to_vec(), false),
                'D' => Node::Class(DIGITS.to_vec(), true),
                'w' => Node::Class(WORD.to_vec(), false),
                'W' => Node::Class(WORD.to_vec(), true),
                's' => Node::Class(SPACE.to_vec(), false),
                'S' => Node::Class(SPACE.to_vec(), true),
                'b' => Node::WordBoundary(true),
                'B' => Node::WordBoundary(false),
                _ => Node::Literal(escaped_char(e, chars, pos)?),
            }
        }
        '*' | '+' | '?' => return None,
        other => Node::Literal(other),
    })
}

/// The character an escape stands for (after the backslash); `None` for unsupported escapes
/// (`\b`, backreferences, `\p{..}`).
fn escaped_char(e: char, chars: &[char], pos: &mut usize) -> Option<char> {
    let hex = |pos: &mut usize, len: usize| -> Option<char> {
        let digits: String = chars.get(*pos..*pos + len)?.iter().collect();
        let code = u32::from_str_radix(&digits, 16).ok()?;
        *pos += len;
        char::from_u32(code)
    };
    match e {
        'n' => Some('\n'),
        't' => Some('\t'),
        'r' => Some('\r'),
        'f' => Some('\u{0c}'),
        'v' => Some('\u{0b}'),
        '0' => Some('\0'),
        'x' => hex(pos, 2),
        'u' => hex(pos, 4),
        c if c.is_ascii_alphanumeric() => None,
        c => Some(c),
    }
}

fn parse_class(chars: &[char], pos: &mut usize) -> Option<Node> {
    let negated = chars.get(*pos) == Some(&'^');
    if negated {
        *pos += 1;
    }
    let mut ranges = Vec::new();
    loop {
        let c = *chars.get(*pos)?;
        *pos += 1;
        let low = match c {
            ']' => return Some(Node::Class(ranges, negated)),
            '\\' => {
                let e = *chars.get(*pos)?;
                *pos += 1;
                match e {
                    'd' => {
                        ranges.extend_from_slice(DIGITS);
                        continue;
                    }
                    'w' => {
                        ranges.extend_from_slice(WORD);
                        continue;
                    }
                    's' => {
                        ranges.extend_from_slice(SPACE);
                        continue;
                    }
                    'b' => '\u{08}',
                    '-' => '-',
                    _ => escaped_char(e, chars, pos)?,
                }
            }
            other => other,
        };
        if chars.get(*pos) == Some(&'-') && chars.get(*pos + 1).is_some_and(|n| *n != ']') {
            *pos += 1;
            let h = *chars.get(*pos)?;
            *pos += 1;
            let high = if h == '\\' {
                let e = *chars.get(*pos)?;
                *pos += 1;
                escaped_char(e, chars, pos)?
            } else {
                h
            };
            if high < low {
                return None;
            }
            ranges.push((low, high));
        } else {
            ranges.push((low, low));
        }
    }
}

/// A quantifier after an atom; `(1, Some(1))` when there is none. A `{` that does not start
/// `{n}`, `{n,}` or `{n,m}` is left to be read as a literal.
fn parse_quantifier(chars: &[char], pos: &mut usize) -> Option<(usize, Option<usize>)> {
    let (min, max) = match chars.get(*pos) {
        Some('*') => (0, None),
        Some('+') => (1, None),
        Some('?') => (0, Some(1)),
        Some('{') => {
            let close = chars
                .get(*pos..)
                .and_then(|rest| rest.iter().position(|c| *c == '}'));
            let Some(close) = close else {
                return Some((1, Some(1)));
            };
            let body: String = chars.get(*pos + 1..*pos + close)?.iter().collect();
            let parsed = match body.split_once(',') {
                None => body.parse::<usize>().ok().map(|n| (n, Some(n))),
                Some((lo, "")) => lo.parse::<usize>().ok().map(|n| (n, None)),
                Some((lo, hi)) => lo
                    .parse::<usize>()
                    .ok()
                    .zip(hi.parse::<usize>().ok())
                    .map(|(a, b)| (a, Some(b))),
            };
            let Some((min, max)) = parsed else {
                return Some((1, Some(1)));
            };
            if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT || m < min) {
                return None;
            }
            *pos += close;
            (min, max)
        }
        _ => return Some((1, Some(1))),
    };
    *pos += 1;
    match chars.get(*pos) {
        // Lazy: matches the same strings.
        Some('?') => *pos += 1,
        // Possessive quantifiers are not ECMA-262.
        Some('+' | '*' | '{') => return None,
        _ => {}
    }
    Some((min, max))
}

fn generate_alternatives(
    alternatives: &[Vec<Piece>],
    strategy: Strategy,
    rng: &mut Rng,
    out: &mut String,
) {
    let pick = match strategy {
        Strategy::Random => rng.below(alternatives.len()),
        Strategy::Short | Strategy::Long(_) => 0,
    };
    let Some(sequence) = alternatives.get(pick) else {
        return;
    };
    for piece in sequence {
        let count = match (strategy, piece.max) {
            (Strategy::Random, Some(max)) => piece.min + rng.below((max - piece.min).min(3) + 1),
            (Strategy::Random, None) => piece.min.max(1) + rng.below(3),
            (Strategy::Short, _) => piece.min,
            (Strategy::Long(n), Some(max)) => n.clamp(piece.min, max),
            (Strategy::Long(n), None) => n.max(piece.min),
        };
        for _ in 0..count {
            if out.len() > MAX_STRING {
                return;
            }
            match &piece.node {
                Node::Literal(c) => out.push(*c),
                Node::Class(ranges, false) => {
                    if let Some(&(low, high)) = ranges.get(rng.below(ranges.len())) {
                        let span = usize::try_from(u32::from(high) - u32::from(low)).unwrap_or(0);
                        let offset = u32::try_from(rng.below(span.min(1 << 20) + 1)).unwrap_or(0);
                        out.push(char::from_u32(u32::from(low) + offset).unwrap_or(low));
                    }
                }
                Node::Class(ranges, true) => {
                    let start = rng.below(26);
                    let outside = POOL
                        .chars()
                        .cycle()
                        .skip(start)
                        .take(POOL.len())
                        .find(|c| !ranges.iter().any(|(l, h)| (l..=h).contains(&c)));
                    out.extend(outside);
                }
                // Letters and digits: enough for `(?=.*\d)`-style requirements to be met by
                // one of the candidates.
                Node::Any => out.extend(POOL.chars().nth(rng.below(62))),
                Node::Group(inner) => generate_alternatives(inner, strategy, rng, out),
                Node::Lookahead(..) | Node::WordBoundary(_) | Node::Start | Node::End => {}
            }
        }
    }
}

/// A backtracking matcher in continuation-passing style: each step calls the continuation with
/// the position it reached, so quantifiers can give back characters.
struct Matcher<'t> {
    text: &'t [char],
    steps: usize,
    exhausted: bool,
}

type Continuation<'k, 't> = &'k mut dyn FnMut(&mut Matcher<'t>, usize) -> bool;

impl<'t> Matcher<'t> {
    fn tick(&mut self) -> bool {
        self.steps += 1;
        if self.steps > 200_000 {
            self.exhausted = true;
        }
        self.exhausted
    }

    fn alternatives(
        &mut self,
        alternatives: &[Vec<Piece>],
        pos: usize,
        k: Continuation<'_, 't>,
    ) -> bool {
        alternatives
            .iter()
            .any(|sequence| self.sequence(sequence, pos, k))
    }

    fn sequence(&mut self, sequence: &[Piece], pos: usize, k: Continuation<'_, 't>) -> bool {
        let Some((first, rest)) = sequence.split_first() else {
            return k(self, pos);
        };
        self.repeat(first, 0, pos, &mut |m, next| m.sequence(rest, next, k))
    }

    fn repeat(&mut self, piece: &Piece, count: usize, pos: usize, k: Continuation<'_, 't>) -> bool {
        if self.tick() {
            return false;
        }
        if piece.max.is_none_or(|max| count < max) {
            let more = self.node(&piece.node, pos, &mut |m, next| {
                // An empty iteration past the minimum cannot make progress: stop there.
                if next == pos && count >= piece.min {
                    return false;
                }
                m.repeat(piece, count + 1, next, k)
            });
            if more {
                return true;
            }
        }
        count >= piece.min && k(self, pos)
    }

    fn node(&mut self, node: &Node, pos: usize, k: Continuation<'_, 't>) -> bool {
        let current = self.text.get(pos).copied();
        match node {
            Node::Literal(c) => current == Some(*c) && k(self, pos + 1),
            Node::Class(ranges, negated) => {
                current
                    .is_some_and(|c| ranges.iter().any(|(l, h)| (*l..=*h).contains(&c)) != *negated)
                    && k(self, pos + 1)
            }
            Node::Any => current.is_some_and(|c| c != '\n' && c != '\r') && k(self, pos + 1),
            Node::Start => pos == 0 && k(self, pos),
            Node::End => pos == self.text.len() && k(self, pos),
            Node::Group(inner) => self.alternatives(inner, pos, k),
            Node::Lookahead(inner, negated) => {
                let found = self.alternatives(inner, pos, &mut |_, _| true);
                found != *negated && k(self, pos)
            }
            Node::WordBoundary(wanted) => {
                let is_word = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
                let before = pos
                    .checked_sub(1)
                    .and_then(|p| self.text.get(p))
                    .is_some_and(is_word);
                let after = current.as_ref().is_some_and(is_word);
                (before != after) == *wanted && k(self, pos)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HINT: &str = "Summarize the Q3 report for ACME Corp.";

    /// Every test runs over many seeds: the generator's choices depend on the seed.
    fn each_seed(schema: &Value, mut assert_valid: impl FnMut(&Value, u64)) {
        for seed in 0..40 {
            let hint = if seed % 2 == 0 { HINT } else { "" };
            assert_valid(&instance(schema, seed, hint), seed);
        }
    }

    fn object(value: &Value) -> &Map<String, Value> {
        value
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {value}"))
    }

    fn int(value: &Value) -> i64 {
        value
            .as_i64()
            .unwrap_or_else(|| panic!("not an integer: {value}"))
    }

    fn text(value: &Value) -> &str {
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a string: {value}"))
    }

    fn digits(s: &str, n: usize) -> bool {
        s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
    }

    fn is_date(s: &str) -> bool {
        let parts: Vec<&str> = s.split('-').collect();
        matches!(parts.as_slice(), [y, m, d] if digits(y, 4) && digits(m, 2) && digits(d, 2)
            && (1..=12).contains(&m.parse::<u32>().unwrap()) && (1..=31).contains(&d.parse::<u32>().unwrap()))
    }

    fn is_time(s: &str) -> bool {
        let s = s.strip_suffix('Z').unwrap_or(s);
        let parts: Vec<&str> = s.split(':').collect();
        matches!(parts.as_slice(), [h, m, sec] if digits(h, 2) && digits(m, 2) && digits(sec, 2)
            && h.parse::<u32>().unwrap() < 24 && m.parse::<u32>().unwrap() < 60)
    }

    fn is_uuid(s: &str) -> bool {
        let groups: Vec<&str> = s.split('-').collect();
        groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
            && groups
                .iter()
                .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
            && groups[2].starts_with('4')
    }

    /// pydantic v2: `class Address(BaseModel)`, `class Person(BaseModel)` with constrained and
    /// optional fields, a nested model, a list, a Literal and a const.
    fn person_schema() -> Value {
        json!({
            "$defs": {"Address": {
                "properties": {
                    "street": {"title": "Street", "type": "string"},
                    "city": {"title": "City", "type": "string"},
                    "zip_code": {"anyOf": [{"type": "string", "pattern": "^\\d{5}$"}, {"type": "null"}],
                                 "default": null, "title": "Zip Code"}},
                "required": ["street", "city"], "title": "Address", "type": "object"}},
            "properties": {
                "name": {"title": "Name", "type": "string", "minLength": 1, "maxLength": 50},
                "age": {"title": "Age", "type": "integer", "minimum": 0, "exclusiveMaximum": 150},
                "email": {"format": "email", "title": "Email", "type": "string"},
                "address": {"$ref": "#/$defs/Address"},
                "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Nickname"},
                "tags": {"items": {"type": "string"}, "title": "Tags", "type": "array", "maxItems": 3, "uniqueItems": true},
                "role": {"enum": ["admin", "user", "guest"], "title": "Role", "type": "string"},
                "kind": {"const": "person", "title": "Kind", "type": "string"}},
            "required": ["name", "age", "email", "address", "role", "kind"],
            "title": "Person", "type": "object"
        })
    }

    #[test]
    fn pydantic_nested_models_via_defs() {
        each_seed(&person_schema(), |v, seed| {
            let person = object(v);
            for key in ["name", "age", "email", "address", "role", "kind"] {
                assert!(
                    person.contains_key(key),
                    "seed {seed}: missing {key} in {v}"
                );
            }
            let name = text(&person["name"]);
            assert!((1..=50).contains(&name.chars().count()));
            assert!((0..150).contains(&int(&person["age"])));
            assert_eq!(text(&person["email"]), "user@example.com");
            assert!(["admin", "user", "guest"].contains(&text(&person["role"])));
            assert_eq!(person["kind"], "person");
            let address = object(&person["address"]);
            assert!(address["street"].is_string() && address["city"].is_string());
            // Optional[str] with a pattern: the non-null branch, matching `^\d{5}$`.
            assert!(digits(text(&address["zip_code"]), 5), "{v}");
            // Optional fields are included, with the non-null branch.
            assert!(person["nickname"].is_string());
            let tags = person["tags"].as_array().unwrap();
            assert!((1..=3).contains(&tags.len()));
            assert!(tags.iter().all(Value::is_string));
            assert!(!(tags.len() == 2 && tags[0] == tags[1]), "uniqueItems: {v}");
        });
    }

    #[test]
    fn plausible_words_from_property_names() {
        let v = instance(&person_schema(), 3, HINT);
        assert_eq!(v["name"], "Example name");
        assert_eq!(v["email"], "user@example.com");
        assert_eq!(v["address"]["city"], "Springfield");
        let schema = json!({"type": "object", "properties": {
            "summary": {"type": "string"}, "question": {"type": "string"}, "firstName": {"type": "string"},
            "website": {"type": "string"}, "created_at": {"type": "string"}, "birth_date": {"type": "string"},
            "user_id": {"type": "string"}, "line_items": {"type": "array", "items": {"type": "string"}, "minItems": 2}}});
        let v = instance(&schema, 1, HINT);
        assert_eq!(v["summary"], format!("Example summary for: {HINT}"));
        assert_eq!(v["question"], HINT);
        assert_eq!(v["firstName"], "Alex");
        assert_eq!(v["website"], "https://example.com");
        assert!(text(&v["created_at"]).starts_with("2024-01-"));
        assert!(is_date(text(&v["birth_date"])));
        assert!(text(&v["user_id"]).starts_with("user-"));
        assert_eq!(v["line_items"][0], "Example line item");
        assert_eq!(v["line_items"][1], "Example line item 2");
        // Without a hint, free-text fields still get a word, not an empty string.
        assert_eq!(instance(&schema, 1, "")["summary"], "Example summary");
    }

    #[test]
    fn list_of_models_respects_item_bounds() {
        let schema = json!({
            "definitions": {"Item": {"type": "object", "properties": {
                "sku": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
                "qty": {"type": "integer", "minimum": 1, "maximum": 99},
                "price": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.01}},
                "required": ["sku", "qty", "price"]}},
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"$ref": "#/definitions/Item"}, "minItems": 1, "maxItems": 2},
                           "many": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 5},
                           "none": {"type": "array", "items": {"type": "integer"}, "maxItems": 0}},
            "required": ["items", "many", "none"]});
        each_seed(&schema, |v, _| {
            let items = v["items"].as_array().unwrap();
            assert!((1..=2).contains(&items.len()));
            for item in items {
                let sku = text(&item["sku"]);
                let (letters, number) = sku.split_once('-').unwrap();
                assert!(
                    letters.len() == 3 && letters.bytes().all(|b| b.is_ascii_uppercase()),
                    "{sku}"
                );
                assert!(digits(number, 4));
                assert!((1..=99).contains(&int(&item["qty"])));
                let price = item["price"].as_f64().unwrap();
                assert!(price > 0.0);
                assert!(
                    ((price / 0.01) - (price / 0.01).round()).abs() < 1e-9,
                    "{price}"
                );
            }
            assert!((4..=5).contains(&v["many"].as_array().unwrap().len()));
            assert_eq!(v["none"], json!([]));
        });
    }

    #[test]
    fn literal_enums_and_consts() {
        let schema = json!({"type": "object", "properties": {
            "sentiment": {"enum": ["positive", "negative", "neutral"], "type": "string"},
            "level": {"enum": [1, 2, 3], "type": "integer"},
            "mixed": {"enum": ["a", null, 3]},
            "filtered": {"enum": ["x", 5, "y"], "type": "integer"},
            "fixed": {"const": "v1"},
            "maybe": {"anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}]}},
            "required": ["sentiment", "level", "mixed", "filtered", "fixed", "maybe"]});
        let mut seen = std::collections::BTreeSet::new();
        each_seed(&schema, |v, _| {
            let sentiment = text(&v["sentiment"]);
            assert!(["positive", "negative", "neutral"].contains(&sentiment));
            seen.insert(sentiment.to_owned());
            assert!((1..=3).contains(&int(&v["level"])));
            assert!(
                v["mixed"] == "a" || v["mixed"] == 3,
                "non-null members first: {v}"
            );
            assert_eq!(v["filtered"], 5, "only members of the right type");
            assert_eq!(v["fixed"], "v1");
            assert!(v["maybe"] == "a" || v["maybe"] == "b");
        });
        assert!(seen.len() > 1, "the seed picks among members: {seen:?}");
    }

    #[test]
    fn constrained_integers() {
        let cases = [
            (
                json!({"type": "integer", "minimum": 10, "maximum": 20, "multipleOf": 7}),
                10,
                20,
                7,
            ),
            (
                json!({"type": "integer", "exclusiveMinimum": 100}),
                101,
                i64::MAX,
                1,
            ),
            (json!({"type": "integer", "maximum": -50}), i64::MIN, -50, 1),
            (
                json!({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3}),
                1,
                2,
                1,
            ),
            (
                json!({"type": "integer", "multipleOf": 2.5, "minimum": 1}),
                1,
                i64::MAX,
                5,
            ),
            (
                json!({"type": "integer", "minimum": 5, "maximum": 10, "exclusiveMinimum": true}),
                6,
                10,
                1,
            ),
            (
                json!({"type": "integer", "minimum": 1.5, "maximum": 2.5}),
                2,
                2,
                1,
            ),
        ];
        for (schema, lo, hi, step) in cases {
            each_seed(&schema, |v, seed| {
                let n = int(v);
                assert!(
                    n >= lo && n <= hi && n % step == 0,
                    "{schema} seed {seed}: {n}"
                );
            });
        }
    }

    #[test]
    fn constrained_numbers() {
        let within = |v: &Value, check: &dyn Fn(f64) -> bool| {
            let x = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
            assert!(check(x), "{x}");
        };
        let multiple = |x: f64, m: f64| (x / m).fract() == 0.0;
        each_seed(
            &json!({"type": "number", "minimum": 0.1, "maximum": 0.2}),
            |v, _| within(v, &|x| (0.1..=0.2).contains(&x)),
        );
        each_seed(
            &json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}),
            |v, _| within(v, &|x| x > 0.0 && x < 1.0),
        );
        each_seed(
            &json!({"type": "number", "multipleOf": 0.1, "minimum": 0.25, "maximum": 0.95}),
            |v, _| {
                within(v, &|x| (0.25..=0.95).contains(&x) && multiple(x, 0.1));
            },
        );
        each_seed(&json!({"type": "number", "multipleOf": 0.05}), |v, _| {
            within(v, &|x| multiple(x, 0.05))
        });
        each_seed(
            &json!({"type": "number", "minimum": 5, "exclusiveMinimum": true}),
            |v, _| within(v, &|x| x > 5.0),
        );
        let v = instance(
            &json!({"type": "object", "properties": {
            "confidence": {"type": "number", "minimum": 0, "maximum": 1}, "age": {"type": "integer"}}}),
            0,
            "",
        );
        assert!((0.0..=1.0).contains(&v["confidence"].as_f64().unwrap()));
        assert!(
            (18..=90).contains(&int(&v["age"])),
            "plausible by name: {v}"
        );
    }

    #[test]
    fn booleans_nulls_and_unconstrained() {
        each_seed(&json!({"type": "boolean"}), |v, _| assert!(v.is_boolean()));
        each_seed(&json!({"type": "null"}), |v, _| assert!(v.is_null()));
        each_seed(&json!({}), |v, _| assert!(v.is_string()));
        each_seed(&json!(true), |v, _| assert!(v.is_string()));
        assert_eq!(instance(&json!(false), 0, ""), Value::Null);
        assert_eq!(
            instance(&json!({"type": "string"}), 0, HINT),
            HINT,
            "a bare string answers the prompt"
        );
    }

    #[test]
    fn string_lengths() {
        each_seed(
            &json!({"type": "string", "minLength": 10, "maxLength": 12}),
            |v, _| {
                assert!((10..=12).contains(&text(v).chars().count()), "{v}");
            },
        );
        each_seed(&json!({"type": "string", "maxLength": 3}), |v, _| {
            assert!(text(v).chars().count() <= 3)
        });
        each_seed(&json!({"type": "string", "minLength": 40}), |v, _| {
            assert!(text(v).chars().count() >= 40)
        });
    }

    #[test]
    fn string_formats() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string", "format": "date"}, "b": {"type": "string", "format": "date-time"},
            "c": {"type": "string", "format": "time"}, "d": {"type": "string", "format": "email"},
            "e": {"type": "string", "format": "uri"}, "f": {"type": "string", "format": "url"},
            "g": {"type": "string", "format": "uuid"}, "h": {"type": "string", "format": "ipv4"},
            "i": {"type": "string", "format": "hostname"}}});
        each_seed(&schema, |v, _| {
            assert!(is_date(text(&v["a"])));
            let (date, time) = text(&v["b"]).split_once('T').unwrap();
            assert!(is_date(date) && is_time(time) && time.ends_with('Z'));
            assert!(is_time(text(&v["c"])));
            let (local, domain) = text(&v["d"]).split_once('@').unwrap();
            assert!(!local.is_empty() && domain.contains('.'));
            assert!(text(&v["e"]).starts_with("https://") && text(&v["f"]).starts_with("https://"));
            assert!(is_uuid(text(&v["g"])), "{}", v["g"]);
            assert!(text(&v["h"]).parse::<std::net::Ipv4Addr>().is_ok());
            assert!(text(&v["i"]).split('.').all(|label| !label.is_empty()));
        });
    }

    #[test]
    fn simple_patterns() {
        let all = |s: &str, f: fn(char) -> bool| !s.is_empty() && s.chars().all(f);
        each_seed(
            &json!({"type": "string", "pattern": "^[A-Z]{2}$"}),
            |v, _| {
                assert!(
                    text(v).len() == 2 && all(text(v), |c| c.is_ascii_uppercase()),
                    "{v}"
                );
            },
        );
        each_seed(&json!({"type": "string", "pattern": "^\\d+$"}), |v, _| {
            assert!(all(text(v), |c| c.is_ascii_digit()))
        });
        each_seed(
            &json!({"type": "string", "pattern": "^[a-z0-9_-]{3,16}$"}),
            |v, _| {
                let s = text(v);
                assert!((3..=16).contains(&s.len()));
                assert!(all(s, |c| c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || c == '_'
                    || c == '-'));
            },
        );
        each_seed(
            &json!({"type": "string", "pattern": "^(foo|bar)-\\w{2}\\.?$"}),
            |v, _| {
                let s = text(v);
                assert!(s.starts_with("foo-") || s.starts_with("bar-"), "{s}");
                assert!((6..=7).contains(&s.len()));
            },
        );
        each_seed(
            &json!({"type": "string", "pattern": "^[a-z]+$", "minLength": 5, "maxLength": 5}),
            |v, _| {
                assert!(text(v).len() == 5 && all(text(v), |c| c.is_ascii_lowercase()));
            },
        );
        // Unanchored: the match may sit inside a longer string, padded to minLength.
        each_seed(
            &json!({"type": "string", "pattern": "[0-9]", "minLength": 12}),
            |v, _| {
                assert!(text(v).len() >= 12 && text(v).chars().any(|c| c.is_ascii_digit()));
            },
        );
        // Lookahead is checked on candidates, not generated: one that meets it is kept.
        each_seed(
            &json!({"type": "string", "pattern": "^(?=.*\\d).{8,}$"}),
            |v, _| {
                assert!(
                    text(v).len() >= 8 && text(v).chars().any(|c| c.is_ascii_digit()),
                    "{v}"
                );
            },
        );
        // pydantic's `Decimal` string pattern (negative lookahead).
        each_seed(
            &json!({"type": "string", "pattern": "^(?!^[-+.]*$)[+-]?0*\\d*\\.?\\d*$"}),
            |v, _| {
                let s = text(v);
                assert!(
                    s.trim_start_matches(['+', '-']).parse::<f64>().is_ok(),
                    "{s}"
                );
            },
        );
        // Lookbehind is outside the supported subset: a plain word, no panic.
        let v = instance(
            &json!({"type": "string", "pattern": "^(?<=a)b$", "minLength": 3}),
            0,
            "",
        );
        assert!(text(&v).chars().count() >= 3);
    }

    #[test]
    fn regex_engine() {
        let matches = |pattern: &str, s: &str| Regex::parse(pattern).and_then(|r| r.is_match(s));
        assert_eq!(matches("^[A-Z]{2}$", "US"), Some(true));
        assert_eq!(matches("^[A-Z]{2}$", "USA"), Some(false));
        assert_eq!(matches("\\d+", "abc123"), Some(true), "unanchored search");
        assert_eq!(
            matches("^(a|ab)c$", "abc"),
            Some(true),
            "backtracks into alternatives"
        );
        assert_eq!(
            matches("^a*a$", "aaaa"),
            Some(true),
            "quantifiers give back"
        );
        assert_eq!(matches("^[^@\\s]+@x\\.io$", "me@x.io"), Some(true));
        assert_eq!(matches("^[^@\\s]+@x\\.io$", "m e@x.io"), Some(false));
        assert_eq!(
            matches("^(?:[01]\\d|2[0-3]):[0-5]\\d$", "23:59"),
            Some(true)
        );
        assert_eq!(matches("^(?<year>\\d{4})$", "2024"), Some(true));
        assert_eq!(matches("^a{2,}$", "a"), Some(false));
        assert_ne!(
            matches("^(a*)*$", "aaaaaaaaaaaaaaaaaaaaaaaaaaaab"),
            Some(true),
            "no hang"
        );
        assert_eq!(matches("^(?=.*\\d)[a-z0-9]+$", "abc1"), Some(true));
        assert_eq!(matches("^(?=.*\\d)[a-z0-9]+$", "abcd"), Some(false));
        assert_eq!(matches("^(?!admin$)\\w+$", "admin"), Some(false));
        assert_eq!(matches("^(?!admin$)\\w+$", "admins"), Some(true));
        assert_eq!(matches("\\bcat\\b", "a cat!"), Some(true));
        assert_eq!(matches("\\bcat\\b", "concat"), Some(false));
        for unsupported in [
            "(?<=a)b", "(?<!a)b", "(a)\\1", "\\p{L}", "(", "[z-a]", "a**",
        ] {
            assert!(Regex::parse(unsupported).is_none(), "{unsupported}");
        }
    }

    #[test]
    fn recursive_model_is_cut_by_depth() {
        // pydantic v2 for `class TreeNode(BaseModel): value: int; children: list['TreeNode']`.
        let tree = json!({"$defs": {"TreeNode": {"properties": {
            "value": {"title": "Value", "type": "integer"},
            "children": {"items": {"$ref": "#/$defs/TreeNode"}, "title": "Children", "type": "array"}},
            "required": ["value", "children"], "title": "TreeNode", "type": "object"}},
            "$ref": "#/$defs/TreeNode"});
        each_seed(&tree, |v, _| {
            assert!(v["value"].is_i64());
            for child in v["children"].as_array().unwrap() {
                assert!(child["value"].is_i64());
                assert_eq!(
                    child["children"],
                    json!([]),
                    "the repeated model takes its shortest form"
                );
            }
        });
        // `parent: Optional['Category']`, referenced through the root.
        let category = json!({"title": "Category", "type": "object", "additionalProperties": false,
            "properties": {"name": {"type": "string"}, "parent": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
            "required": ["name", "parent"]});
        each_seed(&category, |v, _| {
            assert!(v["name"].is_string());
            assert_eq!(v["parent"]["parent"], Value::Null, "{v}");
            assert_eq!(object(v).len(), 2);
        });
        // Mutual recursion, and recursion that minItems forces past the depth limit.
        let mutual = json!({"$defs": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}, "required": ["b"]},
            "B": {"type": "object", "properties": {"a": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]}}, "required": ["a"]}},
            "$ref": "#/$defs/A"});
        assert_eq!(
            instance(&mutual, 0, ""),
            json!({"b": {"a": {"b": {"a": null}}}})
        );
        let forced = json!({"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}, "minItems": 1}},
            "required": ["kids"]});
        let v = instance(&forced, 0, "");
        assert!(
            v.is_object(),
            "no finite instance exists, but generation ends: {v}"
        );
    }

    #[test]
    fn depth_limit_omits_optional_properties() {
        let schema = json!({"$defs": {"Node": {"type": "object", "properties": {
            "id": {"type": "integer"}, "note": {"type": "string"}, "next": {"$ref": "#/$defs/Node"}},
            "required": ["id"]}}, "$ref": "#/$defs/Node"});
        let v = instance(&schema, 0, "");
        assert!(
            v["note"].is_string(),
            "optional properties are included at the top"
        );
        assert_eq!(
            object(&v["next"]).keys().collect::<Vec<_>>(),
            ["id"],
            "and omitted once recursive: {v}"
        );
    }

    #[test]
    fn openai_strict_mode() {
        let schema = json!({"type": "object", "additionalProperties": false,
            "properties": {
                "answer": {"type": "string"},
                "language": {"type": ["string", "null"]},
                "sources": {"type": ["array", "null"], "items": {"type": "string", "format": "uri"}},
                "meta": {"type": "object", "properties": {"score": {"type": "number"}}, "required": ["score"], "additionalProperties": false}},
            "required": ["answer", "language", "sources", "meta"]});
        each_seed(&schema, |v, _| {
            let o = object(v);
            assert_eq!(o.len(), 4);
            assert!(
                o["answer"].is_string() && o["language"].is_string() && o["sources"].is_array()
            );
            assert_eq!(object(&o["meta"]).len(), 1);
            assert!(o["meta"]["score"].is_f64());
        });
    }

    #[test]
    fn all_of_merges_objects() {
        let schema = json!({"$defs": {"Base": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}}, "required": ["id"]}},
            "allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"id": {"maximum": 3}, "extra": {"type": "boolean"}}, "required": ["extra"]}]});
        each_seed(&schema, |v, _| {
            assert!((1..=3).contains(&int(&v["id"])));
            assert!(v["extra"].is_boolean());
        });
    }

    #[test]
    fn one_of_discriminated_union() {
        let schema = json!({"$defs": {
            "Cat": {"properties": {"pet_type": {"const": "cat", "type": "string"}, "meows": {"type": "integer"}}, "required": ["pet_type", "meows"], "type": "object"},
            "Dog": {"properties": {"pet_type": {"const": "dog", "type": "string"}, "barks": {"type": "number"}}, "required": ["pet_type", "barks"], "type": "object"}},
            "properties": {"pet": {"oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}],
                "discriminator": {"propertyName": "pet_type", "mapping": {"cat": "#/$defs/Cat", "dog": "#/$defs/Dog"}}}},
            "required": ["pet"], "type": "object"});
        each_seed(&schema, |v, _| {
            assert_eq!(v["pet"]["pet_type"], "cat");
            assert!(v["pet"]["meows"].is_i64());
        });
        // Overlapping branches: the value must match exactly one.
        each_seed(
            &json!({"oneOf": [{"type": "integer", "minimum": 0}, {"type": "integer", "maximum": 100}]}),
            |v, _| {
                let n = int(v);
                assert!((n >= 0) != (n <= 100), "{n}");
            },
        );
        each_seed(
            &json!({"oneOf": [{"type": "number"}, {"type": "integer"}]}),
            |v, _| assert!(v.is_f64()),
        );
    }

    #[test]
    fn tuples_and_unique_items() {
        each_seed(
            &json!({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}, {"type": "boolean"}],
            "items": false, "minItems": 3, "maxItems": 3}),
            |v, _| {
                let a = v.as_array().unwrap();
                assert!(a.len() == 3 && a[0].is_i64() && a[1].is_string() && a[2].is_boolean());
            },
        );
        each_seed(
            &json!({"type": "array", "items": [{"type": "integer"}, {"type": "string"}], "additionalItems": false}),
            |v, _| {
                let a = v.as_array().unwrap();
                assert!(a.len() == 2 && a[0].is_i64() && a[1].is_string());
            },
        );
        each_seed(
            &json!({"type": "array", "items": {"enum": ["x", "y", "z"]}, "uniqueItems": true, "minItems": 3}),
            |v, _| {
                let mut a: Vec<&str> = v.as_array().unwrap().iter().map(text).collect();
                a.sort_unstable();
                assert_eq!(a, ["x", "y", "z"]);
            },
        );
        each_seed(
            &json!({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 2},
                    "uniqueItems": true, "minItems": 3}),
            |v, _| {
                let mut a: Vec<i64> = v.as_array().unwrap().iter().map(int).collect();
                a.sort_unstable();
                assert_eq!(a, [0, 1, 2]);
            },
        );
        each_seed(
            &json!({"type": "array", "items": {"type": "boolean"}, "uniqueItems": true, "minItems": 2}),
            |v, _| {
                assert!(v[0].is_boolean() && v[0] != v[1]);
            },
        );
        each_seed(
            &json!({"type": "array", "items": {"type": "integer"}, "contains": {"minimum": 50}}),
            |v, _| {
                assert!(v.as_array().unwrap().iter().any(|x| int(x) >= 50));
            },
        );
    }

    #[test]
    fn objects_without_properties_and_dicts() {
        assert_eq!(instance(&json!({"type": "object"}), 0, ""), json!({}));
        assert_eq!(
            instance(
                &json!({"type": "object", "additionalProperties": {"type": "integer"}}),
                0,
                ""
            ),
            json!({})
        );
        each_seed(
            &json!({"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 2}),
            |v, _| {
                let o = object(v);
                assert!(o.len() >= 2 && o.values().all(Value::is_i64));
            },
        );
        each_seed(
            &json!({"type": "object", "patternProperties": {"^x-[a-z]+$": {"type": "string"}},
            "additionalProperties": false, "minProperties": 1}),
            |v, _| {
                let o = object(v);
                assert!(
                    !o.is_empty()
                        && o.keys().all(|k| k.starts_with("x-"))
                        && o.values().all(Value::is_string),
                    "{v}"
                );
            },
        );
        let v = instance(
            &json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "maxProperties": 1}),
            0,
            "",
        );
        assert_eq!(object(&v).len(), 1);
        let v = instance(
            &json!({"type": "object", "properties": {"gone": false, "kept": {"type": "integer"}}}),
            0,
            "",
        );
        assert_eq!(object(&v).keys().collect::<Vec<_>>(), ["kept"]);
    }

    #[test]
    fn conditionals_and_negation() {
        let schema = json!({"type": "object", "properties": {"kind": {"enum": ["a", "b"]}, "value": {}}, "required": ["kind", "value"],
            "if": {"properties": {"kind": {"const": "a"}}}, "then": {"properties": {"value": {"type": "integer"}}},
            "else": {"properties": {"value": {"type": "string"}}}});
        each_seed(&schema, |v, _| {
            if v["kind"] == "a" {
                assert!(v["value"].is_i64(), "{v}")
            } else {
                assert!(v["value"].is_string(), "{v}")
            }
        });
        each_seed(
            &json!({"type": "string", "not": {"const": "example"}}),
            |v, _| assert_ne!(v, "example"),
        );
        each_seed(
            &json!({"type": ["integer", "string"], "not": {"type": "integer"}}),
            |v, _| assert!(v.is_string()),
        );
        each_seed(
            &json!({"type": "integer", "not": {"maximum": 10}}),
            |v, _| assert!(int(v) > 10, "{v}"),
        );
    }

    #[test]
    fn openapi_subset_for_gemini() {
        let schema = json!({"type": "OBJECT", "properties": {
            "title": {"type": "STRING"}, "year": {"type": "INTEGER", "nullable": true},
            "genres": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["drama", "comedy"]}}},
            "required": ["title", "year", "genres"]});
        each_seed(&schema, |v, _| {
            assert!(v["title"].is_string());
            assert_eq!(v["year"], 2024);
            assert!(
                v["genres"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|g| g == "drama" || g == "comedy")
            );
        });
    }

    #[test]
    fn references_in_every_spelling() {
        assert!(
            int(&instance(
                &json!({"$defs": {"x/y": {"type": "integer", "minimum": 3}}, "$ref": "#/$defs/x~1y"}),
                0,
                ""
            )) >= 3
        );
        assert!(
            int(&instance(
                &json!({"$defs": {"a b": {"type": "integer", "minimum": 3}}, "$ref": "#/$defs/a%20b"}),
                0,
                ""
            )) >= 3
        );
        let anchored = instance(
            &json!({"$defs": {"N": {"$anchor": "node", "type": "string", "minLength": 3}}, "$ref": "#node"}),
            0,
            "",
        );
        assert!(text(&anchored).len() >= 3);
        let v = instance(
            &json!({"$ref": "#/$defs/Model", "$defs": {"Model": {"type": "object", "properties": {"n": {"$ref": "#/definitions/N"}}, "required": ["n"]}},
            "definitions": {"N": {"type": "boolean"}}}),
            0,
            "",
        );
        assert!(v["n"].is_boolean());
    }

    #[test]
    fn malformed_schemas_do_not_panic() {
        let junk = [
            json!(null),
            json!(3),
            json!("string"),
            json!([1, 2]),
            json!({"type": 5}),
            json!({"properties": 3}),
            json!({"type": "array", "minItems": "x", "items": 4}),
            json!({"type": "integer", "minimum": 10, "maximum": 5}),
            json!({"enum": []}),
            json!({"anyOf": []}),
            json!({"oneOf": "x"}),
            json!({"allOf": [false]}),
            json!({"$ref": "#"}),
            json!({"allOf": [{"$ref": "#"}]}),
            json!({"anyOf": [{"$ref": "#"}]}),
            json!({"$ref": "#/nowhere"}),
            json!({"$ref": 7}),
            json!({"type": "string", "pattern": "("}),
            json!({"type": "string", "minLength": 1e300}),
            json!({"type": "array", "minItems": 1e18}),
            json!({"type": "number", "multipleOf": -1}),
            json!({"type": "integer", "multipleOf": 0}),
            json!({"type": "number", "minimum": 1e308, "exclusiveMinimum": 1e308}),
            json!({"type": "integer", "minimum": -1e300}),
            json!({"type": "string", "pattern": "^a{999}{999}$"}),
            json!({"type": "string", "pattern": "[\\"}),
            json!({"required": [1, null], "properties": {"a": null}}),
            json!({"if": {"$ref": "#"}, "then": {"$ref": "#"}}),
            json!({"not": {"$ref": "#"}}),
            json!({"type": ["string", 3, null]}),
            json!({"prefixItems": {"a": 1}, "items": []}),
        ];
        for schema in &junk {
            for seed in 0..3 {
                let v = instance(schema, seed, HINT);
                assert_eq!(v, instance(schema, seed, HINT), "{schema}");
            }
        }
        assert_eq!(instance(&json!({"allOf": [false]}), 0, ""), Value::Null);
        assert_eq!(instance(&json!(3), 0, ""), Value::Null);
    }

    #[test]
    fn deterministic_for_a_seed() {
        let schema = person_schema();
        for seed in 0..20 {
            assert_eq!(instance(&schema, seed, HINT), instance(&schema, seed, HINT));
        }
        let distinct: std::collections::BTreeSet<String> = (0..20)
            .map(|seed| instance(&schema, seed, HINT).to_string())
            .collect();
        assert!(distinct.len() > 1, "other seeds give other values");
    }

    #[test]
    fn output_stays_small() {
        // Wide and deep: ten levels of nested lists of models.
        let mut schema = json!({"type": "object", "properties": {"leaf": {"type": "string"}}, "required": ["leaf"]});
        for _ in 0..10 {
            schema = json!({"type": "object", "properties": {"a": {"type": "array", "items": schema.clone()}, "b": schema.clone()}, "required": ["a", "b"]});
        }
        let v = instance(&schema, 0, "");
        assert!(v.to_string().len() < 200_000, "{}", v.to_string().len());
    }
}
