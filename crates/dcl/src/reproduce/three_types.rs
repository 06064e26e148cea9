//! `dcl reproduce three-types`: van de Ven, Tuytelaars & Tolias (2022), "Three types of
//! incremental learning" (Nature Machine Intelligence 4, 1185-1197), their Split-MNIST protocol
//! for every method dcl has (and GDumb, which the paper does not run): 5 contexts of 2 digits; an MLP of two hidden layers of 400 units;
//! Adam at a learning rate of 1e-3; batches of 128; 2,000 iterations per context (21 epochs of
//! its 12,000 images); a budget of 100 stored samples per class; the regularisation strengths
//! of their code (`param_values.py`) per scenario. The table: final average accuracies (mean ±
//! standard deviation over the seeds) per method and scenario.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{dataset_title, final_accuracy, prepare, run_jobs, select, slug, write_tables, Job, QUICK_SAMPLES};
use crate::cli::{ComparisonArgs, ThreeTypesArgs};
use crate::stats::mean_std;

/// One method of the comparison.
struct Method {
    /// Its name in the table (and `--methods`).
    name: &'static str,
    agent: &'static str,
    /// Its `--agent-config` in each scenario.
    config: fn(Scenario) -> String,
    /// Train each context on the data of every context so far (the upper target).
    joint: bool,
}

/// The scenarios of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Task,
    /// Each context's two digits labelled 0 and 1 (first or second), one head of two outputs.
    Domain,
    Class,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Task => "task",
            Scenario::Domain => "domain",
            Scenario::Class => "class",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::Task => "Task-IL",
            Scenario::Domain => "Domain-IL",
            Scenario::Class => "Class-IL",
        }
    }

    /// Its `--tasksets-config`.
    fn tasksets(self, joint: bool) -> String {
        let split = match self {
            Scenario::Domain => "'scenario': 'domain', 'increment': 2".to_owned(),
            _ => format!("'scenario': '{}', 'initial_increment': 2, 'increment': 2", self.name()),
        };
        let joint = if joint { ", 'concatenate_tasksets': True" } else { "" };
        format!("{{{split}{joint}}}")
    }
}

/// Replay with the paper's budget: 100 samples per class, 128 replayed per step.
fn replay(_: Scenario) -> String {
    "{'rehearsal_size': 100, 'num_representatives': 128}".to_owned()
}

const METHODS: &[Method] = &[
    Method {
        name: "None",
        agent: "base",
        config: |_| "{}".to_owned(),
        joint: false,
    },
    Method {
        name: "Joint",
        agent: "base",
        config: |_| "{}".to_owned(),
        joint: true,
    },
    Method {
        name: "EWC",
        agent: "ewc",
        config: |s| match s {
            Scenario::Task => "{'lambda': 1e5}".to_owned(),
            Scenario::Domain => "{'lambda': 1e10}".to_owned(),
            Scenario::Class => "{'lambda': 1e9}".to_owned(),
        },
        joint: false,
    },
    Method {
        name: "SI",
        agent: "si",
        config: |s| match s {
            Scenario::Task => "{'c': 10}".to_owned(),
            Scenario::Domain => "{'c': 50000}".to_owned(),
            Scenario::Class => "{'c': 5000}".to_owned(),
        },
        joint: false,
    },
    Method {
        name: "LwF",
        agent: "lwf",
        config: |_| "{}".to_owned(),
        joint: false,
    },
    Method {
        name: "ER",
        agent: "er",
        config: replay,
        joint: false,
    },
    Method {
        name: "A-GEM",
        agent: "agem",
        config: replay,
        joint: false,
    },
    Method {
        name: "DER++",
        agent: "derpp",
        config: replay,
        joint: false,
    },
    Method {
        name: "iCaRL",
        agent: "icarl",
        config: replay,
        joint: false,
    },
    Method {
        name: "GDumb",
        agent: "gdumb",
        config: |_| "{'rehearsal_size': 100}".to_owned(),
        joint: false,
    },
];

/// Runs the comparison and writes its table.
pub fn run(args: ThreeTypesArgs) -> Result<()> {
    let scenarios: Vec<Scenario> = match args.scenario.as_str() {
        "task" => vec![Scenario::Task],
        "domain" => vec![Scenario::Domain],
        "class" => vec![Scenario::Class],
        "all" => vec![Scenario::Task, Scenario::Domain, Scenario::Class],
        other => bail!("--scenario: '{other}' is not one of task, domain, class, all"),
    };
    let common = &args.comparison;
    let methods = select(METHODS, &common.methods, |m| m.name)?;
    let root = prepare(common, "results/three-types")?;
    let mut jobs = Vec::new();
    for method in &methods {
        for &scenario in &scenarios {
            jobs.extend((0..common.seeds).map(|seed| job(common, &root, method, scenario, seed)));
        }
    }
    let summaries = run_jobs(&jobs, common, common.threads.unwrap_or(2))?;
    let mut accuracies = jobs
        .iter()
        .zip(&summaries)
        .map(|(job, summary)| final_accuracy(summary, false, &job.label));
    let mut rows = Vec::new();
    for method in &methods {
        let mut cells = Vec::new();
        for &scenario in &scenarios {
            let values = accuracies.by_ref().take(common.seeds).collect::<Result<Vec<f64>>>()?;
            cells.push((scenario, values));
        }
        rows.push((method.name, cells));
    }
    let (markdown, csv) = table(common, &scenarios, &rows);
    write_tables(&root, "three-types", &markdown, &csv)
}

/// The results directory of one run.
fn run_dir(root: &Path, method: &Method, scenario: Scenario, seed: usize) -> PathBuf {
    root.join(format!("{}-{}-seed{seed}", scenario.name(), slug(method.name)))
}

/// The `dcl train` of `method` in `scenario` with `seed`.
fn job(args: &ComparisonArgs, root: &Path, method: &Method, scenario: Scenario, seed: usize) -> Job {
    let epochs = if args.quick { "1" } else { "21" };
    let mut flags: Vec<String> = [
        "--model",
        "mlp",
        "--model-config",
        "{'layers': 2, 'units': 400}",
        "--dataset",
        &args.dataset,
        "--epochs",
        epochs,
        "--batch-size",
        "128",
        "--optimizer-regime",
        "[{'epoch': 0, 'optimizer': 'Adam', 'lr': 0.001}]",
        "--seed",
        &seed.to_string(),
        "--agent",
        method.agent,
        "--agent-config",
        &(method.config)(scenario),
        "--tasksets-config",
        &scenario.tasksets(method.joint),
    ]
    .map(str::to_owned)
    .to_vec();
    if args.quick {
        flags.extend(QUICK_SAMPLES.map(str::to_owned));
    }
    Job {
        label: format!("{} {} seed {seed}", method.name, scenario.title()),
        dir: run_dir(root, method, scenario, seed),
        flags,
    }
}

type Rows<'a> = Vec<(&'a str, Vec<(Scenario, Vec<f64>)>)>;

/// The markdown and CSV tables of `rows`.
fn table(args: &ComparisonArgs, scenarios: &[Scenario], rows: &Rows) -> (String, String) {
    let mut md = String::new();
    let protocol = if args.quick {
        "quick variant: 1 epoch per context on the first 3,000 training and 1,000 test images"
    } else {
        "21 epochs (about 2,000 iterations of 128) per context"
    };
    let _ = writeln!(
        md,
        "Split-{} (5 contexts of 2 classes), final average accuracy (%), mean ± std over {} seed(s); {protocol}.\n",
        dataset_title(&args.dataset),
        args.seeds
    );
    let titles: Vec<&str> = scenarios.iter().map(|s| s.title()).collect();
    let _ = writeln!(md, "| Method | {} |", titles.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(scenarios.len()));
    let mut csv = String::from("method,scenario,seeds,mean,std,accuracies\n");
    for (method, cells) in rows {
        let mut shown = Vec::new();
        for (scenario, values) in cells {
            let (mean, std) = mean_std(values).expect("every method runs at least one seed");
            shown.push(format!("{mean:.2} ± {std:.2}"));
            let list: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
            let _ = writeln!(
                csv,
                "{method},{},{},{mean:.4},{std:.4},{}",
                scenario.name(),
                values.len(),
                list.join(" ")
            );
        }
        let _ = writeln!(md, "| {method} | {} |", shown.join(" | "));
    }
    (md, csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_directories_name_the_scenario_method_and_seed() {
        let der = METHODS.iter().find(|m| m.name == "DER++").unwrap();
        assert_eq!(
            run_dir(Path::new("r"), der, Scenario::Class, 3),
            Path::new("r/class-derpp-seed3")
        );
    }
}
