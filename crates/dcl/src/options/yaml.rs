//! Upstream's YAML configuration: a file of named sections, one picked by `--config NAME`,
//! whose values override the command line.
//!
//! A non-empty YAML value replaces the command-line value, except for the dict-valued
//! configurations (`model_config`, `agent_config`, `tasksets_config`), which are merged
//! key by key with the YAML winning.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

/// The options merged key by key rather than replaced.
const MERGED_KEYS: [&str; 3] = ["model_config", "agent_config", "tasksets_config"];

/// Reads section `name` of the YAML file at `path`; without a name the file must have
/// exactly one section.
pub fn load_section(path: &Path, name: Option<&str>) -> Result<Map<String, Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read --yaml-config {}", path.display()))?;
    let document: Value =
        serde_norway::from_str(&text).map_err(|e| anyhow!("{}: not valid YAML: {e}", path.display()))?;
    let Value::Object(sections) = document else {
        bail!(
            "{}: expected a mapping of named sections at the top level",
            path.display()
        );
    };
    let names = || sections.keys().cloned().collect::<Vec<_>>().join(", ");
    let (name, section) = match name {
        Some(name) => (
            name,
            sections
                .get(name)
                .ok_or_else(|| anyhow!("{}: no section '{name}' (sections: {})", path.display(), names()))?,
        ),
        None if sections.len() == 1 => {
            let (name, section) = sections.iter().next().expect("one section");
            (name.as_str(), section)
        }
        None => bail!(
            "{} has several sections; pick one with --config NAME ({})",
            path.display(),
            names()
        ),
    };
    match section {
        Value::Object(options) => Ok(options.clone()),
        Value::Null => Ok(Map::new()),
        _ => bail!("{}: section '{name}' is not a mapping of options", path.display()),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Applies the YAML `section` to the command-line `options` (both keyed by option name,
/// `-` or `_` alike).
pub fn overlay(options: &mut Map<String, Value>, section: &Map<String, Value>) -> Result<()> {
    for (key, value) in section {
        let key = key.replace('-', "_");
        if is_empty(value) {
            continue;
        }
        if MERGED_KEYS.contains(&key.as_str()) {
            let Value::Object(from_yaml) = value else {
                bail!("YAML option '{key}' must be a mapping, not {value}");
            };
            let target = options.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(target) = target else {
                bail!("option '{key}' is not a mapping");
            };
            for (k, v) in from_yaml {
                target.insert(k.clone(), v.clone());
            }
        } else {
            options.insert(key, value.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Random files and a valid one with random edits load or fail with one line.
        #[test]
        fn any_file_loads_or_fails_with_one_line(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            random in prop::collection::vec(any::<u8>(), 0..80),
        ) {
            let valid = b"base:\n  model: resnet18\n  epochs: 2\n  agent_config: {rehearsal_ratio: 20}\nfast:\n  lr: 0.1\n";
            let mut edited = valid.to_vec();
            for (at, byte) in edits {
                let i = at.index(edited.len());
                edited[i] = byte;
            }
            let dir = tempfile::tempdir().unwrap();
            for bytes in [edited, random] {
                let path = dir.path().join("config.yaml");
                std::fs::write(&path, &bytes).unwrap();
                for section in [None, Some("base"), Some("fast")] {
                    if let Err(error) = load_section(&path, section) {
                        let text = format!("{error:#}");
                        prop_assert!(!text.contains('\n'), "{text}");
                    }
                }
            }
        }
    }

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn yaml_replaces_plain_values_and_merges_dicts_key_by_key() {
        let mut cli = map(json!({
            "batch_size": 64, "epochs": 25, "dataset": "mnist",
            "tasksets_config": {"scenario": "class", "initial_increment": 5, "increment": 5},
            "agent_config": {"reset_state_dict": true}
        }));
        let yaml = map(json!({
            "batch_size": 32, "dataset": "", "epochs": null,
            "tasksets-config": {"increment": 1, "initial_increment": 5},
            "agent_config": {}
        }));
        overlay(&mut cli, &yaml).unwrap();
        assert_eq!(
            Value::Object(cli),
            json!({
                "batch_size": 32, "epochs": 25, "dataset": "mnist",
                "tasksets_config": {"scenario": "class", "initial_increment": 5, "increment": 1},
                "agent_config": {"reset_state_dict": true}
            })
        );
    }

    #[test]
    fn a_dict_option_given_a_scalar_is_refused() {
        let mut cli = map(json!({"tasksets_config": {}}));
        let err = overlay(&mut cli, &map(json!({"tasksets_config": 3}))).unwrap_err();
        assert!(err.to_string().contains("'tasksets_config' must be a mapping"));
    }

    #[test]
    fn sections_are_picked_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            "split:\n  batch_size: 32\n  tasksets_config: {scenario: class, increment: 2}\nplain:\n  epochs: 1\n",
        )
        .unwrap();
        let section = load_section(&path, Some("split")).unwrap();
        assert_eq!(
            Value::Object(section),
            json!({"batch_size": 32, "tasksets_config": {"scenario": "class", "increment": 2}})
        );
        let missing = load_section(&path, Some("other")).unwrap_err().to_string();
        assert!(
            missing.contains("no section 'other' (sections: split, plain)"),
            "{missing}"
        );
        let ambiguous = load_section(&path, None).unwrap_err().to_string();
        assert!(ambiguous.contains("pick one with --config NAME"), "{ambiguous}");
        std::fs::write(&path, "split: [unclosed\n").unwrap();
        assert!(load_section(&path, None)
            .unwrap_err()
            .to_string()
            .contains("not valid YAML"));
    }
}
