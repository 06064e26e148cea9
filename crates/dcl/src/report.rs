//! The end-of-run report printed to the terminal.

use std::path::Path;

use dcl_train::{Figures, Summary};

/// The configuration name of a unit enum value (`class_balanced`, …).
fn name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn optional(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// Prints an accuracy matrix with its task averages.
fn print_matrix(title: &str, figures: &Figures) {
    let n = figures.accuracy_matrix.len();
    println!("{title} (top-1 %, row = after training task, column = test task)");
    let mut header = format!("{:>9}", "");
    for j in 0..n {
        header.push_str(&format!("{:>9}", format!("task {}", j + 1)));
    }
    println!("{header}{:>9}", "mean");
    for (i, row) in figures.accuracy_matrix.iter().enumerate() {
        let mut line = format!("{:>9}", format!("task {}", i + 1));
        for cell in row {
            line.push_str(&format!("{:>9}", optional(*cell)));
        }
        println!("{line}{:>9.2}", figures.task_averages[i]);
    }
}

fn print_figures(prefix: &str, figures: &Figures) {
    println!(
        "{:<32}{} %",
        format!("{prefix}final average accuracy"),
        optional(figures.final_average_accuracy)
    );
    if figures.forgetting.is_some() {
        println!(
            "{:<32}{} points",
            format!("{prefix}forgetting"),
            optional(figures.forgetting)
        );
        println!(
            "{:<32}{} points",
            format!("{prefix}backward transfer"),
            optional(figures.bwt)
        );
    }
}

/// Prints the accuracy matrix and the headline figures of a run.
pub fn print_summary(summary: &Summary, run_dir: &Path) {
    println!();
    print_matrix("Accuracy matrix", &summary.figures);
    if let Some(task_il) = &summary.task_il {
        println!();
        print_matrix(
            "Task-incremental accuracy matrix (logits restricted to each task's classes)",
            task_il,
        );
    }
    println!();
    print_figures("", &summary.figures);
    if let Some(task_il) = &summary.task_il {
        print_figures("task-IL ", task_il);
    }
    if let Some(rehearsal) = &summary.rehearsal {
        let counts = &rehearsal.final_class_counts;
        println!(
            "{:<32}{} of {} slots (policy {}, {} pipeline, {} representatives/step, replay {})",
            "rehearsal buffer",
            counts.iter().sum::<usize>(),
            rehearsal.capacity,
            name(&rehearsal.config.policy),
            name(&rehearsal.config.mode),
            rehearsal.config.num_representatives,
            name(&rehearsal.config.replay)
        );
        let stages: Vec<String> = rehearsal
            .timing_ms_per_step
            .iter()
            .map(|(k, v)| format!("{k} {v:.3}"))
            .collect();
        println!("{:<32}{} (ms/step)", "rehearsal pipeline", stages.join(", "));
    }
    println!("{:<32}{:.0}", "training images/s", summary.train_images_per_second);
    println!(
        "{:<32}{:.1} s (training {:.1} s)",
        "wall time", summary.wall_time_seconds, summary.train_time_seconds
    );
    println!("{:<32}{}", "results", run_dir.display());
}
