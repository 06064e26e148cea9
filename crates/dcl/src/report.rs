//! The end-of-run report printed to the terminal.

use std::path::Path;

use dcl_train::Summary;

/// Prints the accuracy matrix and the headline figures of a run.
pub fn print_summary(summary: &Summary, run_dir: &Path) {
    let n = summary.num_tasks;
    println!();
    println!("Accuracy matrix (top-1 %, row = after training task, column = test task)");
    let mut header = format!("{:>8}", "");
    for j in 0..n {
        header.push_str(&format!("{:>9}", format!("task {}", j + 1)));
    }
    header.push_str(&format!("{:>9}", "mean"));
    println!("{header}");
    for (i, row) in summary.accuracy_matrix.iter().enumerate() {
        let mut line = format!("{:>8}", format!("task {}", i + 1));
        for cell in row {
            match cell {
                Some(v) => line.push_str(&format!("{v:>9.2}")),
                None => line.push_str(&format!("{:>9}", "-")),
            }
        }
        line.push_str(&format!("{:>9.2}", summary.task_averages[i]));
        println!("{line}");
    }
    println!();
    println!("{:<28}{:.2} %", "final average accuracy", summary.final_average_accuracy);
    println!("{:<28}{:.0}", "training images/s", summary.train_images_per_second);
    println!("{:<28}{:.1} s (training {:.1} s)", "wall time", summary.wall_time_seconds, summary.train_time_seconds);
    println!("{:<28}{}", "results", run_dir.display());
}
