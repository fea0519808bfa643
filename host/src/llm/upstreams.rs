//! The upstreams the host governs: where an agent's LLM requests are addressed, where the host
//! sends them on, in which wire format, and with which key.
//!
//! Two are built in, `openai` (`https://api.openai.com`) and `anthropic`
//! (`https://api.anthropic.com`); `[[llm.upstreams]]` adds more (an OpenRouter, an Azure
//! OpenAI resource, a vLLM or Ollama server on the local network). The agent's side
//! (`ironhost._intercept`) matches each request's URL against the table's base URLs and names
//! the upstream it was addressed to; the host sends it to that upstream only, with that
//! upstream's own key, so a key never goes to another party.

use std::collections::BTreeMap;

use reqwest::Url;
use serde::Deserialize;

use super::api::Api;

/// The wire format an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// OpenAI's APIs (chat completions, responses, completions, embeddings, moderations).
    Openai,
    /// Anthropic's messages API.
    Anthropic,
    /// Azure OpenAI: OpenAI's APIs under `/openai/deployments/{deployment}/...` (or
    /// `/openai/v1/...`), the key in an `api-key` header.
    AzureOpenai,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Openai => "openai",
            Format::Anthropic => "anthropic",
            Format::AzureOpenai => "azure-openai",
        }
    }

    /// Whether this format carries `api`.
    pub fn carries(self, api: Api) -> bool {
        match self {
            Format::Anthropic => api.provider() == "anthropic",
            Format::Openai | Format::AzureOpenai => api.provider() == "openai",
        }
    }
}

/// One `[[llm.upstreams]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UpstreamConfig {
    /// The upstream's name: the `provider` the policies see, the name in call records.
    pub name: String,
    /// Scheme, host, optional port and path prefix, as the agent addresses it
    /// (`https://openrouter.ai/api/v1`); the host sends to the same URL.
    pub base_url: String,
    pub format: Format,
    /// The secret (or host environment variable) holding the upstream's key; none for a
    /// server that needs no key.
    pub key_secret: Option<String>,
    /// Model names as the agent sends them, priced as another model of the table
    /// (`"anthropic/claude-3.5-haiku" = "claude-3-5-haiku"`, an Azure deployment name).
    #[serde(default)]
    pub models: BTreeMap<String, String>,
}

/// An upstream of the table: where it is addressed and where it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    /// The base URL the agent addresses (the table the agent's side matches against).
    pub address: String,
    /// The base URL the host sends to: the address, or for a built-in upstream the
    /// `[llm.openai]` / `[llm.anthropic]` `base-url`.
    pub send_to: String,
    pub format: Format,
    pub key_secret: Option<String>,
    /// The path prefix of `address` (no trailing `/`), stripped from the agent's path.
    prefix: String,
}

/// Where one request goes, read from the agent's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The API, from the path.
    pub api: Option<Api>,
    /// The path and query after the upstream's base path, as sent on.
    pub rest: String,
    /// The Azure deployment the path names.
    pub deployment: Option<String>,
}

impl Endpoint {
    fn new(
        name: &str,
        address: &str,
        send_to: &str,
        format: Format,
        key_secret: Option<&str>,
    ) -> Result<Endpoint, String> {
        let url = http_url(address)?;
        if send_to != address {
            http_url(send_to)?;
        }
        Ok(Endpoint {
            name: name.to_owned(),
            address: address.trim_end_matches('/').to_owned(),
            send_to: send_to.trim_end_matches('/').to_owned(),
            format,
            key_secret: key_secret.map(str::to_owned),
            prefix: url.path().trim_end_matches('/').to_owned(),
        })
    }

    /// Read the agent's path (with its query): the API it asks for, and the rest of the path
    /// after the base path. An Azure path names its deployment; its API path is the part after
    /// it (`/openai/deployments/prod-4o/chat/completions` asks for chat completions).
    pub fn target(&self, path: &str) -> Target {
        let rest = path
            .strip_prefix(self.prefix.as_str())
            .filter(|r| r.is_empty() || r.starts_with('/') || r.starts_with('?'))
            .unwrap_or(path)
            .to_owned();
        let (route, deployment) = match self.format {
            Format::AzureOpenai => {
                let bare = rest.split('?').next().unwrap_or(&rest);
                if let Some(after) = bare.strip_prefix("/openai/deployments/") {
                    let (dep, tail) = after.split_once('/').unwrap_or((after, ""));
                    (format!("/{tail}"), Some(dep.to_owned()))
                } else if let Some(tail) = bare.strip_prefix("/openai") {
                    (tail.to_owned(), None)
                } else {
                    (bare.to_owned(), None)
                }
            }
            _ => (rest.split('?').next().unwrap_or(&rest).to_owned(), None),
        };
        let api = Api::from_path(&route).filter(|a| self.format.carries(*a));
        Target {
            api,
            rest,
            deployment: deployment.filter(|d| !d.is_empty()),
        }
    }

    /// The name of the key's secret: the one a policy chose, else this upstream's.
    pub fn key_name<'a>(&'a self, chosen: Option<&'a str>) -> Option<&'a str> {
        chosen.or(self.key_secret.as_deref())
    }
}

fn http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{s}` is not an http(s) URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "`{s}`: a base URL has no query, fragment or user name"
        ));
    }
    Ok(url)
}

/// An environment variable / secret name: letters, digits and `_`, not starting with a digit.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The table of upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams {
    list: Vec<Endpoint>,
    /// Model names priced as other models, from every upstream's `models`.
    aliases: BTreeMap<String, String>,
}

/// The built-ins' addresses.
pub const OPENAI_URL: &str = "https://api.openai.com";
pub const ANTHROPIC_URL: &str = "https://api.anthropic.com";

impl Default for Upstreams {
    fn default() -> Upstreams {
        Upstreams::new(None, None, &[]).expect("the built-in upstreams are valid")
    }
}

impl Upstreams {
    /// The built-ins (sent to `openai` / `anthropic` when given) and `configured`, checked.
    /// An error is (key, reason).
    pub fn new(
        openai: Option<&str>,
        anthropic: Option<&str>,
        configured: &[UpstreamConfig],
    ) -> Result<Upstreams, (String, String)> {
        let mut list = vec![
            Endpoint::new(
                "openai",
                OPENAI_URL,
                openai.unwrap_or(OPENAI_URL),
                Format::Openai,
                Some("OPENAI_API_KEY"),
            )
            .map_err(|e| ("llm.openai.base-url".to_owned(), e))?,
            Endpoint::new(
                "anthropic",
                ANTHROPIC_URL,
                anthropic.unwrap_or(ANTHROPIC_URL),
                Format::Anthropic,
                Some("ANTHROPIC_API_KEY"),
            )
            .map_err(|e| ("llm.anthropic.base-url".to_owned(), e))?,
        ];
        let mut aliases: BTreeMap<String, String> = BTreeMap::new();
        let mut alias_owner: BTreeMap<String, String> = BTreeMap::new();
        for (i, c) in configured.iter().enumerate() {
            let at = |field: &str| format!("llm.upstreams[{i}].{field}");
            if !c
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                || c.name.is_empty()
            {
                return Err((
                    at("name"),
                    format!("`{}` is not a name (letters, digits, `-` and `_`)", c.name),
                ));
            }
            if list.iter().any(|u| u.name == c.name) {
                let why = if matches!(c.name.as_str(), "openai" | "anthropic") {
                    format!(
                        "`{}` is built in (move it with [llm.{}] base-url)",
                        c.name, c.name
                    )
                } else {
                    format!("`{}` is named twice", c.name)
                };
                return Err((at("name"), why));
            }
            if let Some(k) = &c.key_secret
                && !valid_name(k)
            {
                return Err((
                    at("key-secret"),
                    format!("`{k}` is not a secret name (letters, digits and `_`)"),
                ));
            }
            let u = Endpoint::new(
                &c.name,
                &c.base_url,
                &c.base_url,
                c.format,
                c.key_secret.as_deref(),
            )
            .map_err(|e| (at("base-url"), e))?;
            if let Some(other) = list.iter().find(|o| o.address == u.address) {
                return Err((
                    at("base-url"),
                    format!(
                        "`{}` is already the address of upstream `{}`",
                        u.address, other.name
                    ),
                ));
            }
            for (from, to) in &c.models {
                if from.is_empty() || to.is_empty() {
                    return Err((at("models"), "model names must not be empty".to_owned()));
                }
                if let Some(prev) = aliases.get(from)
                    && prev != to
                {
                    return Err((
                        at("models"),
                        format!(
                            "`{from}` is priced as `{prev}` by upstream `{}` and as `{to}` here",
                            alias_owner[from]
                        ),
                    ));
                }
                aliases.insert(from.clone(), to.clone());
                alias_owner.insert(from.clone(), c.name.clone());
            }
            list.push(u);
        }
        Ok(Upstreams { list, aliases })
    }

    pub fn get(&self, name: &str) -> Option<&Endpoint> {
        self.list.iter().find(|u| u.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.list.iter()
    }

    /// (name, address) of each: the table the agent's side matches against.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.list
            .iter()
            .map(|u| (u.name.clone(), u.address.clone()))
            .collect()
    }

    /// Model names priced as other models.
    pub fn aliases(&self) -> &BTreeMap<String, String> {
        &self.aliases
    }

    /// The key names of every upstream: variables that never reach the agent.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().filter_map(|u| u.key_secret.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured(text: &str) -> Result<Upstreams, (String, String)> {
        #[derive(Deserialize)]
        struct Doc {
            upstreams: Vec<UpstreamConfig>,
        }
        let doc: Doc = toml::from_str(text).expect("toml");
        Upstreams::new(None, None, &doc.upstreams)
    }

    #[test]
    fn a_path_is_read_after_the_base_path() {
        let t = configured(
            r#"
[[upstreams]]
name = "openrouter"
base-url = "https://openrouter.ai/api/v1"
format = "openai"
key-secret = "OPENROUTER_API_KEY"
models = { "anthropic/claude-3.5-haiku" = "claude-3-5-haiku" }

[[upstreams]]
name = "azure"
base-url = "https://acme.openai.azure.com/"
format = "azure-openai"
key-secret = "AZURE_OPENAI_API_KEY"
"#,
        )
        .expect("valid");
        let or = t.get("openrouter").expect("listed");
        let target = or.target("/api/v1/chat/completions");
        assert_eq!(target.api, Some(Api::OpenAi));
        assert_eq!(target.rest, "/chat/completions");
        // An Anthropic path is not an API an OpenAI-format upstream carries.
        assert_eq!(or.target("/api/v1/messages").api, None);
        let az = t.get("azure").expect("listed");
        let target =
            az.target("/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21");
        assert_eq!(target.api, Some(Api::OpenAi));
        assert_eq!(target.deployment.as_deref(), Some("prod-4o"));
        assert_eq!(
            target.rest,
            "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(az.target("/openai/v1/responses").api, Some(Api::Responses));
        let openai = t.get("openai").expect("built in");
        assert_eq!(openai.target("/v1/embeddings").api, Some(Api::Embeddings));
        assert_eq!(openai.target("/v1/embeddings").rest, "/v1/embeddings");
        assert_eq!(
            t.aliases()
                .get("anthropic/claude-3.5-haiku")
                .map(String::as_str),
            Some("claude-3-5-haiku")
        );
        let keys: Vec<&str> = t.key_names().collect();
        assert_eq!(
            keys,
            [
                "OPENAI_API_KEY",
                "ANTHROPIC_API_KEY",
                "OPENROUTER_API_KEY",
                "AZURE_OPENAI_API_KEY"
            ]
        );
    }

    #[test]
    fn bad_entries_name_the_field_and_the_reason() {
        for (text, key, reason) in [
            (
                r#"[[upstreams]]
name = "openai"
base-url = "https://x.example"
format = "openai""#,
                "llm.upstreams[0].name",
                "built in",
            ),
            (
                r#"[[upstreams]]
name = "a"
base-url = "ftp://x.example"
format = "openai""#,
                "llm.upstreams[0].base-url",
                "not an http(s) URL",
            ),
            (
                r#"[[upstreams]]
name = "a"
base-url = "https://x.example"
format = "openai"
key-secret = "MY KEY""#,
                "llm.upstreams[0].key-secret",
                "not a secret name",
            ),
            (
                r#"[[upstreams]]
name = "a"
base-url = "https://x.example/v1"
format = "openai"
[[upstreams]]
name = "a"
base-url = "https://y.example/v1"
format = "openai""#,
                "llm.upstreams[1].name",
                "named twice",
            ),
            (
                r#"[[upstreams]]
name = "a"
base-url = "https://x.example/v1"
format = "openai"
[[upstreams]]
name = "b"
base-url = "https://x.example/v1/"
format = "openai""#,
                "llm.upstreams[1].base-url",
                "already the address of upstream `a`",
            ),
            (
                r#"[[upstreams]]
name = "a"
base-url = "https://x.example/v1"
format = "openai"
models = { m = "gpt-4o" }
[[upstreams]]
name = "b"
base-url = "https://y.example/v1"
format = "openai"
models = { m = "gpt-4o-mini" }"#,
                "llm.upstreams[1].models",
                "priced as `gpt-4o` by upstream `a`",
            ),
        ] {
            let (k, r) = configured(text).expect_err(text);
            assert_eq!(k, key, "{text}");
            assert!(r.contains(reason), "{text}: {r}");
        }
    }
}
