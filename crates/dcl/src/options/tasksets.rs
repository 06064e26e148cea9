//! Upstream's `--tasksets-config` dict, read into a typed scenario.

use anyhow::{bail, Result};
use dcl_data::{ClassOrder, ScenarioSpec, TaskIdentity};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::typed;

/// The keys `--tasksets-config` accepts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TasksetsConfig {
    scenario: Option<String>,
    initial_increment: Option<usize>,
    increment: Option<usize>,
    num_tasks: Option<usize>,
    class_order: Option<Vec<usize>>,
    angles: Option<Vec<f64>>,
    #[serde(default)]
    shuffle_classes: bool,
    #[serde(default)]
    concatenate_tasksets: bool,
}

/// The scenario names `'scenario'` accepts.
const SCENARIOS: &str = "'class', 'task', 'domain', 'permuted', 'rotated'";

/// Reads the dict into a scenario and the `concatenate_tasksets` flag.
pub fn parse(map: &Map<String, Value>) -> Result<(ScenarioSpec, bool)> {
    let config: TasksetsConfig = typed(map, "--tasksets-config")?;
    let given = |key: &str, present: bool| present.then(|| key.to_owned());
    let keys: Vec<String> = [
        given("initial_increment", config.initial_increment.is_some()),
        given("increment", config.increment.is_some()),
        given("num_tasks", config.num_tasks.is_some()),
        given("class_order", config.class_order.is_some()),
        given("angles", config.angles.is_some()),
        given("shuffle_classes", config.shuffle_classes),
    ]
    .into_iter()
    .flatten()
    .collect();
    let refuse_others = |scenario: &str, allowed: &[&str]| -> Result<()> {
        if let Some(key) = keys.iter().find(|k| !allowed.contains(&k.as_str())) {
            bail!("--tasksets-config: '{key}' does not apply to scenario '{scenario}'");
        }
        Ok(())
    };
    let spec = match config.scenario.as_deref() {
        None => {
            if let Some(key) = keys.first() {
                bail!("--tasksets-config: '{key}' needs a 'scenario' ({SCENARIOS})");
            }
            ScenarioSpec::Single
        }
        Some(scenario @ ("class" | "task")) => {
            refuse_others(
                scenario,
                &["initial_increment", "increment", "class_order", "shuffle_classes"],
            )?;
            let Some(increment) = config.increment else {
                bail!("--tasksets-config: scenario '{scenario}' needs 'increment'");
            };
            let class_order = class_order(config.class_order, config.shuffle_classes)?;
            ScenarioSpec::Classes {
                // continuum's convention: no (or 0) initial increment means `increment`.
                initial_increment: config.initial_increment.filter(|&i| i > 0).unwrap_or(increment),
                increment,
                class_order,
                task_identity: if scenario == "task" {
                    TaskIdentity::Known
                } else {
                    TaskIdentity::Unknown
                },
            }
        }
        Some("domain") => match (config.num_tasks, config.increment) {
            (Some(_), Some(_)) => bail!(
                "--tasksets-config: scenario 'domain' takes 'num_tasks' (random parts of all classes) or 'increment' (tasks of classes, relabelled within each), not both"
            ),
            (Some(num_tasks), None) => {
                refuse_others("domain", &["num_tasks"])?;
                ScenarioSpec::Instances { num_tasks }
            }
            (None, Some(increment)) => {
                refuse_others("domain", &["increment", "class_order", "shuffle_classes"])?;
                ScenarioSpec::DomainSplit {
                    increment,
                    class_order: class_order(config.class_order, config.shuffle_classes)?,
                }
            }
            (None, None) => bail!("--tasksets-config: scenario 'domain' needs 'num_tasks' or 'increment'"),
        },
        Some("permuted") => {
            refuse_others("permuted", &["num_tasks"])?;
            let Some(num_tasks) = config.num_tasks else {
                bail!("--tasksets-config: scenario 'permuted' needs 'num_tasks'");
            };
            ScenarioSpec::Permuted { num_tasks }
        }
        Some("rotated") => {
            refuse_others("rotated", &["num_tasks", "angles"])?;
            let angles = match (config.angles, config.num_tasks) {
                (Some(_), Some(_)) => bail!("--tasksets-config: give either 'angles' or 'num_tasks', not both"),
                (Some(angles), None) => angles,
                // Evenly spread over a half turn: 0, 180/n, 2·180/n, …
                (None, Some(n)) => (0..n).map(|t| t as f64 * 180.0 / n as f64).collect(),
                (None, None) => bail!("--tasksets-config: scenario 'rotated' needs 'num_tasks' or 'angles'"),
            };
            if let Some(angle) = angles.iter().find(|a| !a.is_finite()) {
                bail!("--tasksets-config: angle {angle} is not a number of degrees");
            }
            ScenarioSpec::Rotated { angles }
        }
        Some(other) => bail!("--tasksets-config: unknown scenario '{other}'; valid scenarios: {SCENARIOS}"),
    };
    Ok((spec, config.concatenate_tasksets))
}

/// The class order of a class split: given, shuffled with the seed, or natural.
fn class_order(given: Option<Vec<usize>>, shuffle: bool) -> Result<ClassOrder> {
    Ok(match (given, shuffle) {
        (Some(_), true) => bail!("--tasksets-config: give either 'class_order' or 'shuffle_classes', not both"),
        (Some(order), false) => ClassOrder::Given(order),
        (None, true) => ClassOrder::Shuffled,
        (None, false) => ClassOrder::Natural,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::literal::parse_dict;

    fn read(text: &str) -> Result<(ScenarioSpec, bool)> {
        parse(&parse_dict(text).unwrap())
    }

    fn error(text: &str) -> String {
        read(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_the_upstream_scenarios() {
        assert_eq!(read("{}").unwrap(), (ScenarioSpec::Single, false));
        assert_eq!(
            read("{'scenario': 'class', 'initial_increment': 4, 'increment': 3}")
                .unwrap()
                .0,
            ScenarioSpec::Classes {
                initial_increment: 4,
                increment: 3,
                class_order: ClassOrder::Natural,
                task_identity: TaskIdentity::Unknown
            }
        );
        assert_eq!(
            read("{'scenario': 'domain', 'num_tasks': 5, 'concatenate_tasksets': True}").unwrap(),
            (ScenarioSpec::Instances { num_tasks: 5 }, true)
        );
        assert_eq!(
            read("{'scenario': 'domain', 'increment': 2}").unwrap(),
            (
                ScenarioSpec::DomainSplit {
                    increment: 2,
                    class_order: ClassOrder::Natural
                },
                false
            )
        );
        assert_eq!(
            read("{'concatenate_tasksets': True}").unwrap(),
            (ScenarioSpec::Single, true)
        );
    }

    #[test]
    fn reads_dcl_extensions() {
        let ScenarioSpec::Classes {
            initial_increment,
            class_order,
            task_identity,
            ..
        } = read("{'scenario': 'task', 'increment': 2, 'class_order': [1, 0, 2, 3, 4, 5, 6, 7, 8, 9]}")
            .unwrap()
            .0
        else {
            panic!("not a class split")
        };
        assert_eq!((initial_increment, task_identity), (2, TaskIdentity::Known));
        assert_eq!(class_order, ClassOrder::Given(vec![1, 0, 2, 3, 4, 5, 6, 7, 8, 9]));
        assert_eq!(
            read("{'scenario': 'permuted', 'num_tasks': 3}").unwrap().0,
            ScenarioSpec::Permuted { num_tasks: 3 }
        );
        assert_eq!(
            read("{'scenario': 'rotated', 'num_tasks': 4}").unwrap().0,
            ScenarioSpec::Rotated {
                angles: vec![0.0, 45.0, 90.0, 135.0]
            }
        );
        assert_eq!(
            read("{'scenario': 'rotated', 'angles': [0, 30]}").unwrap().0,
            ScenarioSpec::Rotated {
                angles: vec![0.0, 30.0]
            }
        );
        assert!(error("{'scenario': 'rotated'}").contains("needs 'num_tasks' or 'angles'"));
        let shuffled = read("{'scenario': 'class', 'increment': 5, 'shuffle_classes': True}")
            .unwrap()
            .0;
        assert!(matches!(
            shuffled,
            ScenarioSpec::Classes {
                class_order: ClassOrder::Shuffled,
                ..
            }
        ));
    }

    #[test]
    fn impossible_configurations_name_the_key_and_why() {
        assert_eq!(
            error("{'scenario': 'class', 'increment': 2, 'num_task': 5}")
                .split(", expected")
                .next()
                .unwrap(),
            "--tasksets-config: unknown field `num_task`"
        );
        assert_eq!(
            error("{'scenario': 'class', 'num_tasks': 5}"),
            "--tasksets-config: 'num_tasks' does not apply to scenario 'class'"
        );
        assert_eq!(
            error("{'scenario': 'class'}"),
            "--tasksets-config: scenario 'class' needs 'increment'"
        );
        assert_eq!(
            error("{'scenario': 'domain'}"),
            "--tasksets-config: scenario 'domain' needs 'num_tasks' or 'increment'"
        );
        assert!(error("{'scenario': 'domain', 'num_tasks': 5, 'increment': 2}").contains("not both"));
        assert_eq!(
            error("{'increment': 2}"),
            "--tasksets-config: 'increment' needs a 'scenario' ('class', 'task', 'domain', 'permuted', 'rotated')"
        );
        assert!(error("{'scenario': 'instance'}").contains("unknown scenario 'instance'"));
        assert_eq!(
            error("{'scenario': 'class', 'increment': 'two'}"),
            "--tasksets-config: 'increment': invalid type: string \"two\", expected a whole number >= 0"
        );
        assert_eq!(
            error("{'scenario': 'domain', 'num_tasks': -1}"),
            "--tasksets-config: 'num_tasks': invalid value: integer `-1`, expected a whole number >= 0"
        );
    }
}
