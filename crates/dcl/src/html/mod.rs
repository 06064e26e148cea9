//! `dcl report RUN_DIR... [-o DIR]`: one static HTML page comparing runs side by side (no
//! server, no network, no script: everything inline), and every plot as SVG and PNG files.
//!
//! Runs whose configurations differ only in the seed (and their results directory) form one
//! group, shown as mean ± standard deviation over its runs. Per group: the accuracy matrix as a
//! heat map, the accuracy of each task across training, the throughput per epoch, the rehearsal
//! timing breakdown; for all groups: final average accuracy, forgetting and backward transfer,
//! the configuration keys in which they differ, and the status of every run.

mod plots;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::cli::ReportArgs;
use crate::stats::mean_std;

/// One run: its directory, configuration and summary.
struct Run {
    dir: PathBuf,
    config: Value,
    summary: Value,
}

/// Runs of one configuration (but their seeds).
struct Group {
    label: String,
    config: Value,
    runs: Vec<Run>,
}

/// Configuration keys that differ between runs of one group by nature.
const PER_RUN: [&str; 3] = ["seed", "results_dir", "dataset_dir"];

/// Writes the report of `args.runs` into `args.output`.
pub fn run(args: ReportArgs) -> Result<()> {
    if args.runs.is_empty() {
        bail!("give the results directories of the runs to report");
    }
    let runs = args.runs.iter().map(|dir| load(dir)).collect::<Result<Vec<Run>>>()?;
    let groups = group(runs);
    let rasteriser = plots::Rasteriser::new();
    let plots_dir = args.output.join("plots");
    std::fs::create_dir_all(&plots_dir).with_context(|| format!("cannot create {}", plots_dir.display()))?;
    let mut page = String::new();
    page.push_str(HEAD);
    let _ = writeln!(
        page,
        "<h1>dcl report: {} run(s) in {} group(s)</h1>",
        groups.iter().map(|g| g.runs.len()).sum::<usize>(),
        groups.len()
    );
    page.push_str(&figures_table(&groups));
    page.push_str(&differences_table(&groups));
    page.push_str(&runs_table(&groups));
    for (g, group) in groups.iter().enumerate() {
        let _ = writeln!(page, "<section><h2>{}</h2><div class=\"plots\">", escape(&group.label));
        let charts = [
            (
                "matrix",
                plots::heat_map(&mean_matrix(group), "accuracy matrix (top-1 %)")?,
            ),
            (
                "tasks",
                plots::task_curves(
                    &mean_task_curves(group),
                    "accuracy of each task across training (top-1 %)",
                )?,
            ),
            (
                "throughput",
                plots::line(&mean_series(group, "images_per_second"), "training images/s per epoch")?,
            ),
        ];
        for (name, svg) in charts.iter().chain(timing_chart(group)?.iter()) {
            let file = plots_dir.join(format!("group{}-{name}.svg", g + 1));
            std::fs::write(&file, svg).with_context(|| format!("cannot write {}", file.display()))?;
            let png = file.with_extension("png");
            std::fs::write(&png, rasteriser.png(svg)?).with_context(|| format!("cannot write {}", png.display()))?;
            let _ = writeln!(page, "<figure>{svg}</figure>");
        }
        page.push_str("</div></section>\n");
    }
    page.push_str("</body></html>\n");
    let index = args.output.join("index.html");
    std::fs::write(&index, page).with_context(|| format!("cannot write {}", index.display()))?;
    println!("report: {}", index.display());
    Ok(())
}

/// Reads a run's configuration and summary.
fn load(dir: &Path) -> Result<Run> {
    let read = |name: &str| -> Result<Value> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: not a dcl run ({name} missing)", dir.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
    };
    Ok(Run {
        dir: dir.to_owned(),
        config: read("config.json")?,
        summary: read("summary.json")?,
    })
}

/// The configuration without the keys that differ per run.
fn shared_config(config: &Value) -> Value {
    let mut shared = config.clone();
    if let Some(map) = shared.as_object_mut() {
        for key in PER_RUN {
            map.remove(key);
        }
    }
    shared
}

/// Groups runs by configuration, in the order given.
fn group(runs: Vec<Run>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for run in runs {
        let config = shared_config(&run.config);
        match groups.iter_mut().find(|g| g.config == config) {
            Some(group) => group.runs.push(run),
            None => groups.push(Group {
                label: String::new(),
                config,
                runs: vec![run],
            }),
        }
    }
    let differing = differing_keys(&groups);
    for group in &mut groups {
        let mut label = format!(
            "{} · {} · {}",
            text(&group.config["agent"]["name"]),
            text(&group.config["model"]),
            text(&group.config["dataset"])
        );
        for key in &differing {
            if !["agent", "model", "dataset"].contains(&key.as_str()) {
                let _ = write!(label, " · {key} {}", compact(&group.config[key.as_str()]));
            }
        }
        group.label = label;
    }
    groups
}

/// The top-level configuration keys whose values differ between groups.
fn differing_keys(groups: &[Group]) -> Vec<String> {
    let mut keys: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for group in groups {
        if let Some(map) = group.config.as_object() {
            for (key, value) in map {
                keys.entry(key.clone()).or_default().push(value);
            }
        }
    }
    keys.into_iter()
        .filter(|(_, values)| values.len() != groups.len() || values.windows(2).any(|w| w[0] != w[1]))
        .map(|(key, _)| key)
        .collect()
}

fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| compact(value), str::to_owned)
}

fn compact(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 60 {
        format!(
            "{}…",
            &text[..text.char_indices().nth(59).map_or(text.len(), |(i, _)| i)]
        )
    } else {
        text
    }
}

fn cell(values: &[f64]) -> String {
    match mean_std(values) {
        None => "–".into(),
        Some((mean, _)) if values.len() == 1 => format!("{mean:.2}"),
        Some((mean, std)) => format!("{mean:.2} ± {std:.2}"),
    }
}

fn numbers(group: &Group, key: &str) -> Vec<f64> {
    group.runs.iter().filter_map(|r| r.summary[key].as_f64()).collect()
}

/// Final figures per group.
fn figures_table(groups: &[Group]) -> String {
    let mut html = String::from("<h2>Final figures</h2><table><tr><th>group</th><th>runs</th><th>final average accuracy (%)</th><th>forgetting (points)</th><th>backward transfer</th><th>training images/s</th></tr>\n");
    for group in groups {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&group.label),
            group.runs.len(),
            cell(&numbers(group, "final_average_accuracy")),
            cell(&numbers(group, "forgetting")),
            cell(&numbers(group, "bwt")),
            cell(&numbers(group, "train_images_per_second")),
        );
    }
    html.push_str("</table>\n");
    html
}

/// The configuration keys in which groups differ, the differing values highlighted.
fn differences_table(groups: &[Group]) -> String {
    let keys = differing_keys(groups);
    if groups.len() < 2 || keys.is_empty() {
        return "<p>One configuration.</p>\n".into();
    }
    let mut html = String::from("<h2>Configuration differences</h2><table><tr><th>key</th>");
    for group in groups {
        let _ = write!(html, "<th>{}</th>", escape(&group.label));
    }
    html.push_str("</tr>\n");
    for key in keys {
        let _ = write!(html, "<tr><td>{}</td>", escape(&key));
        for group in groups {
            let _ = write!(
                html,
                "<td class=\"diff\">{}</td>",
                escape(&compact(&group.config[key.as_str()]))
            );
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    html
}

/// Every run, its status (complete, running, interrupted, failed) and directory.
fn runs_table(groups: &[Group]) -> String {
    let mut html = String::from("<h2>Runs</h2><table><tr><th>group</th><th>seed</th><th>status</th><th>completed tasks</th><th>directory</th></tr>\n");
    for group in groups {
        for run in &group.runs {
            let status = text(&run.summary["status"]);
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td class=\"status-{}\">{}</td><td>{} of {}</td><td>{}</td></tr>",
                escape(&group.label),
                compact(&run.config["seed"]),
                escape(&status),
                escape(&status),
                compact(&run.summary["completed_tasks"]),
                compact(&run.summary["num_tasks"]),
                escape(&run.dir.display().to_string()),
            );
        }
    }
    html.push_str("</table>\n");
    html
}

/// The group's accuracy matrix, each cell the mean over its runs.
fn mean_matrix(group: &Group) -> Vec<Vec<Option<f64>>> {
    let matrices: Vec<&Vec<Value>> = group
        .runs
        .iter()
        .filter_map(|r| r.summary["accuracy_matrix"].as_array())
        .collect();
    let rows = matrices.iter().map(|m| m.len()).max().unwrap_or(0);
    (0..rows)
        .map(|i| {
            let cols = matrices
                .iter()
                .filter_map(|m| m.get(i)?.as_array().map(Vec::len))
                .max()
                .unwrap_or(0);
            (0..cols)
                .map(|j| {
                    let values: Vec<f64> = matrices.iter().filter_map(|m| m.get(i)?.get(j)?.as_f64()).collect();
                    mean_std(&values).map(|(mean, _)| mean)
                })
                .collect()
        })
        .collect()
}

/// Per task: its test top-1 after every epoch from the one it is first trained in (mean over
/// runs), against the run's epoch count.
fn mean_task_curves(group: &Group) -> Vec<Vec<(f64, f64)>> {
    let mut sums: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    for run in &group.runs {
        for (e, epoch) in run.summary["epochs"].as_array().into_iter().flatten().enumerate() {
            for eval in epoch["eval"].as_array().into_iter().flatten() {
                if let (Some(task), Some(top1)) = (eval["task"].as_u64(), eval["top1"].as_f64()) {
                    sums.entry((task as usize, e)).or_default().push(top1);
                }
            }
        }
    }
    let tasks = sums.keys().map(|(t, _)| t + 1).max().unwrap_or(0);
    (0..tasks)
        .map(|t| {
            sums.iter()
                .filter(|((task, _), _)| *task == t)
                .map(|((_, e), values)| ((e + 1) as f64, mean_std(values).map_or(0.0, |(m, _)| m)))
                .collect()
        })
        .collect()
}

/// A per-epoch figure of the group's runs (mean over runs), against the epoch count.
fn mean_series(group: &Group, key: &str) -> Vec<(f64, f64)> {
    let mut sums: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for run in &group.runs {
        for (e, epoch) in run.summary["epochs"].as_array().into_iter().flatten().enumerate() {
            if let Some(value) = epoch[key].as_f64() {
                sums.entry(e).or_default().push(value);
            }
        }
    }
    sums.into_iter()
        .map(|(e, v)| ((e + 1) as f64, mean_std(&v).map_or(0.0, |(m, _)| m)))
        .collect()
}

/// The rehearsal timing breakdown (ms per step, mean over runs), when the runs rehearse.
fn timing_chart(group: &Group) -> Result<Option<(&'static str, String)>> {
    let mut stages: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in &group.runs {
        if let Some(map) = run.summary["rehearsal"]["timing_ms_per_step"].as_object() {
            for (stage, ms) in map {
                if let Some(ms) = ms.as_f64() {
                    stages.entry(stage.clone()).or_default().push(ms);
                }
            }
        }
    }
    if stages.is_empty() {
        return Ok(None);
    }
    let bars: Vec<(String, f64)> = stages
        .into_iter()
        .map(|(s, v)| (s, mean_std(&v).map_or(0.0, |(m, _)| m)))
        .collect();
    Ok(Some((
        "rehearsal",
        plots::bars(&bars, "rehearsal pipeline: ms per step by stage")?,
    )))
}

/// `text` with the HTML special characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const HEAD: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dcl report</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; font-size: 0.9em; }
th { background: #f3f3f3; }
td.diff { background: #fff4c2; }
td.status-complete { color: #176a2c; } td.status-interrupted, td.status-running { color: #9a6700; } td.status-failed { color: #b00020; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; }
</style></head><body>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, agent: &str, accuracy: f64) -> Run {
        Run {
            dir: PathBuf::from(format!("r/{agent}{seed}")),
            config: serde_json::json!({"seed": seed, "results_dir": format!("r/{agent}{seed}"), "agent": {"name": agent}, "model": "mlp", "dataset": "mnist"}),
            summary: serde_json::json!({"status": "complete", "final_average_accuracy": accuracy, "accuracy_matrix": [[accuracy]], "epochs": []}),
        }
    }

    #[test]
    fn runs_that_differ_only_in_the_seed_form_one_group() {
        let groups = group(vec![run(0, "er", 80.0), run(1, "er", 90.0), run(0, "base", 20.0)]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].runs.len(), 2);
        assert_eq!(differing_keys(&groups), vec!["agent".to_owned()]);
        assert_eq!(cell(&numbers(&groups[0], "final_average_accuracy")), "85.00 ± 7.07");
        assert_eq!(mean_matrix(&groups[0]), vec![vec![Some(85.0)]]);
        assert!(groups[1].label.starts_with("base · mlp · mnist"));
        assert_eq!(escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
