//! Model configuration: the parsed `--model-config` dictionary and the keys a model reads.
//!
//! Each model declares its keys ([`Choice`], [`Rate`], [`File`]) as constants; the registry
//! checks a configuration against them (unknown keys and bad values are errors) and the model
//! reads its values through the same constants, so a key's name, accepted values and default
//! live in one place.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::{ModelEntry, ModelError};

/// The parsed model-config dictionary (`--model-config "{'variant': 's'}"`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelConfig(Map<String, Value>);

impl ModelConfig {
    /// Wraps a parsed dictionary.
    pub fn new(map: Map<String, Value>) -> Self {
        ModelConfig(map)
    }

    /// Checks every key against `entry`'s keys (plus [`WEIGHTS`]) and every value against its key.
    pub fn check(&self, entry: &ModelEntry) -> Result<(), ModelError> {
        let weights: &dyn ConfigKey = &WEIGHTS;
        let keys = || entry.keys.iter().copied().chain(std::iter::once(weights));
        for (name, value) in &self.0 {
            let key = keys()
                .find(|k| k.name() == name)
                .ok_or_else(|| ModelError::UnknownKey {
                    model: entry.name.to_owned(),
                    key: name.clone(),
                    valid: keys().map(|k| k.name()).collect::<Vec<_>>().join(", "),
                })?;
            key.check(value)?;
        }
        Ok(())
    }

    fn value(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }
}

impl From<Map<String, Value>> for ModelConfig {
    fn from(map: Map<String, Value>) -> Self {
        ModelConfig::new(map)
    }
}

/// A model-config key: its name, the values it accepts and its default.
pub trait ConfigKey: Sync {
    /// The key as written in the dictionary.
    fn name(&self) -> &'static str;
    /// Checks a value given for this key.
    fn check(&self, value: &Value) -> Result<(), ModelError>;
    /// The accepted values and the default, for listings (`variant: s|m|l (default m)`).
    fn describe(&self) -> String;
}

fn bad_value(key: &str, value: &Value, expected: String) -> ModelError {
    ModelError::BadValue {
        key: key.to_owned(),
        value: value.to_string(),
        expected,
    }
}

/// A key taking one of a fixed list of strings.
pub struct Choice {
    pub name: &'static str,
    pub values: &'static [&'static str],
    pub default: &'static str,
}

impl Choice {
    /// The configured value, or the default.
    pub fn get(&self, config: &ModelConfig) -> Result<&'static str, ModelError> {
        config
            .value(self.name)
            .map_or(Ok(self.default), |value| self.parse(value))
    }

    fn parse(&self, value: &Value) -> Result<&'static str, ModelError> {
        let given = value.as_str();
        self.values
            .iter()
            .copied()
            .find(|v| Some(*v) == given)
            .ok_or_else(|| bad_value(self.name, value, format!("one of {}", self.values.join(", "))))
    }
}

impl ConfigKey for Choice {
    fn name(&self) -> &'static str {
        self.name
    }

    fn check(&self, value: &Value) -> Result<(), ModelError> {
        self.parse(value).map(drop)
    }

    fn describe(&self) -> String {
        format!("{}: {} (default {})", self.name, self.values.join("|"), self.default)
    }
}

/// A key taking a probability in [0, 1) (dropout, drop path).
pub struct Rate {
    pub name: &'static str,
    pub default: f64,
}

impl Rate {
    /// The configured value, or the default.
    pub fn get(&self, config: &ModelConfig) -> Result<f64, ModelError> {
        config
            .value(self.name)
            .map_or(Ok(self.default), |value| self.parse(value))
    }

    fn parse(&self, value: &Value) -> Result<f64, ModelError> {
        match value.as_f64() {
            Some(rate) if (0.0..1.0).contains(&rate) => Ok(rate),
            _ => Err(bad_value(self.name, value, "a number in [0, 1)".to_owned())),
        }
    }
}

impl ConfigKey for Rate {
    fn name(&self) -> &'static str {
        self.name
    }

    fn check(&self, value: &Value) -> Result<(), ModelError> {
        self.parse(value).map(drop)
    }

    fn describe(&self) -> String {
        format!("{}: number in [0, 1) (default {})", self.name, self.default)
    }
}

/// A key taking a whole number in `min..=max` (layer counts and widths).
pub struct Count {
    pub name: &'static str,
    pub default: usize,
    pub min: usize,
    pub max: usize,
}

impl Count {
    /// The configured value, or the default.
    pub fn get(&self, config: &ModelConfig) -> Result<usize, ModelError> {
        config
            .value(self.name)
            .map_or(Ok(self.default), |value| self.parse(value))
    }

    fn parse(&self, value: &Value) -> Result<usize, ModelError> {
        match value.as_u64() {
            Some(n) if (self.min as u64..=self.max as u64).contains(&n) => Ok(n as usize),
            _ => Err(bad_value(
                self.name,
                value,
                format!("a whole number from {} to {}", self.min, self.max),
            )),
        }
    }
}

impl ConfigKey for Count {
    fn name(&self) -> &'static str {
        self.name
    }

    fn check(&self, value: &Value) -> Result<(), ModelError> {
        self.parse(value).map(drop)
    }

    fn describe(&self) -> String {
        format!(
            "{}: whole number {}..{} (default {})",
            self.name, self.min, self.max, self.default
        )
    }
}

/// A key naming a file.
pub struct File {
    pub name: &'static str,
}

impl File {
    /// The configured path, if any.
    pub fn get(&self, config: &ModelConfig) -> Result<Option<PathBuf>, ModelError> {
        config.value(self.name).map(|value| self.parse(value)).transpose()
    }

    fn parse(&self, value: &Value) -> Result<PathBuf, ModelError> {
        match value {
            Value::String(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Err(bad_value(self.name, value, "a file name".to_owned())),
        }
    }
}

impl ConfigKey for File {
    fn name(&self) -> &'static str {
        self.name
    }

    fn check(&self, value: &Value) -> Result<(), ModelError> {
        self.parse(value).map(drop)
    }

    fn describe(&self) -> String {
        format!(
            "{}: FILE.safetensors (a state dict loaded after initialisation)",
            self.name
        )
    }
}

/// The key every model takes: a safetensors state dict to load after initialisation.
pub const WEIGHTS: File = File { name: "weights" };

#[cfg(test)]
mod tests {
    use super::*;
    use crate::find;

    fn config(json: &str) -> ModelConfig {
        ModelConfig::new(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn unknown_keys_list_the_valid_ones() {
        let message = config(r#"{"depth": 3}"#)
            .check(find("convnext").unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "model-config: unknown key 'depth' for convnext; valid keys: variant, drop_rate, drop_path_rate, weights"
        );
        let message = config(r#"{"variant": "s"}"#)
            .check(find("mnistnet").unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "model-config: unknown key 'variant' for mnistnet; valid keys: weights"
        );
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let entry = find("efficientnetv2").unwrap();
        let message = config(r#"{"variant": "xl"}"#).check(entry).unwrap_err().to_string();
        assert_eq!(
            message,
            r#"model-config: bad value "xl" for 'variant' (expected one of s, m, l)"#
        );
        let message = config(r#"{"drop_path_rate": 1.5}"#)
            .check(entry)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "model-config: bad value 1.5 for 'drop_path_rate' (expected a number in [0, 1))"
        );
        let message = config(r#"{"weights": 3}"#).check(entry).unwrap_err().to_string();
        assert_eq!(
            message,
            "model-config: bad value 3 for 'weights' (expected a file name)"
        );
    }

    #[test]
    fn values_and_defaults_are_read_through_the_keys() {
        const VARIANT: Choice = Choice {
            name: "variant",
            values: &["a", "b"],
            default: "a",
        };
        const RATE: Rate = Rate {
            name: "rate",
            default: 0.5,
        };
        let given = config(r#"{"variant": "b", "rate": 0, "weights": "w.safetensors"}"#);
        assert_eq!(VARIANT.get(&given).unwrap(), "b");
        assert_eq!(RATE.get(&given).unwrap(), 0.0);
        assert_eq!(WEIGHTS.get(&given).unwrap(), Some(PathBuf::from("w.safetensors")));
        let empty = ModelConfig::default();
        assert_eq!(VARIANT.get(&empty).unwrap(), "a");
        assert_eq!(RATE.get(&empty).unwrap(), 0.5);
        assert_eq!(WEIGHTS.get(&empty).unwrap(), None);
        assert_eq!(RATE.describe(), "rate: number in [0, 1) (default 0.5)");
    }
}
