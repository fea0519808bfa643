//! The pricing table: model prices in US dollars per million tokens, from a TOML data file
//! (`host/data/pricing.toml` is embedded as the default).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Price;

/// The embedded default table.
pub const DEFAULT_PRICING: &str = include_str!("../../data/pricing.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    meta: Meta,
    models: BTreeMap<String, RawModel>,
}

/// Where the prices come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Meta {
    pub source: String,
    pub as_of: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawModel {
    #[serde(default)]
    #[expect(dead_code, reason = "documents the table; lookups go by model name")]
    provider: Option<String>,
    input: f64,
    output: f64,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
}

/// Model prices by name.
#[derive(Debug, Clone, PartialEq)]
pub struct PricingTable {
    pub meta: Meta,
    models: BTreeMap<String, Price>,
    /// Model names priced as another model (`[[llm.upstreams]]` `models`).
    aliases: BTreeMap<String, String>,
}

impl PricingTable {
    /// The embedded default table.
    pub fn embedded() -> PricingTable {
        PricingTable::parse(DEFAULT_PRICING).expect("the embedded pricing table is valid (tested)")
    }

    /// Parse a table; errors name the line and the problem.
    pub fn parse(text: &str) -> Result<PricingTable, String> {
        let raw: RawTable = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
        let mut models = BTreeMap::new();
        for (name, m) in raw.models {
            let price = Price {
                input_per_mtok: m.input,
                output_per_mtok: m.output,
                cached_input_per_mtok: m.cached_input.unwrap_or(m.input),
                cache_write_per_mtok: m.cache_write.unwrap_or(m.input),
            };
            let all = [
                price.input_per_mtok,
                price.output_per_mtok,
                price.cached_input_per_mtok,
                price.cache_write_per_mtok,
            ];
            if all.iter().any(|p| !p.is_finite() || *p < 0.0) {
                return Err(format!(
                    "model `{name}`: prices must be finite and not negative"
                ));
            }
            models.insert(name, price);
        }
        Ok(PricingTable {
            meta: raw.meta,
            models,
            aliases: BTreeMap::new(),
        })
    }

    /// This table with `models` (a TOML `[models]` table of the file's shape) added or
    /// replacing entries of the same name.
    pub fn with_overrides(mut self, models: &toml::Table) -> Result<PricingTable, String> {
        let mut doc = toml::Table::new();
        let mut meta = toml::Table::new();
        meta.insert("source".into(), self.meta.source.clone().into());
        meta.insert("as-of".into(), self.meta.as_of.clone().into());
        doc.insert("meta".into(), meta.into());
        doc.insert("models".into(), models.clone().into());
        let extra = PricingTable::parse(&doc.to_string())?;
        self.models.extend(extra.models);
        Ok(self)
    }

    /// This table with `aliases` (model name -> the model of the table it is priced as).
    pub fn with_aliases(mut self, aliases: &BTreeMap<String, String>) -> PricingTable {
        self.aliases
            .extend(aliases.iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// The price of `model`: its alias's if it has one; else an exact entry, else the longest
    /// entry that `model` extends with a `-` (dated variants such as `gpt-4o-mini-2024-07-18`);
    /// else, for a router's name (`openai/gpt-4o-mini`, `anthropic/claude-3.5-haiku`), the
    /// same look-up of the name after the `/`, its version dots read as dashes.
    pub fn price(&self, model: &str) -> Option<Price> {
        if let Some(to) = self.aliases.get(model) {
            return self.lookup(to);
        }
        self.lookup(model).or_else(|| {
            let (_, name) = model.rsplit_once('/')?;
            self.lookup(name)
                .or_else(|| self.lookup(&dashed_versions(name)))
        })
    }

    fn lookup(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.models.get(model) {
            return Some(*p);
        }
        self.models
            .iter()
            .filter(|(name, _)| {
                model.len() > name.len()
                    && model.starts_with(name.as_str())
                    && model.as_bytes()[name.len()] == b'-'
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| *p)
    }

    /// The model names in the table.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }
}

/// `claude-3.5-haiku` as `claude-3-5-haiku`: a dot between two digits read as a dash.
fn dashed_versions(name: &str) -> String {
    let b = name.as_bytes();
    name.char_indices()
        .map(|(i, c)| {
            let between_digits =
                i > 0 && b[i - 1].is_ascii_digit() && b.get(i + 1).is_some_and(u8::is_ascii_digit);
            if c == '.' && between_digits { '-' } else { c }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_names_and_aliases_price_as_the_model_they_name() {
        let aliases = BTreeMap::from([("prod-4o".to_owned(), "gpt-4o".to_owned())]);
        let t = PricingTable::embedded().with_aliases(&aliases);
        assert_eq!(t.price("prod-4o"), t.price("gpt-4o"));
        assert!(t.price("gpt-4o").is_some());
        assert_eq!(t.price("openai/gpt-4o-mini"), t.price("gpt-4o-mini"));
        assert!(t.price("claude-3-5-haiku").is_some(), "the table lists it");
        assert_eq!(
            t.price("anthropic/claude-3.5-haiku"),
            t.price("claude-3-5-haiku")
        );
        assert_eq!(t.price("meta-llama/llama-3.1-8b-instruct"), None);
        assert_eq!(t.price("prod-unknown"), None);
        assert_eq!(dashed_versions("gpt-4.1-mini"), "gpt-4-1-mini");
        assert_eq!(dashed_versions("a.b-1.5"), "a.b-1-5");
    }

    #[test]
    fn embedded_table_parses_and_prices_known_models() {
        let t = PricingTable::embedded();
        assert!(t.models().count() >= 10);
        let mini = t.price("gpt-4o-mini").expect("priced");
        assert_eq!(
            (
                mini.input_per_mtok,
                mini.output_per_mtok,
                mini.cached_input_per_mtok
            ),
            (0.15, 0.60, 0.075)
        );
        assert_eq!(
            mini.cache_write_per_mtok, 0.15,
            "no write surcharge defaults to input"
        );
        let sonnet = t.price("claude-sonnet-4-5").expect("priced");
        assert_eq!(sonnet.cache_write_per_mtok, 3.75);
    }

    #[test]
    fn dated_variants_use_the_longest_matching_entry() {
        let t = PricingTable::embedded();
        assert_eq!(t.price("gpt-4o-mini-2024-07-18"), t.price("gpt-4o-mini"));
        assert_eq!(t.price("gpt-4o-2024-08-06"), t.price("gpt-4o"));
        assert_eq!(
            t.price("claude-sonnet-4-5-20250929"),
            t.price("claude-sonnet-4-5")
        );
        assert_eq!(t.price("gpt-4oo"), None);
        assert_eq!(t.price("llama-3"), None);
    }

    #[test]
    fn bad_tables_are_refused_with_a_reason() {
        let err = PricingTable::parse(
            "[meta]\nsource = \"x\"\nas-of = \"y\"\n[models.m]\ninput = -1.0\noutput = 1.0\n",
        )
        .expect_err("negative");
        assert!(err.contains("model `m`"), "{err}");
        let err =
            PricingTable::parse("[meta]\nsource = \"x\"\nas-of = \"y\"\n[models.m]\ninput = 1.0\n")
                .expect_err("no output");
        assert!(err.contains("output"), "{err}");
    }
}
