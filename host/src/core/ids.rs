//! Agent names and ids: what `ironhost start` and the SDK call an agent, and the check an
//! operator-given id passes (it names store rows and URLs).

use std::path::Path;

/// Script names that say nothing about the agent: its folder names it instead.
const GENERIC_STEMS: [&str; 5] = ["agent", "main", "__main__", "app", "run"];

/// The agent's name: the script's file name without `.py`, or, for a generic one such as
/// `agent.py`, its folder's name (`examples/lead_gen/agent.py` is `lead_gen`).
pub fn agent_name(script: &Path) -> String {
    let stem = script
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if GENERIC_STEMS.contains(&stem.to_lowercase().as_str())
        && let Some(dir) = script
            .parent()
            .and_then(Path::file_name)
            .map(|d| d.to_string_lossy().into_owned())
            .filter(|d| !d.is_empty())
    {
        return dir;
    }
    stem
}

/// An agent id for a script: a prefix from the agent's name ([`agent_name`]) and 8 random hex
/// digits (`lead_gen` gives `lg-7a3f9c2d`).
pub fn agent_id(script: &Path) -> String {
    agent_id_for(&agent_name(script))
}

/// An agent id for an agent named `name`: see [`agent_id`].
pub fn agent_id_for(name: &str) -> String {
    let stem = name.to_lowercase();
    let words: Vec<&str> = stem
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let prefix: String = match words.as_slice() {
        [] => "agent".to_owned(),
        [one] => one.chars().take(2).collect(),
        many => many
            .iter()
            .take(3)
            .filter_map(|w| w.chars().next())
            .collect(),
    };
    format!("{prefix}-{}", random_hex(4))
}

/// `n` random bytes as hex (the clock and the process id if the system has no randomness).
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = nanos.rotate_left(8 * (i as u32 % 8)) as u8;
        }
    }
    hex::encode(bytes)
}

/// Check an agent id given by the operator (`--agent-id`): it names store rows and URLs.
pub fn check_agent_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        let shown: String = id
            .chars()
            .take(64)
            .collect::<String>()
            .escape_debug()
            .to_string();
        let more = if id.chars().count() > 64 { "…" } else { "" };
        Err(format!(
            "`{shown}{more}` is not an agent id (1-64 letters, digits, `-`, `_`, `.`)"
        ))
    }
}

/// This machine's name (the fleet view shows which host runs an agent).
pub use crate::model::host_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generic_script_name_takes_its_folders_name() {
        assert_eq!(
            agent_name(Path::new("examples/lead_gen/agent.py")),
            "lead_gen"
        );
        assert_eq!(agent_name(Path::new("/srv/crm-sync/main.py")), "crm-sync");
        assert_eq!(agent_name(Path::new("lead_gen.py")), "lead_gen");
        assert_eq!(agent_name(Path::new("bots/Support_Bot.py")), "Support_Bot");
        // No folder to name it: the stem stays.
        assert_eq!(agent_name(Path::new("agent.py")), "agent");
        let id = agent_id(Path::new("examples/lead_gen/agent.py"));
        let (prefix, hex) = id.split_once('-').unwrap();
        assert_eq!(prefix, "lg");
        assert_eq!(hex.len(), 8);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
